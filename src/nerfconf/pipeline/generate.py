"""The receiver's Generate stage: the avatar renderer the pipeline drives.

The fast renderer is preferred; the reference volume renderer (what training
uses, slow on a CPU) stands in for it only where the fast one is missing.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle, expression_bounds, rest_translation
from nerfconf.avatar.renderer import Camera, FixedOccupancy, render_image
from nerfconf.face.pose import angles_to_rotation
from nerfconf.types import FaceParams, RenderedFrame


def params_camera(bundle: AvatarBundle, params: FaceParams, resolution: int | None = None) -> Camera:
    """The camera in head space for one frame: the head pose, inverted."""
    r = resolution or bundle.resolution
    rot = angles_to_rotation(np.asarray(params.rotation, np.float64))
    t = rest_translation(bundle) if params.translation is None else np.asarray(params.translation, np.float64)
    return Camera(rot.T, -rot.T @ t, bundle.focal * r / bundle.resolution, r)


class ReferenceRenderer:
    """The training renderer behind the interface of the fast one."""

    def __init__(self, bundle: AvatarBundle, resolution: int | None = None, samples: int = 48) -> None:
        self.bundle = bundle
        self.resolution = resolution or bundle.resolution
        self.samples = samples
        self.occupancy = FixedOccupancy(bundle.field, bundle.occupancy)
        self.lo, self.hi = expression_bounds(bundle.codec)

    def prewarm(self) -> None:
        pass

    def render(self, params: FaceParams, view: object | None = None) -> RenderedFrame:
        t0 = time.perf_counter()
        e = torch.from_numpy(np.clip(params.expression, self.lo, self.hi).astype(np.float32))
        image, alpha = render_image(self.bundle.field, params_camera(self.bundle, params, self.resolution), e,
                                    samples=self.samples, occupancy=self.occupancy)
        return RenderedFrame(image, params.index, alpha=alpha,
                             timings={"render_ms": (time.perf_counter() - t0) * 1e3})


def make_renderer(bundle: AvatarBundle, resolution: int | None = None, device: str = "cpu"):
    try:
        from nerfconf.avatar.fast import Renderer  # noqa: PLC0415
    except ImportError:
        return ReferenceRenderer(bundle, resolution)
    return Renderer(bundle, resolution, device)


def make_view(offsets: tuple[float, float, float] | None):
    """The renderer's view object for (yaw, pitch, roll) offsets in degrees; None keeps the sender's view."""
    if offsets is None:
        return None
    try:
        from nerfconf.avatar.view import View  # noqa: PLC0415
    except ImportError:
        return None
    return View(*offsets)

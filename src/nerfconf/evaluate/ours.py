"""Our side of the rate-distortion comparison: what the sender transmits, and what the avatar renders.

Three forms of the same stream, each at the rate it really costs:

* ``float32``: the parameters unquantized, 32 bits each (the paper's blue star);
* ``exp-golomb``: quantized, predicted from the previous frame, order-0 Exp-Golomb (red star);
* ``arithmetic``: the same levels with the context-adaptive arithmetic coder.

Both quantized forms decode to identical levels, so they share one rendering. The rendered
stream carries translation as well as rotation, so the avatar's head sits where the reference
head sits; its bits are counted. The 49-dimension rotation-only rate, which is what the paper
reports and what a call sends by default, is measured with the bundle's own codec section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.codec.config import Allocation, CodecConfig
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.types import FaceParams, ParamLayout

__all__ = [
    "CODERS",
    "OurStream",
    "Transmission",
    "avatar_renderer",
    "our_streams",
    "translation_config",
    "transmit",
]

#: the quantized forms, by the name used in results
CODERS = {"exp-golomb": CoderId.EXP_GOLOMB, "arithmetic": CoderId.ARITHMETIC}


@dataclass(frozen=True)
class Transmission:
    """One parameter stream coded and decoded as a call would."""

    #: every byte of every coded frame, headers included
    payload_bytes: int
    #: the coded values only (frame headers left out)
    body_bytes: int
    #: (N, dims) what the receiver decodes
    decoded: np.ndarray
    fps: float

    @property
    def frames(self) -> int:
        return len(self.decoded)

    @property
    def payload_kbps(self) -> float:
        return self.payload_bytes * 8 * self.fps / self.frames / 1000

    @property
    def body_kbps(self) -> float:
        return self.body_bytes * 8 * self.fps / self.frames / 1000


@dataclass(frozen=True)
class OurStream:
    #: ``float32``, ``exp-golomb`` or ``arithmetic``
    name: str
    #: the rate of the rendered stream (expression, rotation and translation)
    kbps: float
    #: the rate of the same form without translation (49 dimensions with K = 46), as the paper reports
    rotation_only_kbps: float
    #: (N, K + 6) the parameters the avatar is driven with
    params: np.ndarray
    #: streams with the same ``render_key`` decode to the same parameters and share a rendering
    render_key: str


def translation_config(bundle: AvatarBundle, train_params: np.ndarray, coder: CoderId) -> CodecConfig:
    """The bundle's codec settings refitted with translation, on the training frames' parameters.

    Same depth, allocation, reference and GOP as the bundle; bounds and coder priors from
    ``train_params`` (M, K + 6), as enrollment fits them.
    """
    base = bundle.codec
    k = base.layout.n_expression
    if train_params.ndim != 2 or train_params.shape[1] != k + 6:
        raise ValueError(f"training parameters must be (M, {k + 6}), got {train_params.shape}")
    depth = max(base.bits)
    uniform = len(set(base.bits)) == 1
    return CodecConfig.fit(
        ParamLayout(k, translation=True), train_params, bits=depth,
        allocation=Allocation.UNIFORM if uniform else Allocation.EQUAL_STEP,
        coder=coder, reference=base.reference, gop_frames=base.gop_frames,
    )


def transmit(config: CodecConfig, params: np.ndarray, fps: float) -> Transmission:
    """Encodes every row of ``params`` (N, K + 6) with ``config``'s layout and decodes it again."""
    layout = config.layout
    enc, dec = ParamEncoder(config), ParamDecoder(config)
    decoded = []
    for i, row in enumerate(np.asarray(params, np.float64)):
        # the layout's vector is a prefix of expression ++ rotation ++ translation
        frame = enc.encode(FaceParams.from_vector(row[: layout.dims], layout, t_capture=i / fps, index=i))
        decoded.append(dec.decode(frame.data).params.to_vector(layout))
    s = enc.stats
    return Transmission(s.bytes_total, s.bytes_total - s.bytes_header, np.stack(decoded), fps)


def our_streams(bundle: AvatarBundle, params: np.ndarray, train_params: np.ndarray, fps: float) -> list[OurStream]:
    """The float32, Exp-Golomb and arithmetic streams of ``params`` with their real rates."""
    k = bundle.codec.layout.n_expression
    dims = k + 6
    out = [OurStream("float32", dims * 32 * fps / 1000, (k + 3) * 32 * fps / 1000,
                     np.asarray(params, np.float64), "float32")]
    for name, coder in CODERS.items():
        with_t = transmit(translation_config(bundle, train_params, coder), params, fps)
        rotation_only = transmit(replace(bundle.codec, coder=coder), params, fps)
        out.append(OurStream(name, with_t.payload_kbps, rotation_only.payload_kbps, with_t.decoded,
                             "quantized"))
    if not np.array_equal(out[1].params, out[2].params):
        raise RuntimeError("the Exp-Golomb and arithmetic streams decoded to different parameters")
    return out


def avatar_renderer(bundle: AvatarBundle, samples: int = 48) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(description, render) where ``render(params (K + 6,)) -> uint8 RGB (R, R, 3)``.

    Uses the fast renderer when the installed nerfconf has it, else the reference volume
    renderer (slow: about a second a frame at 256 px on a CPU).
    """
    k = bundle.codec.layout.n_expression
    layout = ParamLayout(k, translation=True)
    try:
        from nerfconf.avatar.rendering.fast import Renderer  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        Renderer = None  # noqa: N806
    if Renderer is not None:
        fast = Renderer(bundle, bundle.resolution, "cpu")

        def render_fast(p: np.ndarray) -> np.ndarray:
            image = np.asarray(fast.render(FaceParams.from_vector(p, layout)).image)
            if image.dtype != np.uint8 or image.shape != (bundle.resolution, bundle.resolution, 3):
                raise RuntimeError(f"the fast renderer returned {image.dtype} {image.shape}, expected uint8 RGB "
                                   f"at {bundle.resolution} px")
            return image

        return "fast renderer (nerfconf.avatar.rendering.fast)", render_fast

    import torch  # noqa: PLC0415

    from nerfconf.avatar.rendering.renderer import FixedOccupancy, render_image  # noqa: PLC0415
    from nerfconf.evaluate.quality import pose_camera  # noqa: PLC0415

    occupancy = FixedOccupancy(bundle.field, bundle.occupancy)
    lo, hi = bundle.face_model.bounds_lo[:k], bundle.face_model.bounds_hi[:k]

    def render_reference(p: np.ndarray) -> np.ndarray:
        expression = torch.from_numpy(np.clip(p[:k], lo, hi).astype(np.float32))
        image, _ = render_image(bundle.field, pose_camera(bundle, p[k : k + 6]), expression,
                                samples=samples, occupancy=occupancy)
        return image

    return f"reference volume renderer, {samples} samples per ray", render_reference

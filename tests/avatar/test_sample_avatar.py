"""The committed sample avatar loads and renders (no shared data needed)."""

from pathlib import Path

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.camera import Camera
from nerfconf.avatar.rendering.renderer import FixedOccupancy, render_rays

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_sample_avatar_renders_a_face_in_front_of_white():
    bundle = AvatarBundle.load(SAMPLE)
    k = bundle.face_model.n_expression
    assert bundle.resolution == 256 and bundle.codec.layout.dims == k + 6  # expression, rotation, translation
    expression = torch.zeros(k)  # coefficients are zero-mean: the person's average face
    # frontal camera at about the enrollment distance
    distance = 1.3
    cam = Camera(np.eye(3), np.array([0.0, 0.0, -distance]), bundle.focal, bundle.resolution)
    # project the nose tip and both cheekbones of the face model's template
    points = bundle.face_model.template[[1, 50, 280]] / 1000.0
    uv = points[:, :2] / (points[:, 2:] + distance) * bundle.focal + bundle.resolution / 2
    pixels = np.vstack([[[2, 2], [253, 2]], np.round(uv)]).astype(int)  # two corners, three face points
    o, d = cam.rays(pixels)
    with torch.no_grad():
        out = render_rays(bundle.field, o, d, expression, occupancy=FixedOccupancy(bundle.field, bundle.occupancy))
    rgb = out.rgb.numpy()
    assert np.all(np.isfinite(rgb))
    assert np.all(rgb[:2] > 0.95)  # corners: white background
    assert np.all(out.opacity[2:].numpy() > 0.7)  # face: (nearly) opaque
    assert np.all(rgb[2:].mean(axis=1) < 0.9)  # and not white

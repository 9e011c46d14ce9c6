"""A tiny avatar bundle with real structure, made without any data: for renderer tests.

Its hash tables hold large random values, so the field is a lumpy, partly
translucent cloud inside the head box: a hard case for a fast renderer, since
nothing is simply opaque or empty.
"""

from __future__ import annotations

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig
from nerfconf.avatar.rendering.renderer import OccupancyGrid
from nerfconf.codec.config import CodecConfig
from nerfconf.face.model import FaceModel, Intrinsics
from nerfconf.tracks import ParamTrack
from nerfconf.types import ParamLayout

K = 4
RESOLUTION = 64
DISTANCE = 1.0
TINY = dict(levels=4, features=2, log2_table=10, min_resolution=8, max_resolution=64, hidden=32)


def tiny_bundle(seed: int = 0, shading: str = "sample") -> AvatarBundle:
    g = torch.Generator().manual_seed(seed)
    # Uneven expression scales, so a renderer that forgot them would not match the reference.
    with torch.random.fork_rng():  # the networks' initial weights, the same whatever ran before
        torch.manual_seed(seed)
        field = BlendshapeField(FieldConfig(n_expression=K, expression_scale=(0.5, 2.0, 1.0, 1.25),
                                            shading=shading, **TINY))
    enc = field.encoding
    with torch.no_grad():
        # texture: random features on every level, moving with the expression tables
        enc.tables.uniform_(-1.0, 1.0, generator=g)
        enc.tables[1:] *= 0.3
        # shape: on the dense coarsest level, feature 0 is +1 inside an ellipsoid and -1 outside
        res = enc.resolutions[0]
        ijk = torch.stack(torch.meshgrid(*(torch.arange(res + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
        rows = ijk[:, 0] + ijk[:, 1] * (res + 1) + ijk[:, 2] * (res + 1) ** 2
        inside = (((ijk.float() / res - 0.5) / torch.tensor([0.35, 0.4, 0.3])) ** 2).sum(1) < 1.0
        enc.tables[0, 0, rows, 0] = torch.where(inside, 1.0, -1.0)
        # density = softplus(30 relu(f0) - 6 + texture): dense inside, nearly empty outside
        layers = [field.density_net[i] for i in range(0, len(field.density_net), 2)]
        *hidden, d3 = layers
        for layer in hidden:
            layer.weight.mul_(0.3)
            layer.weight[0].zero_()
            layer.weight[:, 0].zero_()
            layer.weight[0, 0] = 1.0
            layer.bias[0] = 0.0
        d3.weight[0].mul_(2.0)
        if field.config.deferred:
            # a ray's colour comes from its mean feature: make the features vary enough to show
            d3.weight[1:].mul_(20.0)
        d3.weight[0, 0] = 30.0
        d3.bias[0] = -5.0
        for p in field.color_net.parameters():
            p.mul_(3.0)
    grid = OccupancyGrid(field, resolution=32)
    for e in (torch.zeros(K), torch.full((K,), 1.0), torch.full((K,), -1.0)):
        grid.update(e)
    rng = np.random.default_rng(seed)
    template = rng.normal(0, 30, (478, 3))
    basis = np.linalg.qr(rng.normal(size=(478 * 3, K)))[0].T
    lo = np.r_[np.full(K, -1.0), np.radians([-20, -20, -20]), [-0.05, -0.05, 0.9]]
    hi = np.r_[np.full(K, 1.0), np.radians([20, 20, 20]), [0.05, 0.05, 1.1]]
    model = FaceModel(template, basis, np.arange(100), lo, hi, np.ones(K + 6), Intrinsics(RESOLUTION, RESOLUTION))
    values = rng.uniform(lo[: K + 3], hi[: K + 3], (200, K + 3))
    codec = CodecConfig.fit(ParamLayout(K), values)
    focal = RESOLUTION / 0.4  # the head box fills most of the frame at 1 m
    return AvatarBundle(field.eval(), grid.mask, model, codec, RESOLUTION, focal, {"source": "tiny test avatar"})


def tiny_track(frames: int = 12, seed: int = 1) -> ParamTrack:
    """A smooth track: expressions and pose drift, translation included."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 25.0
    expr = 0.8 * np.sin(2 * np.pi * (0.7 * t[:, None] + rng.uniform(0, 1, K)))
    rot = np.radians(8.0) * np.sin(2 * np.pi * (0.3 * t[:, None] + rng.uniform(0, 1, 3)))
    trans = np.c_[0.01 * np.sin(t), 0.01 * np.cos(t), 1.0 + 0.02 * np.sin(t)]
    return ParamTrack(ParamLayout(K, translation=True), np.c_[expr, rot, trans], np.ones(frames, bool), t, "tiny")

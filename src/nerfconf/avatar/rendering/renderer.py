"""Rays, sampling and volume rendering: the reference renderer training uses.

Cameras follow OpenCV (x right, y down, z forward); rays are expressed in the
head frame, so the head pose becomes the camera pose. The background is white.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nerfconf.avatar.camera import Camera
from nerfconf.avatar.fields.field import BlendshapeField


def ray_box(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through an axis-aligned box (far <= near when they miss)."""
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # (M, 3)
    opacity: torch.Tensor  # (M,)
    depth: torch.Tensor  # (M,)
    #: field evaluations spent (samples left after box and occupancy culling)
    evaluated: int = 0
    #: (M, S) compositing weights of the samples, and their positions along the ray as a fraction
    #: of its path through the head box (``render_rays`` only; for the distortion loss)
    weights: torch.Tensor | None = None
    positions: torch.Tensor | None = None


def composite(
    sigma: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, step: torch.Tensor, background: float = 1.0
) -> RenderOutput:
    """Alpha compositing of (M, S) samples front to back; ``rgb`` (M, S, C) may hold any C channels."""
    alpha = 1.0 - torch.exp(-sigma * step[:, None])
    # Exclusive cumulative product: transmittance before each sample.
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=1), dim=1)[:, :-1]
    weights = alpha * trans
    opacity = weights.sum(dim=1)
    color = (weights[..., None] * rgb).sum(dim=1) + (1.0 - opacity[:, None]) * background
    depth = (weights * t).sum(dim=1) / opacity.clamp_min(1e-6)
    return RenderOutput(color, opacity, depth, weights=weights)


def distortion(weights: torch.Tensor, positions: torch.Tensor, samples: int) -> torch.Tensor:
    """Mip-NeRF 360's distortion loss per ray (M,): small when a ray's weight sits in one short interval.

    ``sum_ij w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 / S`` with ``s`` the samples' positions along the
    ray in [0, 1] and ``S`` samples (intervals of width 1/S), in O(S) with prefix sums.
    """
    w_before = torch.cumsum(weights, dim=1) - weights
    ws_before = torch.cumsum(weights * positions, dim=1) - weights * positions
    spread = 2.0 * (weights * (positions * w_before - ws_before)).sum(dim=1)
    return spread + (weights * weights).sum(dim=1) / (3.0 * samples)


def render_rays(
    field: BlendshapeField,
    origins: torch.Tensor,
    directions: torch.Tensor,
    expression: torch.Tensor,
    *,
    samples: int = 48,
    perturb: bool = False,
    occupancy: FixedOccupancy | None = None,
    table: torch.Tensor | None = None,
) -> RenderOutput:
    """Stratified samples between the rays' entry into and exit from the head box.

    ``table``: the frame's already blended table (``field.encoding.blended_table``),
    used instead of blending ``expression`` again.
    """
    lo = field.box_centre - field.box_half
    hi = field.box_centre + field.box_half
    near, far = ray_box(origins, directions, lo, hi)
    hit = far > near
    far = torch.where(hit, far, near)
    m = origins.shape[0]
    dev = origins.device
    jitter = torch.rand(m, samples, device=dev) if perturb else 0.5
    steps = (torch.arange(samples, dtype=torch.float32, device=dev) + jitter) / samples
    step = (far - near) / samples
    t = near[:, None] + (far - near)[:, None] * steps
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    flat = points.reshape(-1, 3)
    keep = hit[:, None].expand(m, samples).reshape(-1)
    if occupancy is not None:
        keep = keep & occupancy.occupied(flat)
    idx = torch.nonzero(keep).squeeze(1)
    if table is None:
        table = field.encoding.blended_table(expression)
    if field.config.deferred:
        out = _render_deferred(field, flat, idx, directions, table, t, step)
    else:
        sigma = torch.zeros(m * samples, device=dev)
        rgb = torch.ones(m * samples, 3, device=dev)
        if idx.numel():
            dirs = directions[:, None, :].expand(m, samples, 3).reshape(-1, 3)
            s, c = field.forward_at(flat[idx], dirs[idx], table)
            # under autocast the MLPs answer in bfloat16; compositing stays float32
            sigma = sigma.index_put((idx,), s.float())
            rgb = rgb.index_put((idx,), c.float())
        out = composite(sigma.view(m, samples), rgb.view(m, samples, 3), t, step)
    out.evaluated = int(idx.numel())
    out.positions = steps.expand(m, samples)
    return out


#: a ray's composited feature is divided by its opacity, but never by less than this
DEFERRED_MIN_OPACITY = 1e-3


def _render_deferred(field: BlendshapeField, flat: torch.Tensor, idx: torch.Tensor, directions: torch.Tensor,
                     table: torch.Tensor, t: torch.Tensor, step: torch.Tensor) -> RenderOutput:
    """Deferred shading: the features are composited like colours, and the colour net runs once
    per ray on their weighted mean (what the ray sees where it stops), seen along the ray."""
    m, samples = t.shape
    sigma = torch.zeros(m * samples, device=flat.device)
    feats = torch.zeros(m * samples, field.config.geo_features, device=flat.device)
    if idx.numel():
        s, f = field.density_at(flat[idx], table)
        sigma = sigma.index_put((idx,), s.float())
        feats = feats.index_put((idx,), f.float())
    out = composite(sigma.view(m, samples), feats.view(m, samples, -1), t, step, background=0.0)
    mean_feature = out.rgb / out.opacity.clamp_min(DEFERRED_MIN_OPACITY)[:, None]
    colour = field.colour(directions, mean_feature).float()
    out.rgb = out.opacity[:, None] * colour + (1.0 - out.opacity[:, None])
    return out


class FixedOccupancy:
    """A bundle's stored occupancy mask, with the interface rendering needs."""

    def __init__(self, field: BlendshapeField, mask: torch.Tensor) -> None:
        self.field = field
        self.mask = mask.bool()
        self.resolution = int(mask.shape[0])

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        cell = (self.field.normalize(points) * self.resolution).long().clamp(0, self.resolution - 1)
        return self.mask[cell[:, 0], cell[:, 1], cell[:, 2]]


class OccupancyGrid(FixedOccupancy):
    """Which cells of the head box may hold density, for any expression seen in training.

    The union over expressions (as NeRFBlendShape takes it) is kept by
    updating from a random training expression each time and decaying slowly.
    """

    def __init__(self, field: BlendshapeField, resolution: int = 64, decay: float = 0.95) -> None:  # noqa: D107
        # no super().__init__: the mask is computed from the measured densities
        self.field = field
        self.resolution = resolution
        self.decay = decay
        #: None until the first measurement: until then everything counts as occupied
        self.density: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._mask_of: torch.Tensor | None = None
        self._fraction, self._fraction_of = 1.0, None
        self.threshold = 0.01
        self.step = float((2 * field.box_half).max()) / 48

    def cell_centres(self, jitter: bool) -> torch.Tensor:
        r = self.resolution
        ar = torch.arange(r, device=self.field.box_centre.device)
        idx = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), dim=-1).reshape(-1, 3).float()
        offset = torch.rand_like(idx) if jitter else torch.full_like(idx, 0.5)
        unit = (idx + offset) / r
        lo = self.field.box_centre - self.field.box_half
        return lo + unit * (2 * self.field.box_half)

    @torch.no_grad()
    def update(self, expression: torch.Tensor, chunk: int = 1 << 16) -> None:
        pts = self.cell_centres(jitter=True)
        table = self.field.encoding.blended_table(expression)
        sigma = torch.cat([self.field.density_at(p, table)[0].float() for p in pts.split(chunk)])
        sigma = sigma.view((self.resolution,) * 3)
        self.density = sigma if self.density is None else torch.maximum(self.density * self.decay, sigma)

    @property
    def mask(self) -> torch.Tensor:
        if self.density is None:
            return torch.ones((self.resolution,) * 3, dtype=torch.bool, device=self.field.box_centre.device)
        # kept between updates: every training step reads it
        if self._mask is None or self._mask_of is not self.density:
            # a cell matters when one sample there would be at least 1 % opaque
            self._mask = 1.0 - torch.exp(-self.density * self.step) > self.threshold
            self._mask_of = self.density
        return self._mask

    def fraction(self) -> float:
        """Share of cells occupied; kept with the mask, since every training step asks."""
        mask = self.mask
        if self._fraction_of is not mask:
            self._fraction, self._fraction_of = float(mask.float().mean()), mask
        return self._fraction


@torch.no_grad()
def render_image(
    field: BlendshapeField,
    camera: Camera,
    expression: torch.Tensor,
    *,
    samples: int = 48,
    occupancy: FixedOccupancy | None = None,
    chunk: int = 1 << 14,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole frame with the reference renderer: RGB uint8 (R, R, 3) and opacity (R, R)."""
    r = camera.resolution
    origins, dirs = camera.rays(camera.all_pixels())
    rgb, alpha = [], []
    for o, d in zip(origins.split(chunk), dirs.split(chunk)):
        out = render_rays(field, o, d, expression, samples=samples, occupancy=occupancy)
        rgb.append(out.rgb)
        alpha.append(out.opacity)
    image = (torch.cat(rgb).clamp(0, 1) * 255 + 0.5).to(torch.uint8).view(r, r, 3).numpy()
    return image, torch.cat(alpha).view(r, r).numpy()

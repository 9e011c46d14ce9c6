"""The receiver's real-time avatar renderer (the paper's Generate module).

``Renderer(bundle, resolution, device).render(params, view)`` turns one frame of
face parameters into an RGB image, with depth and alpha. It computes what the
reference renderer (``renderer.render_image`` with the bundle's occupancy grid)
computes, minus terms that are zero or nearly so (each a ``RenderSettings`` field):

1. the K+1 hash tables are blended once per frame;
2. only the reference's own 48 sample positions per ray are visited, and those in
   cells the occupancy grid marks empty are skipped without evaluating anything;
3. a per-frame probe of the density at coarse cell centres drops cells that are
   empty for this frame's expression, with their neighbours as a safety margin;
4. rays stop once their transmittance falls below ``t_min`` (early termination);
5. the colour network runs only for samples whose compositing weight matters; for a
   deferred-shading field (``FieldConfig.shading``) only their features are composited,
   and the colour network runs once per pixel that is opaque enough to show it;
6. adaptive upsampling marches a coarse grid of pixels, fills the pixels between
   them where their neighbours agree within a tolerance, and marches the rest;
7. optionally (off by default, see docs/avatar.md), marching starts a few samples in
   front of the surface the same pixel saw in the previous frame, falling back to
   the whole ray when the first sample is already opaque or the surface is missed.

On CPU the loops are numba kernels (``render_kernels``, ``hashgrid_kernels``,
``mlp_kernels``), with rays marched in rounds of batched samples. With
``device="cuda"`` a torch path runs each frame as one batch with fp16 MLPs
(``fast_torch``).

A frame with ``face_found == False`` holds: it renders the last frame that had a
face (under the view asked for now), or the background alone when there was none.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numba
import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle, rest_translation
from nerfconf.avatar.camera import Camera, HeadPose
from nerfconf.avatar.fields import hashgrid_kernels as HK
from nerfconf.avatar.rendering import render_kernels as RK
from nerfconf.avatar.rendering.mlp_kernels import InferenceMlp
from nerfconf.avatar.rendering.renderer import DEFERRED_MIN_OPACITY, FixedOccupancy, render_image
from nerfconf.avatar.view import View
from nerfconf.types import FaceParams, RenderedFrame

__all__ = ["RenderError", "RenderSettings", "Renderer", "View"]

#: Samples per ray of the reference renderer, whose positions the fast path reuses.
REFERENCE_SAMPLES = 48
#: Occupied samples a live ray takes per round; the last value repeats.
ROUND_BUDGETS = (12, 48)
#: Deferred shading: a ray less opaque than this gets no colour (it could move its pixel by
#: at most half a level of 255 from the background)
SHADE_MIN_OPACITY = 1.0 / 512


class RenderError(ValueError):
    """Parameters, resolution, device or background that cannot be rendered."""


@dataclass(frozen=True)
class RenderSettings:
    """Knobs of the fast path; the defaults keep it within 40 dB PSNR of the reference."""

    #: early termination: a ray stops once its transmittance is below this
    t_min: float = 5e-2
    #: samples whose compositing weight is below this get no colour evaluation
    colour_weight_min: float = 1e-3
    #: depth guidance: start this many samples in front of last frame's surface (0 = off)
    guide_margin: int = 0
    #: depth guidance is dropped when the camera turned more than this (degrees) ...
    guide_max_turn_deg: float = 3.0
    #: ... or moved more than this (metres) since the previous frame
    guide_max_shift_m: float = 0.01
    #: per-frame occupancy probe: coarse cells (``probe_factor``^3 fine cells) whose centre
    #: and neighbours' centres are all less opaque than this are skipped (0 = off)
    probe_alpha: float = 1e-3
    probe_factor: int = 2
    #: coarse cells around a dense one that are kept too (the probe samples only cell centres)
    probe_radius: int = 1
    #: adaptive upsampling: march a coarse grid of pixels first, then fill a pixel
    #: between them by interpolation where they differ by at most this many levels (of 255)
    #: in colour and opacity, and march it otherwise (0 = march every pixel)
    upsample_tolerance: float = 16.0
    #: grids of adaptive upsampling: 1 marches a quarter of the pixels first, 2 a sixteenth
    upsample_levels: int = 2
    #: ... but the coarsest grid's step spans at most this fraction of the image: interpolating
    #: across a larger share of a small image misses detail (at 96 px, 4-pixel steps gave 39 dB).
    #: With the default, 2 levels from 256 px, 1 from 128 px, none below.
    upsample_max_step: float = 1 / 64

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min < 1.0 or not 0.0 <= self.colour_weight_min < 1.0:
            raise RenderError("t_min and colour_weight_min must be in [0, 1)")
        if self.guide_margin < 0 or self.probe_radius < 0 or not 0 <= self.upsample_levels <= 4:
            raise RenderError("guide_margin and probe_radius must be >= 0, upsample_levels 0..4")
        if self.probe_factor not in (1, 2, 4, 8) or self.upsample_tolerance < 0 or self.probe_alpha < 0:
            raise RenderError("probe_factor must be 1, 2, 4 or 8; tolerances and thresholds >= 0")
        if not 0.0 < self.upsample_max_step <= 1.0:
            raise RenderError("upsample_max_step must be in (0, 1]")

    def upsampling_levels(self, resolution: int) -> int:
        """Upsampling levels used at this resolution (``upsample_levels``, capped by ``upsample_max_step``)."""
        if self.upsample_tolerance <= 0:
            return 0
        cap = int(np.floor(np.log2(max(resolution * self.upsample_max_step, 1.0))))
        return min(self.upsample_levels, cap)

    @classmethod
    def parse(cls, items: list[str]) -> RenderSettings:
        """Settings from ``NAME=VALUE`` strings (the defaults for names not given)."""
        fields = {f.name: type(getattr(cls(), f.name)) for f in dataclasses.fields(cls)}
        values = {}
        for item in items:
            name, sep, text = item.partition("=")
            if not sep or name not in fields:
                raise RenderError(f"expected NAME=VALUE with NAME one of {', '.join(fields)}, got {item!r}")
            try:
                values[name] = fields[name](text)
            except ValueError as exc:
                raise RenderError(f"{name}: {text!r} is not a {fields[name].__name__}") from exc
        return cls(**values)


class Renderer:
    """Renders one avatar bundle from face parameters, fast.

    ``resolution``: output side in pixels (default: the bundle's; the focal length
    scales with it). ``device``: "cpu" (numba kernels) or a torch CUDA device.
    ``threads``: CPU threads for numba and torch (default: all cores).
    ``backend``: "numba" (CPU only) or "torch"; default numba on CPU, torch on CUDA.
    """

    def __init__(
        self,
        bundle: AvatarBundle,
        resolution: int | None = None,
        device: str = "cpu",
        *,
        threads: int | None = None,
        settings: RenderSettings | None = None,
        backend: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.resolution = int(resolution or bundle.resolution)
        if not 16 <= self.resolution <= 4096:
            given = resolution if resolution else f"{bundle.resolution}, the bundle's"
            raise RenderError(f"resolution must be 16..4096 pixels, got {given}")
        self.focal = bundle.focal * self.resolution / bundle.resolution
        self.settings = settings or RenderSettings()
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise RenderError(f"device must be 'cpu' or a CUDA device, got {device!r}") from exc
        if self.device.type not in ("cpu", "cuda"):
            raise RenderError(f"device must be 'cpu' or a CUDA device, got {device!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RenderError("device 'cuda' asked for, but this torch has no CUDA device")
        if threads is not None:
            numba.set_num_threads(threads)
            torch.set_num_threads(threads)
        field = bundle.field
        cfg = field.config
        self.n_expression = cfg.n_expression
        model = bundle.face_model
        k = self.n_expression
        self._expr_lo = model.bounds_lo[:k].astype(np.float32)
        self._expr_hi = model.bounds_hi[:k].astype(np.float32)
        self._inverse_scale = field.encoding.inverse_scale.numpy().astype(np.float32)
        # Without transmitted translation the head sits where it sat on average in enrollment.
        self.default_translation = rest_translation(bundle)
        self.head_centre = np.asarray(cfg.box_centre, np.float64)
        self._box_centre = np.asarray(cfg.box_centre, np.float32)
        self._box_size = (2 * np.asarray(cfg.box_half, np.float32)).astype(np.float32)
        self._lo = (field.box_centre - field.box_half).numpy().astype(np.float32)
        self._hi = (field.box_centre + field.box_half).numpy().astype(np.float32)
        self._level_params = HK.level_params(np.asarray(field.encoding.resolutions, np.int32),
                                             field.encoding.tables.shape[-2])
        self._last_params: FaceParams | None = None
        self._guide: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # surface, rotation, centre
        self._white = np.ones((self.resolution * self.resolution, 3), np.float32)
        backend = backend or ("numba" if self.device.type == "cpu" else "torch")
        if backend not in ("numba", "torch") or (backend == "numba" and self.device.type != "cpu"):
            raise RenderError(f"backend must be 'numba' (CPU) or 'torch', got {backend!r} on {self.device}")
        self.backend = backend
        if backend == "numba":
            self._tables = field.encoding.tables.detach().float().contiguous().numpy()
            self._occupancy = bundle.occupancy.to(torch.uint8).contiguous().numpy()
            self._mlp = InferenceMlp.from_field(field)
            if self._mlp.deferred and self.settings.guide_margin:
                raise RenderError("depth guidance (guide_margin) is not built for a deferred-shading avatar")
            if self._occupancy.shape[0] % self.settings.probe_factor:
                # a probe cell must cover whole occupancy cells
                self.settings = dataclasses.replace(self.settings, probe_factor=1)
            self._probe_x, self._probe_cells = RK.coarse_cells(self._occupancy, self.settings.probe_factor)
            self._probe_step = float(self._box_size.max()) / REFERENCE_SAMPLES
            self._torch_path = None
        else:
            from nerfconf.avatar.rendering.fast_torch import TorchPath  # noqa: PLC0415

            self._torch_path = TorchPath(bundle, self.device, REFERENCE_SAMPLES, self.settings.colour_weight_min)
        #: what the last frame cost: rays in the box, field evaluations, colour evaluations, rounds, ms
        self.last_stats: dict[str, float] = {}

    # -- public ----------------------------------------------------------------------

    def at_resolution(self, resolution: int) -> Renderer:
        """The same renderer at another output side, sharing its tables and networks (nothing is
        copied or compiled again), for a receiver that renders smaller on a slow host."""
        resolution = int(resolution)
        if resolution == self.resolution:
            return self
        if not 16 <= resolution <= 4096:
            raise RenderError(f"resolution must be 16..4096 pixels, got {resolution}")
        other = copy.copy(self)
        other.resolution = resolution
        other.focal = self.bundle.focal * resolution / self.bundle.resolution
        other._white = np.ones((resolution * resolution, 3), np.float32)
        other._guide = None
        other._last_params = None
        other.last_stats = {}
        return other

    def prewarm(self) -> None:
        """Compiles every kernel and touches every buffer once, before a call starts."""
        k = self.n_expression
        layout_dims = np.zeros(k)
        for view in (None, View(10.0, -5.0, 2.0), View(0.0, 0.0, 0.0, absolute=True)):
            p = FaceParams(layout_dims.copy(), np.zeros(3), None, True, 0.0, 0)
            self.render(p, view)
            self.render(p, view)  # the second frame takes the depth-guided path
        self._guide = None
        self._last_params = None

    def render(
        self, params: FaceParams, view: View | None = None, background: np.ndarray | None = None
    ) -> RenderedFrame:
        """One frame: RGB uint8 (R, R, 3), depth (R, R) float32 metres along the ray, alpha (R, R).

        ``background``: an (R, R, 3) uint8 image behind the head (default white).
        """
        t0 = time.perf_counter()
        bg = self._background(background)
        if not params.face_found:
            if self._last_params is None:
                r = self.resolution
                image = (bg.reshape(r, r, 3) * 255 + 0.5).astype(np.uint8)
                return RenderedFrame(image, params.index, np.zeros((r, r), np.float32),
                                     np.zeros((r, r), np.float32), {"render_ms": 0.0, "held": 1.0})
            frame = self._render_face(self._last_params, view, bg)
            frame.index = params.index
            frame.timings["held"] = 1.0
            return frame
        expression, rotation, translation = self._check(params)
        frame = self._render_face(params, view, bg, expression, rotation, translation)
        self._last_params = params
        frame.timings["render_ms"] = (time.perf_counter() - t0) * 1e3
        return frame

    def reference_camera(self, params: FaceParams, view: View | None = None) -> Camera:
        """The reference renderer's camera for the same inputs (``renderer.render_image``)."""
        _, rotation, translation = self._check(params)
        return self._camera(rotation, translation, view)

    def _camera(self, rotation: np.ndarray, translation: np.ndarray, view: View | None) -> Camera:
        pose = HeadPose.from_angles(rotation, translation).viewed(view, self.head_centre)
        return Camera.of_pose(pose, self.focal, self.resolution)

    def reference(self, params: FaceParams, view: View | None = None) -> np.ndarray:
        """The reference renderer's image (R, R, 3) uint8 of the same inputs: slow, for checking."""
        expression, _, _ = self._check(params)
        field = self.bundle.field
        image, _ = render_image(field, self.reference_camera(params, view), torch.from_numpy(expression),
                                samples=REFERENCE_SAMPLES, occupancy=FixedOccupancy(field, self.bundle.occupancy))
        return image

    # -- internals -------------------------------------------------------------------

    def _background(self, background: np.ndarray | None) -> np.ndarray:
        if background is None:
            return self._white
        r = self.resolution
        bg = np.asarray(background)
        if bg.shape != (r, r, 3) or bg.dtype != np.uint8:
            raise RenderError(f"background must be a ({r}, {r}, 3) uint8 image, got {bg.shape} {bg.dtype}")
        return (bg.reshape(-1, 3).astype(np.float32)) / np.float32(255.0)

    def _check(self, params: FaceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self.n_expression
        e = np.asarray(params.expression, np.float64)
        if e.shape != (k,):
            raise RenderError(f"this avatar takes {k} expression coefficients, got shape {e.shape}")
        rot = np.asarray(params.rotation, np.float64)
        if rot.shape != (3,):
            raise RenderError(f"rotation must hold 3 angles, got shape {rot.shape}")
        t = self.default_translation if params.translation is None else np.asarray(params.translation, np.float64)
        if t.shape != (3,):
            raise RenderError(f"translation must hold 3 values, got shape {t.shape}")
        if not (np.isfinite(e).all() and np.isfinite(rot).all() and np.isfinite(t).all()):
            raise RenderError("face parameters hold NaN or infinite values")
        if t[2] <= 0:
            raise RenderError(f"the head must be in front of the camera (z > 0), got z = {t[2]:g} m")
        return np.clip(e, self._expr_lo, self._expr_hi).astype(np.float32), rot, t

    def _render_face(self, params, view, bg, expression=None, rotation=None, translation=None) -> RenderedFrame:
        if expression is None:
            expression, rotation, translation = self._check(params)
        camera = self._camera(rotation, translation, view)
        cam_rot, centre = camera.rotation, camera.centre
        if self._torch_path is not None:
            image, depth, alpha, stats = self._torch_path.render(
                expression, cam_rot, centre, self.focal, self.resolution, bg)
        else:
            image, depth, alpha, stats = self._render_cpu(expression, cam_rot, centre, bg)
        r = self.resolution
        self.last_stats = stats
        return RenderedFrame(image.reshape(r, r, 3), params.index, depth.reshape(r, r), alpha.reshape(r, r),
                             {k: float(v) for k, v in stats.items() if k.endswith("_ms")})

    def _guide_start(self, cam_rot: np.ndarray, centre: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per ray: first sample to march and whether that start is a guess."""
        s = self.settings
        if self._guide is None or s.guide_margin <= 0:
            return np.zeros(n, np.int32), np.zeros(n, np.uint8)
        surface, prev_rot, prev_centre = self._guide
        cos_turn = np.clip((np.trace(prev_rot.T @ cam_rot) - 1) / 2, -1.0, 1.0)
        turned = np.degrees(np.arccos(cos_turn))
        if turned > s.guide_max_turn_deg or np.linalg.norm(centre - prev_centre) > s.guide_max_shift_m:
            return np.zeros(n, np.int32), np.zeros(n, np.uint8)
        guided = surface >= 0
        start = np.where(guided, np.maximum(surface - s.guide_margin, 0), 0).astype(np.int32)
        return start, (guided & (start > 0)).astype(np.uint8)

    def _render_cpu(self, expression, cam_rot, centre, bg):
        s = self.settings
        stats: dict[str, float] = {}
        t0 = time.perf_counter()
        weights = np.concatenate([[1.0], expression * self._inverse_scale]).astype(np.float32)
        table = HK.blend(self._tables, weights)
        t1 = time.perf_counter()
        stats["blend_ms"] = (t1 - t0) * 1e3
        occupancy = self._probe(table) if s.probe_alpha > 0 else self._occupancy
        t2 = time.perf_counter()
        stats["probe_ms"] = (t2 - t1) * 1e3

        res = self.resolution
        n = res * res
        m = _March(n)
        centre32 = centre.astype(np.float32)
        RK.setup_rays(cam_rot, centre32, self.focal, res, self._lo, self._hi, m.dirs, m.near, m.far)
        m.next_idx, m.guided = self._guide_start(cam_rot, centre, n)
        m.fresh = m.guided.copy()
        hit = m.far > m.near
        stats["rays_in_box"] = int(hit.sum())
        levels = s.upsampling_levels(self.resolution)
        stride = 1 << levels
        grid = np.zeros((res, res), bool)
        grid[::stride, ::stride] = True
        todo = np.flatnonzero(hit & grid.ravel()).astype(np.int32)
        marched = len(todo)
        self._march(m, todo, table, occupancy, centre32, stats)
        need = np.empty(n, np.uint8)
        tol = np.float32(s.upsample_tolerance / 255.0)
        for level in range(levels - 1, -1, -1):
            RK.upsample(res, 1 << level, tol, m.acc, m.opacity, m.depth, m.near, m.far, need)
            todo = np.flatnonzero(need).astype(np.int32)
            marched += len(todo)
            self._march(m, todo, table, occupancy, centre32, stats)
        stats["rays_marched"] = marched
        t3 = time.perf_counter()
        image = np.empty((n, 3), np.uint8)
        RK.finish_image(m.acc, m.opacity, np.float32(s.t_min), bg, image)
        depth = m.depth / np.maximum(m.opacity, np.float32(1e-6))
        self._guide = (m.surface, cam_rot, centre)
        t4 = time.perf_counter()
        stats.update(march_ms=(t3 - t2) * 1e3 - stats.get("field_ms", 0.0), finish_ms=(t4 - t3) * 1e3)
        return image, depth, m.opacity, stats

    def _probe(self, table: np.ndarray) -> np.ndarray:
        """The occupancy grid restricted to what this frame's expression fills."""
        s = self.settings
        sigma, _ = self._mlp.density_at(self._probe_x, table, self._level_params)
        dense = 1.0 - np.exp(-sigma * np.float32(self._probe_step)) >= s.probe_alpha
        occupancy = np.empty_like(self._occupancy)
        RK.probed_occupancy(self._occupancy, s.probe_factor, self._probe_cells, dense.astype(np.uint8),
                            s.probe_radius, occupancy)
        return occupancy

    def _march(self, m: _March, active: np.ndarray, table, occupancy, centre32, stats: dict) -> None:
        """Marches the rays ``active`` in rounds, compositing into ``m``."""
        s = self.settings
        marched = active
        t_min = np.float32(s.t_min)
        rounds = 0
        while len(active):
            budget = ROUND_BUDGETS[min(rounds, len(ROUND_BUDGETS) - 1)]
            rounds += 1
            slots = len(active) * budget
            slot_x = np.empty((slots, 3), np.float32)
            slot_t = np.empty(slots, np.float32)
            slot_i = np.empty(slots, np.int32)
            counts = np.empty(len(active), np.int32)
            RK.gather(active, m.next_idx, budget, REFERENCE_SAMPLES, centre32, m.dirs, m.near, m.far,
                      self._box_centre, self._box_size, occupancy, slot_x, slot_t, slot_i, counts)
            offsets = np.zeros(len(active) + 1, np.int64)
            np.cumsum(counts, out=offsets[1:])
            total = int(offsets[-1])
            if total:
                xs = np.empty((total, 3), np.float32)
                ts = np.empty(total, np.float32)
                idx = np.empty(total, np.int32)
                rays = np.empty(total, np.int32)
                RK.compact(active, budget, counts, slot_x, slot_t, slot_i, offsets, xs, ts, idx, rays)
                tf = time.perf_counter()
                sigma, hidden = self._mlp.density_at(xs, table, self._level_params)
                t_field = time.perf_counter() - tf
                w = np.empty(total, np.float32)
                RK.composite(active, offsets, sigma, ts, idx, m.near, m.far, REFERENCE_SAMPLES, t_min,
                             m.trans, m.opacity, m.depth, m.surface, m.guided, m.fresh, m.next_idx, w)
                sel = np.flatnonzero(w > s.colour_weight_min)
                if len(sel) and self._mlp.deferred:
                    RK.accumulate_features(sel, rays, w, hidden, m.features(self._mlp.features))
                elif len(sel):
                    tf = time.perf_counter()
                    rgb = self._mlp.colour(hidden, sel, rays, m.dirs)
                    t_field += time.perf_counter() - tf
                    RK.accumulate_colour(rays[sel], w[sel], rgb, m.acc)
                stats["samples"] = stats.get("samples", 0) + total
                stats["coloured"] = stats.get("coloured", 0) + len(sel)
                stats["field_ms"] = stats.get("field_ms", 0.0) + t_field * 1e3
            active = RK.next_active(active, m.next_idx, REFERENCE_SAMPLES, m.trans, t_min, m.opacity, m.depth,
                                    m.surface, m.acc, m.guided, m.fresh)
        stats["rounds"] = stats.get("rounds", 0) + rounds
        if self._mlp.deferred:
            self._shade(m, marched, stats)

    def _shade(self, m: _March, rays: np.ndarray, stats: dict) -> None:
        """Deferred shading of finished ``rays``: the colour net once per ray on its mean feature
        (``renderer._render_deferred``); a ray too faint to show a colour keeps none."""
        tf = time.perf_counter()
        rays = rays[m.opacity[rays] >= SHADE_MIN_OPACITY]
        if len(rays):
            opacity = m.opacity[rays]
            mean = m.features(self._mlp.features)[rays] / np.maximum(opacity, np.float32(DEFERRED_MIN_OPACITY))[:, None]
            rgb = self._mlp.colour(mean, np.arange(len(rays), dtype=np.int32), rays, m.dirs)
            m.acc[rays] = opacity[:, None] * rgb
        stats["coloured"] = stats.get("coloured", 0) + len(rays)
        stats["field_ms"] = stats.get("field_ms", 0.0) + (time.perf_counter() - tf) * 1e3


class _March:
    """Per-ray state of one frame's marching."""

    def __init__(self, n: int) -> None:
        self.dirs = np.empty((n, 3), np.float32)
        self.near = np.empty(n, np.float32)
        self.far = np.empty(n, np.float32)
        self.next_idx = np.zeros(n, np.int32)
        self.guided = np.zeros(n, np.uint8)
        self.fresh = np.zeros(n, np.uint8)
        self.trans = np.ones(n, np.float32)
        self.opacity = np.zeros(n, np.float32)
        self.depth = np.zeros(n, np.float32)
        self.surface = np.full(n, -1, np.int32)
        self.acc = np.zeros((n, 3), np.float32)
        self.feat = np.zeros((0, 0), np.float32)

    def features(self, width: int) -> np.ndarray:
        """The composited features of a deferred field (N, width), made on first use."""
        if self.feat.shape[1] != width:
            self.feat = np.zeros((len(self.acc), width), np.float32)
        return self.feat

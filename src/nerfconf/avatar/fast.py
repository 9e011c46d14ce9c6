"""The receiver's real-time avatar renderer (the paper's Generate module).

``Renderer(bundle, resolution, device).render(params, view)`` turns one frame of
face parameters into an RGB image, with depth and alpha. It computes what the
reference renderer (``renderer.render_image`` with the bundle's occupancy grid)
computes, minus terms that are zero or nearly so:

1. the K+1 hash tables are blended once per frame;
2. only the reference's own sample positions are visited, and those in cells the
   occupancy grid marks empty are skipped without evaluating anything;
3. rays stop once their transmittance falls below ``t_min`` (early termination);
4. marching starts a few samples in front of the surface the same pixel saw in the
   previous frame (depth guidance), and falls back to the whole ray when the first
   sample is already opaque or when the ray leaves the box without meeting the surface;
5. the colour network runs only for samples whose compositing weight matters.

On CPU the loops are numba kernels (``render_kernels``, ``hashgrid_kernels``) and
the MLPs are batched float32 matmuls on the surviving samples. With
``device="cuda"`` the same steps run in torch on the GPU (``fast_torch``), with
fp16 MLPs.

A frame with ``face_found == False`` holds: it renders the last frame that had a
face (under the view asked for now), or the background alone when there was none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import torch

from nerfconf.avatar import hashgrid_kernels as HK
from nerfconf.avatar import render_kernels as RK
from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.field import spherical_harmonics
from nerfconf.avatar.view import View, camera_in_head, head_pose
from nerfconf.types import FaceParams, RenderedFrame

__all__ = ["RenderError", "RenderSettings", "Renderer", "View"]

#: Samples per ray of the reference renderer, whose positions the fast path reuses.
REFERENCE_SAMPLES = 48
#: Occupied samples a live ray takes per round; the last value repeats.
ROUND_BUDGETS = (4, 4, 8, 16)


class RenderError(ValueError):
    """Parameters, resolution, device or background that cannot be rendered."""


@dataclass(frozen=True)
class RenderSettings:
    """Knobs of the fast path; the defaults keep it within 40 dB PSNR of the reference."""

    #: early termination: a ray stops once its transmittance is below this
    t_min: float = 1e-3
    #: samples whose compositing weight is below this get no colour evaluation
    colour_weight_min: float = 1e-4
    #: depth guidance: start this many samples in front of last frame's surface (0 = off)
    guide_margin: int = 4
    #: depth guidance is dropped when the camera turned more than this (degrees) ...
    guide_max_turn_deg: float = 3.0
    #: ... or moved more than this (metres) since the previous frame
    guide_max_shift_m: float = 0.01


@dataclass
class _Mlp:
    """The field's MLPs rearranged for inference (same function, fewer multiplies).

    The density net's geometry outputs only feed the colour net's first layer, so
    those two linear maps are folded into one 64x64 matrix applied to the density
    net's last hidden layer; the view-direction half of that layer is applied per
    sample from its spherical harmonics.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    w_sigma: torch.Tensor  # (64, 1)
    b_sigma: float
    w_geo: torch.Tensor  # (64, 64): hidden -> colour layer 1, through the geometry feature
    w_sh: torch.Tensor  # (16, 64)
    b_c1: torch.Tensor
    w_c2: torch.Tensor
    b_c2: torch.Tensor
    w_c3: torch.Tensor
    b_c3: torch.Tensor

    @classmethod
    def from_field(cls, field, device: torch.device, dtype: torch.dtype) -> _Mlp:
        d1, d2, d3 = (field.density_net[i] for i in (0, 2, 4))
        c1, c2, c3 = (field.color_net[i] for i in (0, 2, 4))
        with torch.no_grad():
            w3 = d3.weight.double()  # (1 + G, 64)
            b3 = d3.bias.double()
            wc1 = c1.weight.double()  # (64, 16 + G)
            w_sh, w_g = wc1[:, :16], wc1[:, 16:]
            w_geo = w3[1:].T @ w_g.T
            b_c1 = c1.bias.double() + b3[1:] @ w_g.T

            def t(x: torch.Tensor) -> torch.Tensor:
                return x.detach().to(device=device, dtype=dtype).contiguous()

            return cls(
                w1=t(d1.weight.T), b1=t(d1.bias), w2=t(d2.weight.T), b2=t(d2.bias),
                # the reference's shifted softplus, softplus(h - 1), folds into the bias
                w_sigma=t(w3[:1].T), b_sigma=float(b3[0]) - 1.0,
                w_geo=t(w_geo), w_sh=t(w_sh.T), b_c1=t(b_c1),
                w_c2=t(c2.weight.T), b_c2=t(c2.bias), w_c3=t(c3.weight.T), b_c3=t(c3.bias),
            )

    def density(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (S,) and the last hidden layer (S, 64) from the encoding (S, L*F)."""
        h = torch.addmm(self.b1, enc, self.w1).relu_()
        h = torch.addmm(self.b2, h, self.w2).relu_()
        sigma = torch.nn.functional.softplus((h @ self.w_sigma).squeeze(1) + self.b_sigma)
        return sigma, h

    def colour(self, hidden: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """RGB (S, 3) in [0, 1] from the density net's hidden layer and unit view directions."""
        x = torch.addmm(self.b_c1, hidden, self.w_geo)
        x.addmm_(spherical_harmonics(dirs).to(x.dtype), self.w_sh).relu_()
        x = torch.addmm(self.b_c2, x, self.w_c2).relu_()
        return torch.sigmoid(torch.addmm(self.b_c3, x, self.w_c3))


class Renderer:
    """Renders one avatar bundle from face parameters, fast.

    ``resolution``: output side in pixels (default: the bundle's; the focal length
    scales with it). ``device``: "cpu" (numba kernels) or a torch CUDA device.
    ``threads``: CPU threads for numba and torch (default: all cores).
    """

    def __init__(
        self,
        bundle: AvatarBundle,
        resolution: int | None = None,
        device: str = "cpu",
        *,
        threads: int | None = None,
        settings: RenderSettings | None = None,
    ) -> None:
        self.bundle = bundle
        self.resolution = int(resolution or bundle.resolution)
        if not 16 <= self.resolution <= 4096:
            raise RenderError(f"resolution must be 16..4096 pixels, got {resolution}")
        self.focal = bundle.focal * self.resolution / bundle.resolution
        self.settings = settings or RenderSettings()
        self.device = torch.device(device)
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
        # Without transmitted translation the head sits where it sat on average in enrollment.
        self.default_translation = 0.5 * (model.bounds_lo[k + 3 : k + 6] + model.bounds_hi[k + 3 : k + 6])
        self.head_centre = np.asarray(cfg.box_centre, np.float64)
        self._box_centre = np.asarray(cfg.box_centre, np.float32)
        self._box_size = (2 * np.asarray(cfg.box_half, np.float32)).astype(np.float32)
        self._lo = (field.box_centre - field.box_half).numpy().astype(np.float32)
        self._hi = (field.box_centre + field.box_half).numpy().astype(np.float32)
        self._resolutions = np.asarray(field.encoding.resolutions, np.int32)
        self._last_params: FaceParams | None = None
        self._guide: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # surface, rotation, centre
        self._white = np.ones((self.resolution * self.resolution, 3), np.float32)
        if self.device.type == "cpu":
            self._tables = field.encoding.tables.detach().float().contiguous().numpy()
            self._occupancy = bundle.occupancy.to(torch.uint8).contiguous().numpy()
            self._mlp = _Mlp.from_field(field, self.device, torch.float32)
            self._torch_path = None
        else:
            from nerfconf.avatar.fast_torch import TorchPath  # noqa: PLC0415

            self._torch_path = TorchPath(bundle, self.device)
        #: what the last frame cost: rays in the box, field evaluations, colour evaluations, rounds, ms
        self.last_stats: dict[str, float] = {}

    # -- public ----------------------------------------------------------------------

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
        r_head, t_head = head_pose(rotation, translation, view, self.head_centre)
        cam_rot, centre = camera_in_head(r_head, t_head)
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
        weights = np.concatenate([[1.0], expression]).astype(np.float32)
        table = HK.blend(self._tables, weights)
        t1 = time.perf_counter()
        stats["blend_ms"] = (t1 - t0) * 1e3

        n = self.resolution * self.resolution
        dirs = np.empty((n, 3), np.float32)
        near = np.empty(n, np.float32)
        far = np.empty(n, np.float32)
        centre32 = centre.astype(np.float32)
        RK.setup_rays(cam_rot, centre32, self.focal, self.resolution, self._lo, self._hi, dirs, near, far)
        next_idx, guided = self._guide_start(cam_rot, centre, n)
        fresh = guided.copy()
        trans = np.ones(n, np.float32)
        opacity = np.zeros(n, np.float32)
        depth = np.zeros(n, np.float32)
        surface = np.full(n, -1, np.int32)
        acc = np.zeros((n, 3), np.float32)
        active = np.flatnonzero(far > near).astype(np.int32)
        stats["rays_in_box"] = len(active)
        t_min = np.float32(s.t_min)
        evaluated = coloured = rounds = 0
        t_field = 0.0
        while len(active):
            budget = ROUND_BUDGETS[min(rounds, len(ROUND_BUDGETS) - 1)]
            rounds += 1
            m = len(active) * budget
            slot_x = np.empty((m, 3), np.float32)
            slot_t = np.empty(m, np.float32)
            slot_i = np.empty(m, np.int32)
            counts = np.empty(len(active), np.int32)
            RK.gather(active, next_idx, budget, REFERENCE_SAMPLES, centre32, dirs, near, far,
                      self._box_centre, self._box_size, self._occupancy, slot_x, slot_t, slot_i, counts)
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
                enc = np.empty((total, len(self._resolutions) * table.shape[2]), np.float32)
                HK.encode_forward(xs, table, self._resolutions, enc)
                with torch.no_grad():
                    sigma, hidden = self._mlp.density(torch.from_numpy(enc))
                t_field += time.perf_counter() - tf
                w = np.empty(total, np.float32)
                RK.composite(active, offsets, sigma.numpy(), ts, idx, near, far, REFERENCE_SAMPLES, t_min,
                             trans, opacity, depth, surface, guided, fresh, next_idx, w)
                sel = np.flatnonzero(w > s.colour_weight_min)
                if len(sel):
                    tf = time.perf_counter()
                    sel_rays = rays[sel]
                    with torch.no_grad():
                        rgb = self._mlp.colour(hidden[torch.from_numpy(sel)], torch.from_numpy(dirs[sel_rays]))
                    t_field += time.perf_counter() - tf
                    RK.accumulate_colour(sel_rays, w[sel], rgb.numpy(), acc)
                evaluated += total
                coloured += len(sel)
            active = RK.next_active(active, next_idx, REFERENCE_SAMPLES, trans, t_min, opacity, depth, surface,
                                    acc, guided, fresh)
        t2 = time.perf_counter()
        image = np.empty((n, 3), np.uint8)
        RK.finish_image(acc, opacity, bg, image)
        depth /= np.maximum(opacity, np.float32(1e-6))
        self._guide = (surface, cam_rot, centre)
        t3 = time.perf_counter()
        stats.update(samples=evaluated, coloured=coloured, rounds=rounds, guided=int(guided.sum()),
                     field_ms=t_field * 1e3, march_ms=(t2 - t1 - t_field) * 1e3, finish_ms=(t3 - t2) * 1e3)
        return image, depth, opacity, stats

"""The fast renderer's torch path, for ``Renderer(device="cuda")``.

On a GPU the whole frame is one batch: every ray's 48 reference sample positions
at once, occupancy-culled, the hash tables blended once per frame, the MLPs in
fp16 (autocast), the colour net only where the compositing weight matters.
Early termination and upsampling, which pay on a CPU, would only serialise the
work here. The same code runs on CPU in fp32, which is how it is tested where
no GPU exists.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.fields.hashgrid import reference_encode
from nerfconf.avatar.rendering.renderer import DEFERRED_MIN_OPACITY, FixedOccupancy, ray_box


class TorchPath:
    def __init__(self, bundle: AvatarBundle, device: torch.device, samples: int = 48,
                 colour_weight_min: float = 1e-3) -> None:
        self.device = device
        self.samples = samples
        self.colour_weight_min = colour_weight_min
        self.field = copy.deepcopy(bundle.field).to(device).eval()
        self.occupancy = FixedOccupancy(self.field, bundle.occupancy.to(device))
        self.tables = self.field.encoding.tables.detach()
        self.resolutions = self.field.encoding.resolutions
        # fp16 matmuls where the hardware has them; CPU stays fp32
        self.half = device.type == "cuda"
        self._pixels: dict[int, torch.Tensor] = {}

    def _camera_dirs(self, cam_rot: np.ndarray, focal: float, res: int) -> torch.Tensor:
        if res not in self._pixels:
            ys, xs = torch.meshgrid(torch.arange(res, dtype=torch.float64), torch.arange(res, dtype=torch.float64),
                                    indexing="ij")
            c = res / 2.0
            self._pixels[res] = torch.stack([(xs.ravel() + 0.5 - c), (ys.ravel() + 0.5 - c)], dim=1).to(self.device)
        px = self._pixels[res] / focal
        cam = torch.cat([px, torch.ones(len(px), 1, dtype=torch.float64, device=self.device)], dim=1)
        d = cam @ torch.as_tensor(cam_rot, dtype=torch.float64, device=self.device).T
        return (d / d.norm(dim=1, keepdim=True)).float()

    @torch.no_grad()
    def render(self, expression: np.ndarray, cam_rot: np.ndarray, centre: np.ndarray, focal: float, res: int,
               background: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        t0 = time.perf_counter()
        f = self.field
        e = torch.as_tensor(expression, dtype=torch.float32, device=self.device)
        table = torch.einsum("k,kltf->ltf", f.encoding.weights(e), self.tables)
        dirs = self._camera_dirs(cam_rot, focal, res)
        n = len(dirs)
        origin = torch.as_tensor(centre, dtype=torch.float32, device=self.device).expand(n, 3)
        near, far = ray_box(origin, dirs, f.box_centre - f.box_half, f.box_centre + f.box_half)
        hit = torch.nonzero(far > near).squeeze(1)
        s = self.samples
        o, d, nr, fr = origin[hit], dirs[hit], near[hit], far[hit]
        m = len(hit)
        steps = (torch.arange(s, dtype=torch.float32, device=self.device) + 0.5) / s
        t = nr[:, None] + (fr - nr)[:, None] * steps
        points = (o[:, None, :] + t[..., None] * d[:, None, :]).reshape(-1, 3)
        idx = torch.nonzero(self.occupancy.occupied(points)).squeeze(1)
        sigma = torch.zeros(m * s, device=self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            enc = reference_encode(f.normalize(points[idx]), table, self.resolutions)
            h = f.density_net(enc).float()
        sigma[idx] = torch.nn.functional.softplus(h[:, 0] - 1.0)
        # the reference's compositing (renderer.composite), keeping the weights for colour selection
        alpha = 1.0 - torch.exp(-sigma.view(m, s) * ((fr - nr) / s)[:, None])
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=1), dim=1)[:, :-1]
        weights = alpha * trans
        opacity = weights.sum(dim=1)
        ray_depth = (weights * t).sum(dim=1) / opacity.clamp_min(1e-6)
        w = weights.reshape(-1)
        keep = torch.nonzero(w[idx] > self.colour_weight_min).squeeze(1)
        sel = idx[keep]
        ray_of = sel // s
        if f.config.deferred:  # features composited, one colour per ray (renderer._render_deferred)
            feat = torch.zeros(m, h.shape[1] - 1, device=self.device).index_add_(0, ray_of, w[sel, None] * h[keep, 1:])
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
                c = f.colour(d, feat / opacity.clamp_min(DEFERRED_MIN_OPACITY)[:, None]).float()
            acc = opacity[:, None] * c
        else:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
                c = f.colour(d[ray_of], h[keep, 1:])
            acc = torch.zeros(m, 3, device=self.device).index_add_(0, ray_of, w[sel, None] * c)
        bg = torch.as_tensor(background, device=self.device)
        colour = bg.clone()
        colour[hit] = acc + (1.0 - opacity[:, None]) * bg[hit]
        image = (colour.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        alpha_img = torch.zeros(n, device=self.device)
        alpha_img[hit] = opacity
        depth = torch.zeros(n, device=self.device)
        depth[hit] = ray_depth
        result = image.cpu().numpy(), depth.cpu().numpy(), alpha_img.cpu().numpy()
        stats = {"rays_in_box": m, "samples": len(idx), "coloured": len(sel),
                 "render_ms": (time.perf_counter() - t0) * 1e3}
        return (*result, stats)

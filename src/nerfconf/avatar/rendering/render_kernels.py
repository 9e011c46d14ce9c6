"""Numba kernels of the fast renderer: rays, empty-space skipping, compositing.

The fast renderer evaluates a subset of the reference renderer's own sample
positions (``renderer.render_rays``: 48 stratified midpoints between the ray's
entry into and exit from the head box), so what it computes is the reference's
sum with terms left out that are provably or nearly zero:

* samples in cells the occupancy grid marks empty (the reference skips them too);
* samples behind the point where the transmittance fell below ``t_min`` (early
  termination);
* optionally, samples in front of the previous frame's surface (depth guidance),
  with a fallback to the whole ray when that guess looks wrong.

Rays are marched in rounds: each round takes the next few occupied samples of
every live ray (``gather``), the caller evaluates the field on all of them at
once, and ``composite`` adds them front to back. Arithmetic follows the
reference's float32 order, so positions and occupancy tests agree bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: A guided ray whose first sample is at least this opaque started inside the
#: head, so the surface moved toward the camera: it is marched again from the start.
GUIDE_ALPHA = 0.05


@njit(parallel=True, cache=True)
def setup_rays(cam_rot, centre, focal, resolution, lo, hi, dirs, near, far):
    """Unit directions (N, 3) and box entry/exit (N,) of every pixel ray, row-major pixels.

    cam_rot (3, 3) float64 camera->head, centre (3,) float32, lo/hi (3,) float32.
    Directions are computed in float64 and stored as float32, as ``Camera.rays``
    does; the box test runs in float32 as ``renderer.ray_box`` does. A ray that
    misses gets ``far == near``.
    """
    c = resolution / 2.0
    n = resolution * resolution
    tiny = np.float32(1e-9)
    for p in prange(n):
        py = p // resolution
        px = p - py * resolution
        cx = (px + 0.5 - c) / focal
        cy = (py + 0.5 - c) / focal
        d0 = cam_rot[0, 0] * cx + cam_rot[0, 1] * cy + cam_rot[0, 2]
        d1 = cam_rot[1, 0] * cx + cam_rot[1, 1] * cy + cam_rot[1, 2]
        d2 = cam_rot[2, 0] * cx + cam_rot[2, 1] * cy + cam_rot[2, 2]
        norm = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        d = (np.float32(d0 / norm), np.float32(d1 / norm), np.float32(d2 / norm))
        dirs[p, 0] = d[0]
        dirs[p, 1] = d[1]
        dirs[p, 2] = d[2]
        t_near = np.float32(-np.inf)
        t_far = np.float32(np.inf)
        for a in range(3):
            da = d[a]
            if abs(da) < tiny:
                da = tiny
            inv = np.float32(1.0) / da
            t0 = (lo[a] - centre[a]) * inv
            t1 = (hi[a] - centre[a]) * inv
            t_near = max(t_near, min(t0, t1))
            t_far = min(t_far, max(t0, t1))
        t_near = max(t_near, np.float32(0.0))
        near[p] = t_near
        far[p] = t_far if t_far > t_near else t_near


@njit(cache=True)
def _cell(v, res):
    # torch's .long() truncates toward zero; the clamp then keeps the index in range
    i = np.int64(v * np.float32(res))
    return min(max(i, 0), res - 1)


@njit(parallel=True, cache=True)
def gather(active, next_idx, budget, n_samples, centre, dirs, near, far,
           box_centre, box_size, occupancy, slot_x, slot_t, slot_i, counts):
    """The next ``budget`` occupied samples of every active ray, into per-ray slots.

    Writes unit-cube positions ``slot_x`` (A * budget, 3), distances ``slot_t`` and
    sample indices ``slot_i``, and ``counts`` (A,); advances ``next_idx``.
    """
    res = occupancy.shape[0]
    half = np.float32(0.5)
    inv_s = np.float32(n_samples)
    for a in prange(active.shape[0]):
        r = active[a]
        i = next_idx[r]
        c = 0
        base = a * budget
        t0 = near[r]
        span = far[r] - t0
        while i < n_samples and c < budget:
            step = (np.float32(i) + half) / inv_s
            t = t0 + span * step
            x = (centre[0] + t * dirs[r, 0] - box_centre[0]) / box_size[0] + half
            y = (centre[1] + t * dirs[r, 1] - box_centre[1]) / box_size[1] + half
            z = (centre[2] + t * dirs[r, 2] - box_centre[2]) / box_size[2] + half
            if occupancy[_cell(x, res), _cell(y, res), _cell(z, res)]:
                s = base + c
                slot_x[s, 0] = x
                slot_x[s, 1] = y
                slot_x[s, 2] = z
                slot_t[s] = t
                slot_i[s] = i
                c += 1
            i += 1
        next_idx[r] = i
        counts[a] = c


@njit(parallel=True, cache=True)
def compact(active, budget, counts, slot_x, slot_t, slot_i, offsets, xs, ts, idx, rays):
    """Packs the slots densely, rays in ``active`` order: ``offsets`` (A + 1,) must hold the prefix sums."""
    for a in prange(active.shape[0]):
        o = offsets[a]
        base = a * budget
        for c in range(counts[a]):
            xs[o + c, 0] = slot_x[base + c, 0]
            xs[o + c, 1] = slot_x[base + c, 1]
            xs[o + c, 2] = slot_x[base + c, 2]
            ts[o + c] = slot_t[base + c]
            idx[o + c] = slot_i[base + c]
            rays[o + c] = active[a]


@njit(parallel=True, cache=True)
def composite(active, offsets, sigma, ts, idx, near, far, n_samples, t_min,
              trans, opacity, depth, surface, guided, fresh, next_idx, weights):
    """Front-to-back compositing of one round, as ``renderer.composite`` sums it.

    Per ray: ``alpha = 1 - exp(-sigma * step)``, weight ``alpha * T``, then
    ``T *= 1 - alpha + 1e-10``. Writes each sample's weight (0 past early
    termination) and records ``surface``, the sample index where T first fell
    below 0.5. A guided ray whose first sample is already opaque (``GUIDE_ALPHA``)
    is reset to march from its first sample, and its weights of this round are zeroed.
    """
    eps = np.float32(1e-10)
    one = np.float32(1.0)
    for a in prange(active.shape[0]):
        r = active[a]
        start = offsets[a]
        stop = offsets[a + 1]
        if stop == start:
            continue
        step = (far[r] - near[r]) / np.float32(n_samples)
        if guided[r] and fresh[r]:
            alpha0 = one - np.exp(-sigma[start] * step)
            if alpha0 >= np.float32(GUIDE_ALPHA):
                guided[r] = 0
                next_idx[r] = 0
                for s in range(start, stop):
                    weights[s] = 0.0
                continue
        fresh[r] = 0
        t_r = trans[r]
        op = opacity[r]
        dp = depth[r]
        for s in range(start, stop):
            if t_r < t_min:
                weights[s] = 0.0
                continue
            alpha = one - np.exp(-sigma[s] * step)
            w = alpha * t_r
            weights[s] = w
            op += w
            dp += w * ts[s]
            t_next = t_r * (one - alpha + eps)
            if t_r >= np.float32(0.5) and t_next < np.float32(0.5):
                surface[r] = idx[s]
            t_r = t_next
        trans[r] = t_r
        opacity[r] = op
        depth[r] = dp


@njit(cache=True)
def next_active(active, next_idx, n_samples, trans, t_min, opacity, depth, surface, acc, guided, fresh):
    """Rays still worth marching. A guided ray that reached the box exit without
    becoming opaque missed its guess (the surface moved) and starts over unguided."""
    keep = np.empty(active.shape[0], np.int32)
    n = 0
    for a in range(active.shape[0]):
        r = active[a]
        if trans[r] < t_min:
            continue
        if next_idx[r] >= n_samples:
            if guided[r] and opacity[r] < np.float32(0.5):
                guided[r] = 0
                fresh[r] = 0
                next_idx[r] = 0
                trans[r] = 1.0
                opacity[r] = 0.0
                depth[r] = 0.0
                surface[r] = -1
                acc[r, 0] = 0.0
                acc[r, 1] = 0.0
                acc[r, 2] = 0.0
            else:
                continue
        keep[n] = r
        n += 1
    return keep[:n]


@njit(cache=True)
def accumulate_colour(rays, weights, rgb, acc):
    """``acc[ray] += weight * rgb`` for the samples that got a colour."""
    for s in range(rays.shape[0]):
        r = rays[s]
        w = weights[s]
        acc[r, 0] += w * rgb[s, 0]
        acc[r, 1] += w * rgb[s, 1]
        acc[r, 2] += w * rgb[s, 2]


@njit(cache=True)
def accumulate_features(sel, rays, weights, out, acc):
    """``acc[rays[q]] += weights[q] * out[q, 1:]`` for the samples ``q`` in ``sel`` (deferred
    shading: ``out`` is the density decoder's output, density first, then the feature)."""
    n_f = acc.shape[1]
    for s in range(sel.shape[0]):
        q = sel[s]
        r = rays[q]
        w = weights[q]
        for j in range(n_f):
            acc[r, j] += w * out[q, 1 + j]


@njit(parallel=True, cache=True)
def finish_image(acc, opacity, t_min, background, image):
    """``colour + (1 - opacity) * background`` to uint8, as ``render_image`` rounds it.

    A ray stopped early (opacity above ``1 - t_min``) would have spent what is
    left on more of the head, not on the background: the remainder takes the
    ray's mean colour so far. background (N, 3) float32 in [0, 1]; image (N, 3) uint8.
    """
    for p in prange(acc.shape[0]):
        keep = np.float32(1.0) - opacity[p]
        stopped = opacity[p] > np.float32(1.0) - t_min
        for ch in range(3):
            fill = acc[p, ch] / opacity[p] if stopped else background[p, ch]
            v = acc[p, ch] + keep * fill
            v = min(max(v, np.float32(0.0)), np.float32(1.0))
            image[p, ch] = np.uint8(v * np.float32(255.0) + np.float32(0.5))


@njit(cache=True)
def coarse_cells(occupancy, factor):
    """Unit-cube centres (C, 3) and indices (C, 3) of the coarse cells (``factor``^3 fine
    cells each) that hold at least one occupied fine cell."""
    res = occupancy.shape[0]
    cr = res // factor
    hit = np.zeros((cr, cr, cr), np.uint8)
    for i in range(res):
        for j in range(res):
            for k in range(res):
                if occupancy[i, j, k]:
                    hit[i // factor, j // factor, k // factor] = 1
    n = int(hit.sum())
    centres = np.empty((n, 3), np.float32)
    cells = np.empty((n, 3), np.int32)
    q = 0
    for i in range(cr):
        for j in range(cr):
            for k in range(cr):
                if hit[i, j, k]:
                    centres[q, 0] = (i + 0.5) / cr
                    centres[q, 1] = (j + 0.5) / cr
                    centres[q, 2] = (k + 0.5) / cr
                    cells[q, 0] = i
                    cells[q, 1] = j
                    cells[q, 2] = k
                    q += 1
    return centres, cells


@njit(parallel=True, cache=True)
def probed_occupancy(occupancy, factor, cells, dense, radius, out):
    """``out`` = the static grid, restricted to fine cells whose coarse cell or one of its
    neighbours within ``radius`` coarse cells was probed dense this frame (``dense`` (C,))."""
    res = occupancy.shape[0]
    cr = res // factor
    coarse = np.zeros((cr, cr, cr), np.uint8)
    for q in range(cells.shape[0]):
        if dense[q]:
            i, j, k = cells[q, 0], cells[q, 1], cells[q, 2]
            for a in range(max(i - radius, 0), min(i + radius + 1, cr)):
                for b in range(max(j - radius, 0), min(j + radius + 1, cr)):
                    for c in range(max(k - radius, 0), min(k + radius + 1, cr)):
                        coarse[a, b, c] = 1
    for i in prange(res):
        for j in range(res):
            for k in range(res):
                out[i, j, k] = occupancy[i, j, k] & coarse[i // factor, j // factor, k // factor]


@njit(cache=True)
def _parents(x, y, res, step):
    """The pixels ``step`` away, on the grid of stride ``2 step``, that pixel (x, y) of the
    stride-``step`` grid is interpolated from, as flat indices (-1: none, or not such a pixel)."""
    if x % step or y % step:
        return -1, -1, -1, -1
    two = 2 * step
    xe, ye = x % two == 0, y % two == 0
    if xe and ye:
        return -1, -1, -1, -1
    if x + step >= res or y + step >= res:
        return -2, -2, -2, -2  # the far parent is off the image
    if ye:
        return y * res + x - step, y * res + x + step, -1, -1
    if xe:
        return (y - step) * res + x, (y + step) * res + x, -1, -1
    return ((y - step) * res + x - step, (y - step) * res + x + step,
            (y + step) * res + x - step, (y + step) * res + x + step)


@njit(parallel=True, cache=True)
def upsample(res, step, tol, acc, opacity, depth, near, far, need):
    """Fills the pixels of the stride-``step`` grid between those of the stride-``2 step`` grid.

    A pixel takes the mean premultiplied colour, opacity and (weighted) depth of its
    2 or 4 parents when they differ by at most ``tol`` (0..1) in every channel and in
    opacity; otherwise, or when a parent is off the image, it is marked in ``need``
    for marching. Pixels whose ray misses the head box are left empty.
    """
    for y in prange(res):
        for x in range(res):
            p = y * res + x
            need[p] = 0
            a, b, c, d = _parents(x, y, res, step)
            if a == -1 or far[p] <= near[p]:
                continue
            if a == -2:
                need[p] = 1
                continue
            n = 2 if c < 0 else 4
            ok = True
            for ch in range(4):
                lo = np.float32(np.inf)
                hi = np.float32(-np.inf)
                for qi in range(n):
                    q = a if qi == 0 else (b if qi == 1 else (c if qi == 2 else d))
                    v = opacity[q] if ch == 3 else acc[q, ch]
                    lo = min(lo, v)
                    hi = max(hi, v)
                if hi - lo > tol:
                    ok = False
            if not ok:
                need[p] = 1
                continue
            inv = np.float32(1.0 / n)
            for ch in range(3):
                s = acc[a, ch] + acc[b, ch]
                if n == 4:
                    s += acc[c, ch] + acc[d, ch]
                acc[p, ch] = s * inv
            s = opacity[a] + opacity[b]
            t = depth[a] + depth[b]
            if n == 4:
                s += opacity[c] + opacity[d]
                t += depth[c] + depth[d]
            opacity[p] = s * inv
            depth[p] = t * inv

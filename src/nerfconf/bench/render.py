"""``nerfconf bench render``: how fast the receiver renders an avatar, and how close to the reference.

Frames come from a real parameter track: by default the parameters the sender
would transmit for the avatar's held-out frames (``heldout_track``), the same
inputs ``nerfconf eval quality`` renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.rendering.fast import RenderSettings
from nerfconf.bench.host import gmac_equivalents, sgemm_gmacs
from nerfconf.evaluate.metrics import psnr
from nerfconf.tracks import ParamTrack


@dataclass(frozen=True)
class Timing:
    """Milliseconds a frame over the timed frames."""

    median: float
    p95: float
    min: float
    mean: float

    @classmethod
    def of(cls, ms: list[float]) -> Timing:
        a = np.asarray(ms)
        return cls(float(np.median(a)), float(np.percentile(a, 95)), float(a.min()), float(a.mean()))


@dataclass(frozen=True)
class Fidelity:
    """PSNR of the fast renderer against the reference renderer on a few frames."""

    frames: int
    psnr_min: float
    psnr_mean: float
    frame_indices: list[int]


@dataclass(frozen=True)
class RenderBench:
    """``nerfconf bench render``: speed and cost of the receiver's renderer on one avatar."""

    resolution: int
    device: str
    #: {"torch": n, "numba": n}
    threads: dict[str, int]
    frames: int
    track: str
    ms_per_frame: Timing
    fps_median: float
    #: this host's single-core sgemm rate on the renderer's shape, measured in the same run
    sgemm_gmacs_per_core: float
    #: median ms x sgemm GMAC/s x render threads (None on a GPU)
    gmac_equivalents_median: float | None
    #: the renderer's own counters and timings, medians over the frames
    parts_median: dict[str, float]
    prewarm_s: float
    settings: RenderSettings
    quality: Fidelity | None
    avatar: str | None = None


def bench_render(
    bundle: AvatarBundle,
    track: ParamTrack,
    *,
    resolution: int | None = None,
    frames: int = 100,
    device: str = "cpu",
    threads: int | None = None,
    quality_frames: int = 0,
    settings=None,
    progress: bool = False,
) -> RenderBench:
    """ms per frame over ``frames`` frames of ``track`` (cycled if shorter), after ``prewarm``;
    then PSNR against the reference renderer on ``quality_frames`` evenly spaced frames."""
    from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415

    renderer = Renderer(bundle, resolution, device, threads=threads, settings=settings)
    gmacs = [sgemm_gmacs()]  # before and after the frames: the host's speed in the same run
    t0 = time.perf_counter()
    renderer.prewarm()
    prewarm_s = time.perf_counter() - t0
    face_rows = np.flatnonzero(track.face_found)
    if not len(face_rows):
        raise ValueError("the track has no frame with a face")
    order = [int(face_rows[i % len(face_rows)]) for i in range(frames)]
    items = range(frames)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, unit="frame", desc=f"rendering at {renderer.resolution} px")
    ms, parts = [], {}
    for i in items:
        params = track.params(order[i])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        renderer.render(params)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        ms.append((time.perf_counter() - t) * 1e3)
        for k, v in renderer.last_stats.items():
            parts.setdefault(k, []).append(v)
    gmacs.append(sgemm_gmacs())
    quality = fidelity(renderer, track, quality_frames) if quality_frames > 0 else None
    per_core = float(np.median(gmacs))
    render_threads = numba.get_num_threads()
    return RenderBench(
        resolution=renderer.resolution,
        device=_device_name(device),
        threads={"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        frames=frames,
        track=track.source,
        ms_per_frame=Timing.of(ms),
        fps_median=1e3 / float(np.median(ms)),
        sgemm_gmacs_per_core=per_core,
        gmac_equivalents_median=None if device.startswith("cuda") else
        gmac_equivalents(float(np.median(ms)), per_core, render_threads),
        parts_median={k: float(np.median(v)) for k, v in parts.items()},
        prewarm_s=prewarm_s,
        settings=renderer.settings,
        quality=quality,
    )


def fidelity(renderer, track: ParamTrack, frames: int) -> Fidelity:
    """PSNR of the fast path against the reference renderer on evenly spaced face frames of a track.

    Each frame is rendered right after the one before it, as in a stream, so that
    state carried between frames (depth guidance) is exercised.
    """
    rows = np.flatnonzero(track.face_found)
    pick = rows[np.linspace(0, len(rows) - 1, min(frames, len(rows))).astype(int)]
    scores = []
    for i in pick:
        if i > 0:
            renderer.render(track.params(int(i) - 1))
        params = track.params(int(i))
        scores.append(psnr(renderer.render(params).image, renderer.reference(params)))
    return Fidelity(len(scores), min(scores), float(np.mean(scores)), [int(i) for i in pick])


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    import platform  # noqa: PLC0415

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os  # noqa: PLC0415

    return f"cpu ({cpu}, {os.cpu_count()} cores)"

"""The Generate stage in its own process, so rendering never waits on the GIL.

Jobs and results cross a process boundary as plain numpy arrays between our own
processes. The job queue is short and drops its oldest entry, so a renderer
that falls behind skips frames instead of adding latency. By default the process
also renders smaller when its frames take too long for the frame rate
(``render_budget``), and scales them up to the size the display expects.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.avatar.view import View


class RenderWorkerError(RuntimeError):
    """The render process failed to start or died."""


@dataclass(frozen=True)
class RenderJob:
    key: int  # the frame's sequence number, or -1 for a concealed frame
    index: int
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray | None
    #: the receiver's chosen view, None for the sender's own (true perspective)
    view: View | None = None


@dataclass(frozen=True)
class RenderResult:
    key: int
    index: int
    #: at the full size, whatever size it was rendered at
    image: np.ndarray
    t_in: float
    t_out: float
    #: the side it was rendered at
    resolution: int = 0


@dataclass(frozen=True)
class WorkerPlan:
    """What the render process renders, and whether it may render smaller to keep the frame rate."""

    bundle_dir: str
    resolution: int | None = None
    device: str = "cpu"
    threads: int | None = None
    #: the call's frame rate, which sets the render budget
    fps: float = 20.0
    #: render smaller on a host too slow for the full size (``render_budget``)
    adaptive: bool = True


def _serve(plan: WorkerPlan, jobs: mp.Queue, results: mp.Queue) -> None:
    try:
        import numba  # noqa: PLC0415

        from nerfconf.avatar.bundle import AvatarBundle  # noqa: PLC0415
        from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
        from nerfconf.pipeline.render_budget import BudgetConfig, ResolutionGovernor, to_full_size  # noqa: PLC0415
        from nerfconf.types import FaceParams  # noqa: PLC0415

        bundle = AvatarBundle.load(plan.bundle_dir)
        full = Renderer(bundle, plan.resolution, plan.device, threads=plan.threads)
        governor = ResolutionGovernor(full.resolution, BudgetConfig(fps=plan.fps)) if plan.adaptive else None
        # every size is warmed before the call, so that a change of size mid-call costs nothing extra
        renderers = {r: full.at_resolution(r) for r in (governor.sizes if governor else (full.resolution,))}
        for renderer in renderers.values():
            renderer.prewarm()
        smallest = f" (down to {governor.sizes[-1]} px when frames run late)" if governor else ""
        n = numba.get_num_threads()
        threads = f", {n} thread{'s' if n > 1 else ''}" if full.device.type == "cpu" else ""
        results.put(("ready", f"{full.backend} renderer on {full.device.type}{threads}, {full.resolution} px{smallest}"))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    side = full.resolution
    while True:
        job = jobs.get()
        if job is None:
            return
        t_in = time.monotonic()
        size = governor.resolution if governor else side
        try:
            params = FaceParams(job.expression, job.rotation, job.translation, True, 0.0, job.index)
            image = renderers[size].render(params, job.view).image
        except Exception as exc:  # noqa: BLE001
            results.put(("error", f"rendering frame {job.index} failed: {type(exc).__name__}: {exc}"))
            return
        image = to_full_size(image, side)
        t_out = time.monotonic()
        if governor is not None:
            governor.observe(t_out - t_in)
        results.put(("frame", RenderResult(job.key, job.index, image, t_in, t_out, size)))


def call_render_threads(requested: int | None, *, sending: bool) -> int | None:
    """The render process's threads in a call: as asked, else every core but one on a machine that also
    sends, else every core.

    The sender's capture, tracking and pose fit take most of a core. A render whose parallel regions
    share every core with them waits on whichever thread was descheduled: in the demo on two cores,
    two render threads gave a render p95 of 190 to 250 ms and half the slots fresh, one thread 50 ms
    and 95 % (docs/RESULTS.md).
    """
    if requested is not None:
        return requested
    import os  # noqa: PLC0415

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1) if sending else None


class RenderWorker:
    def __init__(self, bundle_dir: str | Path, *, resolution: int | None = None, device: str = "cpu",
                 threads: int | None = None, queue_size: int = 1, fps: float = 20.0, adaptive: bool = True) -> None:
        ctx = mp.get_context("spawn")
        self._jobs: mp.Queue = ctx.Queue(maxsize=queue_size)
        self._results: mp.Queue = ctx.Queue()
        self.plan = WorkerPlan(str(bundle_dir), resolution, device, threads, fps, adaptive)
        self._process = ctx.Process(target=_serve, args=(self.plan, self._jobs, self._results), daemon=True,
                                    name="nerfconf-render")
        self.dropped = 0
        self.renderer_name = ""

    @property
    def budget_s(self) -> float:
        """The render time a frame may take before the process renders smaller."""
        from nerfconf.pipeline.render_budget import BudgetConfig  # noqa: PLC0415

        return BudgetConfig(fps=self.plan.fps).budget_s

    def start(self, timeout: float = 300.0) -> None:
        """Starts the process and waits until its renderer is pre-warmed."""
        self._process.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, payload = self._results.get(timeout=0.5)
                break
            except queue.Empty:
                # a process that died before reporting (killed, out of memory) would otherwise be waited for
                if not self._process.is_alive():
                    raise RenderWorkerError(
                        f"the render process exited while starting (exit code {self._process.exitcode})") from None
                if time.monotonic() > deadline:
                    self.close()
                    raise RenderWorkerError(f"the renderer did not start within {timeout:.0f} s") from None
        if kind != "ready":
            self.close()
            raise RenderWorkerError(f"the renderer failed to start: {payload}")
        self.renderer_name = payload

    def submit(self, job: RenderJob) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            try:
                self._jobs.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                self.dropped += 1

    def result(self, timeout: float | None = None) -> RenderResult | None:
        """The next rendered frame, or None on timeout; raises if the process failed."""
        try:
            kind, payload = self._results.get(timeout=timeout)
        except queue.Empty:
            if not self._process.is_alive():
                raise RenderWorkerError("the render process died") from None
            return None
        if kind == "error":
            raise RenderWorkerError(payload)
        return payload

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._jobs.put(None, timeout=1.0)
            except queue.Full:
                pass
            self._process.join(timeout=5.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=2.0)

    def __enter__(self) -> RenderWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

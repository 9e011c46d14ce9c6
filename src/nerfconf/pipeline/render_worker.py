"""The Generate stage in its own process, so rendering never waits on the GIL.

Jobs and results cross a process boundary as plain numpy arrays between our own
processes. The job queue is short and drops its oldest entry, so a renderer
that falls behind skips frames instead of adding latency.
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
    image: np.ndarray
    t_in: float
    t_out: float


def _serve(bundle_dir: str, resolution: int | None, device: str, threads: int | None, jobs: mp.Queue,
           results: mp.Queue) -> None:
    try:
        from nerfconf.avatar.bundle import AvatarBundle  # noqa: PLC0415
        from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
        from nerfconf.types import FaceParams  # noqa: PLC0415

        bundle = AvatarBundle.load(bundle_dir)
        renderer = Renderer(bundle, resolution, device, threads=threads)
        renderer.prewarm()
        results.put(("ready", f"{renderer.backend} renderer on {renderer.device.type}, {renderer.resolution} px"))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        job = jobs.get()
        if job is None:
            return
        t_in = time.monotonic()
        try:
            params = FaceParams(job.expression, job.rotation, job.translation, True, 0.0, job.index)
            frame = renderer.render(params, job.view)
        except Exception as exc:  # noqa: BLE001
            results.put(("error", f"rendering frame {job.index} failed: {type(exc).__name__}: {exc}"))
            return
        results.put(("frame", RenderResult(job.key, job.index, frame.image, t_in, time.monotonic())))


class RenderWorker:
    def __init__(self, bundle_dir: str | Path, *, resolution: int | None = None, device: str = "cpu",
                 threads: int | None = None, queue_size: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self._jobs: mp.Queue = ctx.Queue(maxsize=queue_size)
        self._results: mp.Queue = ctx.Queue()
        self._process = ctx.Process(target=_serve, args=(str(bundle_dir), resolution, device, threads, self._jobs,
                                                         self._results), daemon=True, name="nerfconf-render")
        self.dropped = 0
        self.renderer_name = ""

    def start(self, timeout: float = 300.0) -> None:
        """Starts the process and waits until its renderer is pre-warmed."""
        self._process.start()
        try:
            kind, payload = self._results.get(timeout=timeout)
        except queue.Empty as exc:
            self.close()
            raise RenderWorkerError(f"the renderer did not start within {timeout:.0f} s") from exc
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

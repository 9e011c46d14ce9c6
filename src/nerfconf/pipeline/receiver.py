"""The receiver: Receive -> Decode -> Playout -> Generate -> Display.

The playout buffer works on parameters, before rendering, not on images as in
the paper: concealing a missing frame is then an interpolation of ~50 numbers,
and the renderer never spends time on a frame that would miss its deadline.

Decoding and playout run on the asyncio loop that owns the connection;
rendering runs in its own process (:mod:`render_worker`); a display thread
writes rendered frames to the sinks. When the sender's face is lost the
display holds the last image and fades it to white.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from nerfconf.codec.config import CodecConfig
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.errors import BitstreamError, DuplicateFrameError, MissingReferenceError
from nerfconf.pipeline.fifo import DropOldest
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.render_worker import RenderJob, RenderResult, RenderWorker
from nerfconf.playout.buffer import PlayoutBuffer

FADE_SECONDS = 1.0


@dataclass
class ReceiverStats:
    received: int = 0
    decoded: int = 0
    duplicates: int = 0
    missing_reference: int = 0
    undecodable: int = 0
    iframe_requests: int = 0
    rendered: int = 0
    displayed: int = 0
    render_dropped: int = 0
    display_dropped: int = 0
    faded: int = 0
    playout: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Shown:
    """One displayed frame, kept when the caller asks for a recording."""

    slot: int
    key: int
    image: np.ndarray
    t_display: float


class Receiver:
    def __init__(self, worker: RenderWorker, codec: CodecConfig, *, fps: float = 20.0,
                 sinks: list | None = None, view: tuple[float, float, float] | None = None,
                 stamps: StampLog | None = None, record: bool = False,
                 request_iframe: Callable[[], None] | None = None) -> None:
        self.worker = worker
        self.decoder = ParamDecoder(codec)
        self.playout = PlayoutBuffer(fps=fps)
        self.fps = fps
        self.sinks = sinks or []
        self.view = view
        self.stamps = stamps or StampLog()
        self.record = record
        self.shown: list[Shown] = []
        self.request_iframe = request_iframe
        self.stats = ReceiverStats()
        self._display: DropOldest[tuple] = DropOldest(4)
        self._done = threading.Event()

    async def run(self, recv: Callable[[], Awaitable], *, until: asyncio.Event) -> ReceiverStats:
        """Runs until ``until`` is set; ``recv`` returns the next received frame."""
        threads = [threading.Thread(target=self._collect, name="nerfconf-collect", daemon=True),
                   threading.Thread(target=self._show, name="nerfconf-display", daemon=True)]
        for t in threads:
            t.start()
        receive = asyncio.create_task(self._receive(recv))
        tick = asyncio.create_task(self._tick())
        try:
            await until.wait()
        finally:
            receive.cancel()
            tick.cancel()
            await asyncio.gather(receive, tick, return_exceptions=True)
            # let the last renders land before closing the display
            await asyncio.sleep(0.3)
            self._done.set()
            self._display.close()
            for t in threads:
                await asyncio.to_thread(t.join, 5.0)
            self.stats.render_dropped = self.worker.dropped
            self.stats.display_dropped = self._display.dropped
            self.stats.playout = self.playout.stats.to_dict()
        return self.stats

    # -- receive and decode ---------------------------------------------------------

    async def _receive(self, recv: Callable[[], Awaitable]) -> None:
        while True:
            got = await recv()
            self.stats.received += 1
            t_arrival = got.t_arrival
            try:
                decoded = self.decoder.decode(got.data)
            except DuplicateFrameError:
                self.stats.duplicates += 1
                continue
            except MissingReferenceError:
                self.stats.missing_reference += 1
                self._ask_iframe()
                continue
            except BitstreamError:
                self.stats.undecodable += 1
                self._ask_iframe()
                continue
            now = time.monotonic()
            self.stats.decoded += 1
            self.stamps.mark(decoded.seq, "receive", t_arrival)
            self.stamps.mark(decoded.seq, "decode_out", now)
            self.playout.push(decoded.params, decoded.seq, now)

    def _ask_iframe(self) -> None:
        if self.request_iframe is not None:
            self.stats.iframe_requests += 1
            self.request_iframe()

    # -- playout and rendering ----------------------------------------------------------

    async def _tick(self) -> None:
        period = 1.0 / self.fps
        slot = 0
        start = time.monotonic()
        while True:
            delay = start + slot * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            out = self.playout.pop(time.monotonic())
            if out is not None:
                if out.params.face_found:
                    self.worker.submit(RenderJob(out.seq if out.seq is not None else -1, slot,
                                                 out.params.expression, out.params.rotation,
                                                 out.params.translation, self.view))
                    if out.seq is not None:
                        self.stamps.mark(out.seq, "playout", time.monotonic())
                else:
                    self._display.put(("fade", slot, period))
            slot += 1

    def _collect(self) -> None:
        """Moves rendered frames from the render process to the display."""
        while not self._done.is_set():
            result = self.worker.result(timeout=0.1)
            if result is not None:
                self.stats.rendered += 1
                if result.key >= 0:
                    self.stamps.mark(result.key, "render_in", result.t_in)
                    self.stamps.mark(result.key, "render_out", result.t_out)
                self._display.put(("frame", result))

    def _show(self) -> None:
        last: np.ndarray | None = None
        fade = 0.0
        while (item := self._display.get()) is not None:
            if item[0] == "frame":
                result: RenderResult = item[1]
                last, fade, key, slot = result.image, 0.0, result.key, result.index
                image = last
            else:
                if last is None:
                    continue
                _, slot, period = item
                key = -1
                fade = min(1.0, fade + period / FADE_SECONDS)
                self.stats.faded += 1
                image = (last * (1.0 - fade) + 255.0 * fade).astype(np.uint8)
            for sink in self.sinks:
                sink.write(image)
            t = time.monotonic()
            if key >= 0:
                self.stamps.mark(key, "display", t)
            self.stats.displayed += 1
            if self.record:
                self.shown.append(Shown(slot, key, image, t))

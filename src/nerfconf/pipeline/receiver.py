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
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from nerfconf.avatar.view import View
from nerfconf.codec.config import CodecConfig
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.errors import (
    BitstreamError,
    DuplicateFrameError,
    IncompatibleStreamError,
    MissingReferenceError,
)
from nerfconf.pipeline.fifo import DropOldest
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.render_worker import RenderJob, RenderResult, RenderWorker
from nerfconf.playout.buffer import PlayoutBuffer, PlayoutConfig

log = logging.getLogger(__name__)

FADE_SECONDS = 1.0
#: incompatible frames in a row, with nothing decodable between them, that end the call: one second of
#: them is a mismatched bundle or version, not a stray hostile packet
INCOMPATIBLE_LIMIT = 20


class PeerMismatchError(IncompatibleStreamError):
    """The peer's stream does not fit the avatar bundle given for them, or speaks another format version."""


@dataclass
class ReceiverStats:
    received: int = 0
    decoded: int = 0
    duplicates: int = 0
    missing_reference: int = 0
    undecodable: int = 0
    incompatible: int = 0
    iframe_requests: int = 0
    #: playout slots played up to the last received frame's, each one a frame on screen (received,
    #: concealed or a fade step)
    slots: int = 0
    #: slots played after the last received frame: the sender had stopped, so they conceal frames
    #: that were never sent, and are not counted in ``slots``
    tail_slots: int = 0
    rendered: int = 0
    displayed: int = 0
    #: displays of frames that were received, not concealed
    fresh_displayed: int = 0
    #: the longest wait between two fresh frames on screen beyond one frame period (a fade, which
    #: is the sender's face being lost, is not a freeze)
    longest_freeze_ms: float = 0.0
    #: the first frame's render: a renderer still compiling its kernels would take seconds here
    first_render_ms: float = 0.0
    render_ms_p50: float = 0.0
    render_ms_p95: float = 0.0
    #: frames rendered at each size: a slow host renders smaller (``render_budget``)
    resolutions: dict[int, int] = field(default_factory=dict)
    resolution_changes: int = 0
    render_dropped: int = 0
    display_dropped: int = 0
    faded: int = 0
    #: the user closed the window, which hangs up the call
    window_closed: bool = False
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
                 sinks: list | None = None, view: View | None = None,
                 stamps: StampLog | None = None, record: bool = False,
                 feedback: Callable[..., None] | None = None) -> None:
        self.worker = worker
        self.decoder = ParamDecoder(codec)
        self.playout = PlayoutBuffer(PlayoutConfig(fps=fps))
        #: playout index -> sequence number, for the latency stamps (bounded: pruned as slots play)
        self._seq_of: dict[int, int] = {}
        self._acks: list[int] = []
        self._want_iframe = False
        self._arrived = asyncio.Event()
        #: seconds each of the last renders took, for starting frames early enough to show on time
        self._render_s: deque[float] = deque(maxlen=20)
        self._render_ms: list[float] = []
        self._slots_played = 0
        self._resolution = 0
        self.fps = fps
        self.sinks = sinks or []
        self.view = view
        self.stamps = stamps or StampLog()
        self.record = record
        self.shown: list[Shown] = []
        #: seq -> decoded parameter vector, when recording
        self.decoded: dict[int, np.ndarray] = {}
        #: sends ``Feedback`` to the sender (acks, I-frame requests); None when there is no back channel
        self.feedback = feedback
        self.stats = ReceiverStats()
        self._display: DropOldest[tuple] = DropOldest(4)
        self._done = threading.Event()
        self.error: BaseException | None = None

    async def run(self, recv: Callable[[], Awaitable], *, until: asyncio.Event) -> ReceiverStats:
        """Runs until ``until`` is set or a stage fails; ``recv`` returns the next received frame.

        A failure (a peer whose stream does not fit, a dead renderer) sets ``until``, so the
        other half of this peer hangs up too, and is raised here."""
        threads = [threading.Thread(target=self._collect, name="nerfconf-collect", daemon=True),
                   threading.Thread(target=self._show, name="nerfconf-display", daemon=True)]
        for t in threads:
            t.start()
        tasks = [asyncio.create_task(self._receive(recv, until)), asyncio.create_task(self._tick()),
                 asyncio.create_task(self._send_feedback()), asyncio.create_task(self._watch_window())]
        waiter = asyncio.create_task(until.wait())
        try:
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            until.set()
            for task in (waiter, *tasks):
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(waiter, return_exceptions=True)
            # let the last renders land before closing the display
            await asyncio.sleep(0.3)
            self._done.set()
            self._display.close()
            for t in threads:
                await asyncio.to_thread(t.join, 5.0)
            self.stats.render_dropped = self.worker.dropped
            self.stats.display_dropped = self._display.dropped
            self.stats.playout = asdict(self.playout.stats)
            self.stats.tail_slots = self._slots_played - self.stats.slots
            if self._render_ms:
                self.stats.first_render_ms = round(self._render_ms[0], 2)
                self.stats.render_ms_p50, self.stats.render_ms_p95 = (
                    round(float(v), 2) for v in np.percentile(self._render_ms, [50, 95]))
        if self.error is not None:
            raise self.error
        for r in results:
            if isinstance(r, Exception):
                raise r
        return self.stats

    # -- receive and decode ---------------------------------------------------------

    async def _receive(self, recv: Callable[[], Awaitable], until: asyncio.Event) -> None:
        from nerfconf.net.errors import ConnectionClosedError  # noqa: PLC0415

        in_a_row = 0
        while True:
            try:
                got = await recv()
            except ConnectionClosedError:
                # the peer hung up: what is buffered still plays out, then the call ends
                await asyncio.sleep(0.5)
                until.set()
                return
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
            except IncompatibleStreamError as exc:
                self.stats.incompatible += 1
                in_a_row += 1
                if in_a_row >= INCOMPATIBLE_LIMIT:
                    raise PeerMismatchError(
                        f"the peer's frames do not fit the avatar bundle given for them ({exc}); is "
                        "--avatar-peer the bundle the peer sends with, and are both on the same nerfconf "
                        "version?") from exc
                self._ask_iframe()
                continue
            except BitstreamError:
                self.stats.undecodable += 1
                self._ask_iframe()
                continue
            now = time.monotonic()
            in_a_row = 0
            self.stats.decoded += 1
            self.stamps.mark(decoded.seq, "receive", t_arrival)
            self.stamps.mark(decoded.seq, "decode_out", now)
            self._seq_of[decoded.params.index] = decoded.seq
            if self.record and decoded.params.face_found:
                self.decoded[decoded.seq] = decoded.params.to_vector(self.decoder.config.layout)
            self._acks.append(decoded.seq)
            self.playout.push(decoded.params, now)
            self._arrived.set()

    def _ask_iframe(self) -> None:
        if not self._want_iframe:
            self.stats.iframe_requests += 1
        self._want_iframe = True

    async def _send_feedback(self, every: float = 0.1) -> None:
        """Acks in batches (the sender's anchor prediction uses them) and I-frame requests at once."""
        from nerfconf.net.messages import MAX_FEEDBACK_SEQS, Feedback  # noqa: PLC0415

        while True:
            await asyncio.sleep(every if not self._want_iframe else 0)
            if self.feedback is None or not (self._acks or self._want_iframe):
                self._acks.clear()
                continue
            acks, self._acks = tuple(self._acks[-MAX_FEEDBACK_SEQS:]), []
            self.feedback(Feedback(acks=acks, iframe_request=self._want_iframe))
            self._want_iframe = False

    # -- playout and rendering ----------------------------------------------------------

    async def _tick(self) -> None:
        """Plays each slot: the frame goes to the renderer so that it is on screen at the slot's due
        time, or, for a slot with nothing to show, the display fades.

        The due time is when a frame should be *shown*, so a frame that has arrived goes to the
        renderer one render time early. A frame not yet there is waited for until the slot is due,
        and concealed after that.
        """
        period = 1.0 / self.fps
        while True:
            if self.error is not None:
                raise self.error  # the render process died: end the call with its reason
            due = self.playout.next_due()
            if due is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            start = due - self._render_lead() if self.playout.next_ready() else due
            delay = start - time.monotonic()
            if delay > 0:
                self._arrived.clear()
                # A frame arriving meanwhile may move the start earlier. asyncio.timeout, not
                # wait_for: in 3.11 wait_for can swallow the cancellation that ends the call.
                try:
                    async with asyncio.timeout(delay):
                        await self._arrived.wait()
                except TimeoutError:
                    pass
                continue
            out = self.playout.pop(max(time.monotonic(), due))
            if out is None:
                continue
            self._slots_played += 1
            if out.kind == "shown":
                self.stats.slots = self._slots_played
            seq = self._seq_of.pop(out.index, -1) if out.kind == "shown" else -1
            for stale in [i for i in self._seq_of if i < out.index]:
                del self._seq_of[stale]
            if out.params.face_found:
                self.worker.submit(RenderJob(seq, out.index, out.params.expression, out.params.rotation,
                                             out.params.translation, self._current_view()))
            else:
                self._display.put(("fade", out.index, period))

    async def _watch_window(self, every: float = 0.1) -> None:
        """Returns, which ends the call, once the user closed a window sink."""
        while not any(getattr(sink, "closed", False) for sink in self.sinks):
            await asyncio.sleep(every)
        self.stats.window_closed = True

    def _render_lead(self) -> float:
        """How long a frame takes to render here: the median of the last renders, in seconds."""
        recent = list(self._render_s)  # one C-level copy: the collect thread appends meanwhile
        return float(np.median(recent)) if recent else 0.0

    def _current_view(self) -> View | None:
        """A window sink's live view (arrow keys, mouse) wins over the fixed one."""
        for sink in self.sinks:
            if getattr(sink, "controls_view", False):
                return sink.view
        return self.view

    def _collect(self) -> None:
        """Moves rendered frames from the render process to the display."""
        while not self._done.is_set():
            try:
                result = self.worker.result(timeout=0.1)
            except Exception as exc:  # noqa: BLE001 - raised again by run()
                self.error = exc
                return
            if result is not None:
                self.stats.rendered += 1
                self._render_s.append(result.t_out - result.t_in)
                self._render_ms.append(1e3 * (result.t_out - result.t_in))
                self._count_resolution(result.resolution)
                if result.key >= 0:
                    self.stamps.mark(result.key, "render_in", result.t_in)
                    self.stamps.mark(result.key, "render_out", result.t_out)
                self._display.put(("frame", result))

    def _count_resolution(self, size: int) -> None:
        sizes = self.stats.resolutions
        sizes[size] = sizes.get(size, 0) + 1
        if self._resolution and size != self._resolution:
            self.stats.resolution_changes += 1
            if self.stats.resolution_changes == 1:
                recent = 1e3 * self._render_lead()
                log.warning("rendering at %d px instead of %d: frames took %.0f ms (median), over the "
                            "%.0f ms a frame this host can spend at %g fps; the image is scaled up",
                            size, self._resolution, recent, 1e3 * self.worker.budget_s, self.fps)
        self._resolution = size

    def _show(self) -> None:
        last: np.ndarray | None = None
        fade = 0.0
        period = 1.0 / self.fps
        last_fresh: float | None = None
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
                last_fresh = None
                image = (last * (1.0 - fade) + 255.0 * fade).astype(np.uint8)
            for sink in self.sinks:
                sink.write(image)
            t = time.monotonic()
            if key >= 0:
                self.stamps.mark(key, "display", t)
                self.stats.fresh_displayed += 1
                if last_fresh is not None:
                    freeze = 1e3 * (t - last_fresh - period)
                    self.stats.longest_freeze_ms = round(max(self.stats.longest_freeze_ms, freeze), 1)
                last_fresh = t
            self.stats.displayed += 1
            if self.record:
                self.shown.append(Shown(slot, key, image, t))

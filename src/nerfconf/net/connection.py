"""The asyncio layer: sockets, timers and ``transmit()`` around the sans-I/O :class:`CallProtocol`.

Everything the call decides (authentication, feedback, retransmission, deadline drops)
is in :mod:`nerfconf.net.protocol`; this file feeds it aioquic's events and the loop's
time, fires its timer, delivers received frames to a queue, and transmits after each step.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection

from nerfconf.net.config import IP_UDP_OVERHEAD, ReceivedFrame, TransportConfig, TransportStats
from nerfconf.net.errors import (
    AuthenticationError,
    ConnectionClosedError,
    FingerprintMismatchError,
    ServerBusyError,
)
from nerfconf.net.messages import Feedback
from nerfconf.net.protocol import (
    ALPN,
    BUSY_CODES,
    CallEvent,
    CallProtocol,
    CloseCode,
    Closed,
    Counters,
    FeedbackReceived,
    FeedbackSink,
    FrameReceived,
    MediaMessage,
    MediaMessageReceived,
    Opened,
    Refused,
    State,
    VideoReceived,
)
from nerfconf.net.tls_pin import pin_connection
from nerfconf.net.video_channel import ReceivedVideo
from nerfconf.types import EncodedFrame

__all__ = ["ALPN", "Connection", "NerfProtocol"]

log = logging.getLogger(__name__)

FeedbackCallback = Callable[[Feedback], None]
MediaCallback = Callable[[MediaMessage], None]


class _CountingTransport:
    """Wraps the UDP transport aioquic writes to, counting packets and bytes as sent."""

    def __init__(self, inner: asyncio.DatagramTransport, counters: Counters) -> None:
        self._inner = inner
        self._counters = counters

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._counters.packets_sent += 1
        self._counters.wire_bytes_sent += len(data) + IP_UDP_OVERHEAD
        self._inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class NerfProtocol(QuicConnectionProtocol):
    """One peer's end of a call on asyncio. Created by aioquic; users hold a :class:`Connection`."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        config: TransportConfig,
        token: str,
        on_open: Callable[[NerfProtocol], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        pin: str | None = None,
    ) -> None:
        super().__init__(quic, stream_handler)
        self.call = CallProtocol(quic, config, token)
        self._pin = pin
        self._on_open = on_open
        self._on_refused = on_refused
        self._received: asyncio.Queue[ReceivedFrame | None] = asyncio.Queue()
        self._video: asyncio.Queue[ReceivedVideo | None] = asyncio.Queue()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._call_timer: asyncio.TimerHandle | None = None
        self.peer_address: Any = None
        self.on_feedback: FeedbackCallback | None = None
        self.on_media_message: MediaCallback | None = None
        #: media messages that came before anyone listened (the peer's mode request can beat the
        #: application to it right after the call opens); bounded, the newest kept
        self.early_media: deque[MediaMessage] = deque(maxlen=16)
        # aioquic makes a server's protocol on the connection's first packet: its auth deadline starts now
        self.call.start(self._loop.time())
        self._arm_timer()

    @property
    def config(self) -> TransportConfig:
        return self.call.config

    @property
    def state(self) -> State:
        return self.call.state

    @property
    def close_reason(self) -> str | None:
        return self.call.close_reason

    # -- aioquic plumbing ------------------------------------------------------------

    def connect(self, addr: Any, transmit: bool = True) -> None:
        super().connect(addr, transmit=False)
        if self._pin is not None:
            # before any server packet can arrive, so its certificate meets the pin
            pin_connection(self._quic, self._pin, self._pin_mismatch)
        if transmit:
            self.transmit()

    def _pin_mismatch(self, message: str) -> None:
        self.call.fail_pin(message)
        self._fail_open(FingerprintMismatchError(message))

    async def wait_open(self) -> None:
        await asyncio.shield(self._opened)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CountingTransport(transport, self.call.counters))  # type: ignore[arg-type]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.call.counters.packets_received += 1
        self.call.counters.wire_bytes_received += len(data) + IP_UDP_OVERHEAD
        if self.peer_address is None:
            self.peer_address = addr
        # aioquic's datagram_received, with the call told of the datagram once its events are handled
        self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
        self._process_events()
        self.call.datagram_received()
        self.transmit()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self._act(self.call.handle_event(event, self._loop.time()))

    def _on_call_timer(self) -> None:
        self._call_timer = None
        self._act(self.call.handle_timer(self._loop.time()))
        self.transmit()

    def _act(self, call_events: list[CallEvent]) -> None:
        """Carries out what the protocol reported, then re-arms its timer."""
        for ev in call_events:
            if isinstance(ev, FrameReceived):
                self._deliver(ev.frame)
            elif isinstance(ev, FeedbackReceived):
                if self.on_feedback is not None:
                    self.on_feedback(ev.feedback)
            elif isinstance(ev, VideoReceived):
                self._deliver_video(ev.packet)
            elif isinstance(ev, MediaMessageReceived):
                if self.on_media_message is not None:
                    self.on_media_message(ev.message)
                else:
                    self.early_media.append(ev.message)
            elif isinstance(ev, Opened):
                if not self._opened.done():
                    self._opened.set_result(None)
                if self._on_open is not None:
                    self._on_open(self)
            elif isinstance(ev, Refused):
                self._refused(ev.reason)
            elif isinstance(ev, Closed):
                self._connection_closed(ev)
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self.call.get_timer()
        if self._call_timer is not None and (when is None or self._call_timer.when() != when):
            self._call_timer.cancel()
            self._call_timer = None
        if when is not None and self._call_timer is None:
            self._call_timer = self._loop.call_at(when, self._on_call_timer)

    def _refused(self, reason: str) -> None:
        if self.call.is_client:
            message = reason
        else:
            message = f"refused peer {self.peer_address}: {reason}"
            log.warning("%s", message)
        if self._on_refused is not None:
            self._on_refused(message)
        self._fail_open(AuthenticationError(message))

    def _connection_closed(self, ev: Closed) -> None:
        if ev.by_peer_before_open:
            if not self.call.is_client:
                log.warning("refused by peer %s: %s", self.peer_address, ev.reason)
            if self._on_refused is not None:
                self._on_refused(f"peer {self.peer_address}: {ev.reason}")
        busy = self.call.is_client and ev.by_peer_before_open and ev.code in BUSY_CODES
        self._fail_open(ServerBusyError(ev.reason) if busy else ConnectionClosedError(ev.reason))
        if self._call_timer is not None:
            self._call_timer.cancel()
            self._call_timer = None
        self._received.put_nowait(None)
        self._video.put_nowait(None)

    def _fail_open(self, exc: Exception) -> None:
        if not self._opened.done():
            self._opened.set_exception(exc)
            self._opened.exception()  # mark retrieved: connect() may already have given up

    def _deliver(self, frame: ReceivedFrame) -> None:
        if self._received.qsize() >= self.call.config.recv_queue:
            self._received.get_nowait()
            self.call.counters.recv_overflow += 1
        self._received.put_nowait(frame)

    def _deliver_video(self, packet: ReceivedVideo) -> None:
        if self._video.qsize() >= self.call.config.recv_queue:
            self._video.get_nowait()
            self.call.counters.recv_overflow += 1
        self._video.put_nowait(packet)

    # -- what Connection uses ------------------------------------------------------------

    def send_frame(self, frame: EncodedFrame, deadline: float | None) -> None:
        self.call.send_frame(frame, deadline, self._loop.time())
        self.transmit()  # aioquic does not flush DATAGRAM frames by itself
        self._arm_timer()

    def send_feedback(self, fb: Feedback) -> None:
        self.call.send_feedback(fb, self._loop.time())
        self.transmit()
        self._arm_timer()

    def send_video(self, payload: bytes, deadline: float | None) -> int:
        seq = self.call.send_video(payload, deadline, self._loop.time())
        self.transmit()
        self._arm_timer()
        return seq

    def send_media_message(self, msg: MediaMessage) -> None:
        self.call.send_media_message(msg, self._loop.time())
        self.transmit()
        self._arm_timer()

    async def recv_video(self) -> ReceivedVideo:
        if self.call.state == State.CLOSED and self._video.empty():
            raise ConnectionClosedError(self.close_reason or "connection closed")
        item = await self._video.get()
        if item is None:
            self._video.put_nowait(None)
            raise ConnectionClosedError(self.close_reason or "connection closed")
        return item

    async def recv(self) -> ReceivedFrame:
        if self.call.state == State.CLOSED and self._received.empty():
            raise ConnectionClosedError(self.close_reason or "connection closed")
        item = await self._received.get()
        if item is None:
            self._received.put_nowait(None)  # wake every other reader too
            raise ConnectionClosedError(self.close_reason or "connection closed")
        return item

    def stats(self) -> TransportStats:
        return self.call.stats()

    def buffered_bytes(self) -> int:
        """What this end holds for the peer's input: a bound the hostile-peer tests check."""
        queued = sum(len(f.data) for f in list(self._received._queue) if f is not None)  # type: ignore[attr-defined]
        queued += sum(len(p.payload) for p in list(self._video._queue) if p is not None)  # type: ignore[attr-defined]
        return queued + self.call.buffered_bytes

    def leave(self, reason: str) -> None:
        self.call.leave(reason, self._loop.time())
        self.transmit()
        self._arm_timer()

    def close(self, error_code: int = CloseCode.NONE, reason_phrase: str = "") -> None:  # type: ignore[override]
        self.call.close(error_code, reason_phrase)
        self.transmit()


class Connection:
    """A call's transport to one peer; both ends look the same."""

    def __init__(self, protocol: NerfProtocol) -> None:
        self._p = protocol

    @property
    def config(self) -> TransportConfig:
        return self._p.config

    @property
    def peer_address(self) -> Any:
        return self._p.peer_address

    @property
    def is_open(self) -> bool:
        return self._p.state == State.OPEN

    @property
    def close_reason(self) -> str | None:
        return self._p.close_reason

    def send_frame(self, frame: EncodedFrame, deadline: float | None = None) -> None:
        """Sends one coded frame now; ``deadline`` (loop time) is when it stops being worth delivering.

        Never blocks. In datagram mode a frame still queued at its deadline
        is dropped, and so are copies of it in later datagrams.
        """
        self._p.send_frame(frame, deadline)

    async def recv_frame(self) -> ReceivedFrame:
        """The next frame not delivered before, in arrival order; raises ConnectionClosedError at the end."""
        return await self._p.recv()

    def send_feedback(self, feedback: Feedback) -> None:
        """Acks of decoded frames and I-frame requests for the peer's encoder (no-op when not open).

        In datagram mode acks alone ride in our next frame's datagram, the newest only (the encoder
        predicts from the newest); like the frame, it may be lost, and the next one supersedes it."""
        self._p.send_feedback(feedback)

    def send_video(self, payload: bytes, deadline: float | None = None) -> int:
        """Sends one video datagram now (a fragment from ``nerfconf.video.packets``); returns its
        sequence number. NACKed ones are resent while before ``deadline`` (loop time)."""
        return self._p.send_video(payload, deadline)

    async def recv_video(self) -> ReceivedVideo:
        """The next video datagram in arrival order; raises ConnectionClosedError at the end."""
        return await self._p.recv_video()

    def send_media_message(self, msg: MediaMessage) -> None:
        """A ``ModeRequest``, ``ModeSwitch`` or ``VideoFeedback`` to the peer, at once (no-op when not open)."""
        self._p.send_media_message(msg)

    def on_media_message(self, callback: MediaCallback | None) -> None:
        """Hand every mode request, mode switch and video feedback from the peer to ``callback``, those
        that came before it first."""
        self._p.on_media_message = callback
        while callback is not None and self._p.early_media:
            callback(self._p.early_media.popleft())

    def attach_encoder(self, encoder: FeedbackSink) -> None:
        """Feedback from the peer goes to this ParamEncoder (acknowledge / request_iframe)."""
        self._p.call.feedback_sink = encoder

    def on_feedback(self, callback: FeedbackCallback | None) -> None:
        """Also hand every feedback message from the peer to ``callback``."""
        self._p.on_feedback = callback

    def stats(self) -> TransportStats:
        return self._p.stats()

    def buffered_bytes(self) -> int:
        return self._p.buffered_bytes()

    async def close(self, reason: str = "") -> None:
        self._p.leave(reason or "call ended")
        try:
            await asyncio.wait_for(self._p.wait_closed(), 1.0)
        except TimeoutError:
            pass

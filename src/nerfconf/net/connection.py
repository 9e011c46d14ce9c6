"""The asyncio layer: one aioquic connection carrying coded frames both ways, plus feedback.

Streams on a connection:

* bidirectional stream 0 (opened by the client): the control stream, see
  :mod:`nerfconf.net.messages`. The client's first message is HELLO with the
  room token; nothing else is accepted from it until the server's WELCOME.
* one unidirectional stream per side, opened on first use in stream mode:
  that side's frames, byte-stuffed and delimited (:func:`nerfconf.codec.frame.stuff`).
* QUIC DATAGRAM frames in datagram mode: :mod:`nerfconf.net.redundancy`.

A receiver takes frames in either mode, whatever its own sending mode is.
All the protocol logic lives in the sans-I/O modules; this file moves bytes
and keeps the aioquic workarounds (queue trimming, explicit ``transmit()``,
keepalives).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection

from nerfconf.codec.frame import MAX_FRAME_BYTES, StreamDeframer, stuff
from nerfconf.net.config import IP_UDP_OVERHEAD, ReceivedFrame, TransportConfig, TransportStats
from nerfconf.net.errors import (
    AuthenticationError,
    ConnectionClosedError,
    FingerprintMismatchError,
    ProtocolError,
)
from nerfconf.net.messages import (
    MAX_FEEDBACK_SEQS,
    PROTOCOL_VERSION,
    ControlDeframer,
    Feedback,
    Hello,
    Message,
    Refuse,
    Welcome,
    encode_message,
)
from nerfconf.net.redundancy import FrameReassembler, RedundantPacker
from nerfconf.net.tls_pin import pin_context
from nerfconf.types import EncodedFrame

log = logging.getLogger(__name__)

ALPN = "nerfconf/1"
CONTROL_STREAM = 0
#: application close codes
ERR_NONE = 0
ERR_AUTH = 0x101
ERR_PROTOCOL = 0x102
ERR_TIMEOUT = 0x103
#: TLS alert bad_certificate as QUIC reports it (CRYPTO_ERROR range 0x100 + alert)
_CRYPTO_BAD_CERTIFICATE = 0x100 + 42

FeedbackCallback = Callable[[Feedback], None]


class _CountingTransport:
    """Wraps the UDP transport aioquic writes to, counting packets and bytes as sent."""

    def __init__(self, inner: asyncio.DatagramTransport, counters: _Counters) -> None:
        self._inner = inner
        self._counters = counters

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._counters.packets_sent += 1
        self._counters.wire_bytes_sent += len(data) + IP_UDP_OVERHEAD
        self._inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class _Counters:
    frames_sent: int = 0
    payload_bytes_sent: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    wire_bytes_sent: int = 0
    wire_bytes_received: int = 0
    control_bytes_sent: int = 0
    control_bytes_received: int = 0
    frames_received: int = 0
    payload_bytes_received: int = 0
    acks_sent: int = 0
    acks_received: int = 0
    nacks_received: int = 0
    nacks_sent: int = 0
    iframe_requests_sent: int = 0
    iframe_requests_received: int = 0
    retransmissions: int = 0
    stale_datagrams_dropped: int = 0
    malformed: int = 0
    recv_overflow: int = 0


@dataclass(frozen=True)
class _Queued:
    datagram: bytes
    deadline: float


class NerfProtocol(QuicConnectionProtocol):
    """One peer's end of a call. Created by aioquic; users hold a :class:`Connection`."""

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
        self._pin = pin
        self.config = config
        self._token = token
        self._is_client = quic.configuration.is_client
        self._on_open = on_open
        self._on_refused = on_refused
        self._counters = _Counters()
        self._control = ControlDeframer()
        self._packer = RedundantPacker(config.copies, config.max_datagram)
        self._reassembler = FrameReassembler(config.copies, nack_window=config.nack_window)
        self._media_deframer = StreamDeframer(MAX_FRAME_BYTES)
        self._peer_media_stream: int | None = None
        self._own_media_stream: int | None = None
        self._queued: deque[_Queued] = deque()
        self._received: asyncio.Queue[ReceivedFrame | None] = asyncio.Queue()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._timers: list[asyncio.TimerHandle] = []
        # bounded: only the newest entries matter, the encoder acts on the newest ack
        self._pending_acks: deque[int] = deque(maxlen=MAX_FEEDBACK_SEQS)
        self._pending_nacks: deque[int] = deque(maxlen=MAX_FEEDBACK_SEQS)
        self._pending_iframe = False
        self._feedback_timer: asyncio.TimerHandle | None = None
        self.state = "handshake"
        self.close_reason: str | None = None
        self.peer_address: Any = None
        self.encoder: Any = None
        self.on_feedback: FeedbackCallback | None = None

    # -- aioquic plumbing ------------------------------------------------------------

    def connect(self, addr: Any, transmit: bool = True) -> None:
        super().connect(addr, transmit=False)
        if self._pin is not None:
            # before any server packet can arrive, so its certificate meets the pin
            pin_context(self._quic.tls, self._pin, self._pin_mismatch)
        if transmit:
            self.transmit()

    def _pin_mismatch(self, message: str) -> None:
        self.close_reason = message
        if not self._opened.done():
            self._opened.set_exception(FingerprintMismatchError(message))
            self._opened.exception()

    async def wait_open(self) -> None:
        await asyncio.shield(self._opened)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CountingTransport(transport, self._counters))  # type: ignore[arg-type]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self._counters.packets_received += 1
        self._counters.wire_bytes_received += len(data) + IP_UDP_OVERHEAD
        if self.peer_address is None:
            self.peer_address = addr
        super().datagram_received(data, addr)

    def quic_event_received(self, event: events.QuicEvent) -> None:
        try:
            if isinstance(event, events.HandshakeCompleted):
                self._handshake_completed()
            elif isinstance(event, events.StreamDataReceived):
                self._stream_data(event.stream_id, event.data)
            elif isinstance(event, events.DatagramFrameReceived):
                self._datagram(event.data)
            elif isinstance(event, events.ConnectionTerminated):
                self._terminated(event)
        except ProtocolError as exc:
            self._fail(ERR_PROTOCOL, f"protocol violation by the peer: {exc}")

    def _handshake_completed(self) -> None:
        self.state = "authenticating"
        if self._is_client:
            self._send_control(Hello(self._token, self._sending_copies()))
        else:
            self._later(self.config.auth_timeout, self._auth_timeout)

    def _auth_timeout(self) -> None:
        if self.state == "authenticating":
            self._fail(ERR_TIMEOUT, "the peer did not authenticate in time")

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        if self.close_reason is None:
            if event.error_code == _CRYPTO_BAD_CERTIFICATE and not self._is_client:
                reason = ("the peer rejected this server's certificate: its join string pins "
                          "another fingerprint (an outdated join string?)")
                log.warning("refused by peer %s: %s", self.peer_address, reason)
            elif event.error_code == ERR_NONE:
                reason = f"closed by the peer{': ' + event.reason_phrase if event.reason_phrase else ''}"
            else:
                reason = f"closed by the peer (error {event.error_code:#x}): {event.reason_phrase or 'no reason'}"
            self.close_reason = reason
            if self._on_refused is not None and self.state != "open":
                self._on_refused(f"peer {self.peer_address}: {reason}")
        self.state = "closed"
        if not self._opened.done():
            self._opened.set_exception(ConnectionClosedError(self.close_reason))
            self._opened.exception()  # mark retrieved: connect() may already have given up
        for timer in self._timers:
            timer.cancel()
        if self._feedback_timer is not None:
            self._feedback_timer.cancel()
        self._received.put_nowait(None)

    # -- control stream --------------------------------------------------------------

    def _stream_data(self, stream_id: int, data: bytes) -> None:
        if stream_id == CONTROL_STREAM:
            self._counters.control_bytes_received += len(data)
            for msg in self._control.feed(data):
                self._control_message(msg)
            return
        # bit 1: unidirectional; bit 0: opened by the server
        peer_uni = bool(stream_id & 0x2) and (stream_id & 0x1) == (1 if self._is_client else 0)
        if self.state != "open" or not peer_uni:
            self._refuse_stream(stream_id)
            return
        if self._peer_media_stream is None:
            self._peer_media_stream = stream_id
        elif stream_id != self._peer_media_stream:
            self._refuse_stream(stream_id)
            return
        frames: list[bytes] = []
        for item in self._media_deframer.feed(data):
            if isinstance(item, bytes):
                frames.append(item)
            else:
                self._counters.malformed += 1
        if frames:
            self._deliver(self._reassembler.receive_frames(frames).frames)

    def _refuse_stream(self, stream_id: int) -> None:
        """Asks the peer to stop sending on a stream we have no use for (its data is discarded)."""
        try:
            self._quic.stop_stream(stream_id, ERR_PROTOCOL)
        except ValueError:
            pass  # a stream aioquic already closed, or one only we may send on (aioquic rejects those itself)

    def _control_message(self, msg: Message) -> None:
        if self.state == "authenticating":
            if self._is_client:
                if isinstance(msg, Welcome):
                    self._open(msg.copies)
                elif isinstance(msg, Refuse):
                    self._refused(f"the server refused this peer: {msg.reason}")
                else:
                    raise ProtocolError(f"expected WELCOME, got {type(msg).__name__}")
            elif isinstance(msg, Hello):
                self._check_hello(msg)
            else:
                raise ProtocolError(f"expected HELLO, got {type(msg).__name__}")
        elif self.state == "open":
            if isinstance(msg, Feedback):
                self._feedback(msg)
            elif isinstance(msg, Refuse):
                self._fail(ERR_NONE, f"the peer left: {msg.reason}", notify=False)
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} on an open connection")
        else:
            raise ProtocolError(f"control message before the TLS handshake: {type(msg).__name__}")

    def _check_hello(self, hello: Hello) -> None:
        if hello.version != PROTOCOL_VERSION:
            reason = f"protocol version {hello.version} is not supported (this peer speaks {PROTOCOL_VERSION})"
        elif not hmac.compare_digest(hello.token.encode(), self._token.encode()):
            reason = "wrong room token"
        else:
            self._send_control(Welcome(self._sending_copies()))
            self._open(hello.copies)
            return
        log.warning("refused peer %s: %s", self.peer_address, reason)
        self._send_control(Refuse(reason))
        self._refused(f"refused peer {self.peer_address}: {reason}", close_reason=reason)

    def _refused(self, message: str, close_reason: str | None = None) -> None:
        self.close_reason = message
        if self._on_refused is not None:
            self._on_refused(message)
        self._fail(ERR_AUTH, close_reason or message, notify=False)
        if not self._opened.done():
            self._opened.set_exception(AuthenticationError(message))
            self._opened.exception()

    def _open(self, peer_copies: int) -> None:
        self.state = "open"
        # The NACK horizon depends on how many copies the peer puts in each datagram.
        self._reassembler.copies = peer_copies
        if not self._opened.done():
            self._opened.set_result(None)
        self._later(self.config.keepalive, self._keepalive)
        if self._on_open is not None:
            self._on_open(self)

    def _keepalive(self) -> None:
        if self.state == "open":
            self._quic.send_ping(0)
            self.transmit()
            self._later(self.config.keepalive, self._keepalive)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        now = self._loop.time()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > now]
        self._timers.append(self._loop.call_later(delay, callback))

    def _send_control(self, msg: Message) -> None:
        data = encode_message(msg)
        self._counters.control_bytes_sent += len(data)
        self._quic.send_stream_data(CONTROL_STREAM, data)
        self.transmit()

    def _fail(self, code: int, reason: str, *, notify: bool = True) -> None:
        if self.state == "closed":
            return
        if self.close_reason is None:
            self.close_reason = reason
        if notify:
            log.warning("closing connection to %s: %s", self.peer_address, reason)
        self.state = "closing"
        self._quic.close(error_code=code, reason_phrase=reason[:200])
        self.transmit()

    # -- feedback --------------------------------------------------------------------

    def _feedback(self, fb: Feedback) -> None:
        c = self._counters
        c.acks_received += len(fb.acks)
        c.nacks_received += len(fb.nacks)
        c.iframe_requests_received += int(fb.iframe_request)
        if self.encoder is not None:
            for seq in fb.acks:
                self.encoder.acknowledge(seq)
            if fb.iframe_request:
                self.encoder.request_iframe()
        if fb.nacks and self.config.retransmit_nacked and self.config.mode == "datagram":
            now = self._loop.time()
            datagram = self._packer.retransmission(fb.nacks, now)
            if datagram is not None:
                c.retransmissions += 1
                # retransmissions carry frames already near their deadline: the oldest one's counts
                self._queue_datagram(datagram, now + self.config.max_age / 2, now)
        if self.on_feedback is not None:
            self.on_feedback(fb)

    def send_feedback(self, fb: Feedback) -> None:
        """Queues feedback; it leaves with the next frame we send, or after ``feedback_delay``.

        Riding in the same packet as a frame saves a packet (and the ACK it
        draws) per frame: on a 5 kbps stream, packets are most of the bitrate.
        """
        if self.state != "open" or not fb:
            return
        c = self._counters
        c.acks_sent += len(fb.acks)
        c.nacks_sent += len(fb.nacks)
        c.iframe_requests_sent += int(fb.iframe_request)
        self._pending_acks.extend(fb.acks)
        self._pending_nacks.extend(fb.nacks)
        self._pending_iframe = self._pending_iframe or fb.iframe_request
        if fb.iframe_request or fb.nacks or self.config.feedback_delay == 0:
            self._flush_feedback()  # these cannot wait: a frame or a GOP is at stake
        elif self._feedback_timer is None:
            self._feedback_timer = self._loop.call_later(self.config.feedback_delay, self._flush_feedback)

    def _flush_feedback(self, transmit: bool = True) -> None:
        if self._feedback_timer is not None:
            self._feedback_timer.cancel()
            self._feedback_timer = None
        if self.state != "open" or not (self._pending_acks or self._pending_nacks or self._pending_iframe):
            return
        fb = Feedback(tuple(self._pending_acks), tuple(self._pending_nacks), self._pending_iframe)
        self._pending_acks.clear()
        self._pending_nacks.clear()
        self._pending_iframe = False
        data = encode_message(fb)
        self._counters.control_bytes_sent += len(data)
        self._quic.send_stream_data(CONTROL_STREAM, data)
        if transmit:
            self.transmit()

    # -- media -----------------------------------------------------------------------

    def _sending_copies(self) -> int:
        return self.config.copies if self.config.mode == "datagram" else 1

    def send_frame(self, frame: EncodedFrame, deadline: float | None) -> None:
        if self.state != "open":
            raise ConnectionClosedError(self.close_reason or f"connection is {self.state}")
        now = self._loop.time()
        if deadline is None:
            deadline = now + self.config.max_age
        self._counters.frames_sent += 1
        self._counters.payload_bytes_sent += len(frame.data)
        self._flush_feedback(transmit=False)  # into the same packet as the frame
        if self.config.mode == "stream":
            if self._own_media_stream is None:
                self._own_media_stream = self._quic.get_next_available_stream_id(is_unidirectional=True)
            try:
                self._quic.send_stream_data(self._own_media_stream, stuff(frame.data))
            except ValueError as exc:  # the peer stopped our media stream
                self._fail(ERR_PROTOCOL, f"the peer refused our media stream ({exc})")
                raise ConnectionClosedError(self.close_reason or "media stream closed") from None
            self.transmit()
            return
        datagram = self._packer.pack(frame.seq, frame.data, deadline, now)
        self._queue_datagram(datagram, deadline, now)

    def _queue_datagram(self, datagram: bytes, deadline: float, now: float) -> None:
        if len(datagram) > self.config.max_datagram:
            # one oversize DATAGRAM would block every datagram behind it in aioquic, forever
            raise ValueError(f"datagram of {len(datagram)} B exceeds the {self.config.max_datagram} B cap")
        pending: deque[bytes] = self._quic._datagrams_pending
        # aioquic pops sent datagrams from the left: what it still holds is a suffix of ours.
        while len(self._queued) > len(pending):
            self._queued.popleft()
        if self._queued and pending and self._queued[0].datagram is not pending[0]:
            self._queued.clear()  # someone else queued datagrams; stop trimming what we cannot vouch for
        while self._queued and (self._queued[0].deadline < now or len(self._queued) >= self.config.max_queued_datagrams):
            self._queued.popleft()
            pending.popleft()
            self._counters.stale_datagrams_dropped += 1
        self._quic.send_datagram_frame(datagram)
        self._queued.append(_Queued(datagram, deadline))
        # aioquic does not flush DATAGRAM frames by itself
        self.transmit()

    def _datagram(self, data: bytes) -> None:
        if self.state != "open":
            return  # nothing is accepted from a peer before it authenticated
        result = self._reassembler.receive_datagram(data)
        self._deliver(result.frames)
        if result.nacks and self.config.retransmit_nacked:
            self.send_feedback(Feedback(nacks=result.nacks[-MAX_FEEDBACK_SEQS:]))

    def _deliver(self, frames: list[tuple[int, bytes]]) -> None:
        now = self._loop.time()
        for seq, data in frames:
            if self._received.qsize() >= self.config.recv_queue:
                self._received.get_nowait()
                self._counters.recv_overflow += 1
            self._counters.frames_received += 1
            self._counters.payload_bytes_received += len(data)
            self._received.put_nowait(ReceivedFrame(seq, data, now))

    async def recv(self) -> ReceivedFrame:
        if self.state == "closed" and self._received.empty():
            raise ConnectionClosedError(self.close_reason or "connection closed")
        item = await self._received.get()
        if item is None:
            self._received.put_nowait(None)  # wake every other reader too
            raise ConnectionClosedError(self.close_reason or "connection closed")
        return item

    def stats(self) -> TransportStats:
        c, r = self._counters, self._reassembler.stats
        return TransportStats(
            frames_sent=c.frames_sent,
            frames_received=c.frames_received,
            payload_bytes_sent=c.payload_bytes_sent,
            payload_bytes_received=c.payload_bytes_received,
            packets_sent=c.packets_sent,
            packets_received=c.packets_received,
            wire_bytes_sent=c.wire_bytes_sent,
            wire_bytes_received=c.wire_bytes_received,
            control_bytes_sent=c.control_bytes_sent,
            control_bytes_received=c.control_bytes_received,
            acks_sent=c.acks_sent,
            acks_received=c.acks_received,
            nacks_sent=c.nacks_sent,
            nacks_received=c.nacks_received,
            iframe_requests_sent=c.iframe_requests_sent,
            iframe_requests_received=c.iframe_requests_received,
            retransmissions=c.retransmissions,
            stale_datagrams_dropped=c.stale_datagrams_dropped,
            recovered_from_copies=r.recovered_from_copies,
            duplicates=r.duplicates,
            malformed=c.malformed + r.malformed_datagrams + r.malformed_frames,
            recv_overflow=c.recv_overflow,
        )

    def buffered_bytes(self) -> int:
        """What this end holds for the peer's input: a bound the hostile-peer tests check."""
        queued = sum(len(f.data) for f in list(self._received._queue) if f is not None)  # type: ignore[attr-defined]
        return queued + self._control.buffered + self._media_deframer.buffered

    def close(self, error_code: int = ERR_NONE, reason_phrase: str = "") -> None:  # type: ignore[override]
        if self.state == "closed":
            return
        if self.close_reason is None:
            self.close_reason = f"closed locally{': ' + reason_phrase if reason_phrase else ''}"
        self.state = "closing"
        super().close(error_code=error_code, reason_phrase=reason_phrase)


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
        return self._p.state == "open"

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
        """Acks of decoded frames and I-frame requests for the peer's encoder (no-op when not open)."""
        self._p.send_feedback(feedback)

    def attach_encoder(self, encoder: Any) -> None:
        """Feedback from the peer goes to this ParamEncoder (acknowledge / request_iframe)."""
        self._p.encoder = encoder

    def on_feedback(self, callback: FeedbackCallback | None) -> None:
        """Also hand every feedback message from the peer to ``callback``."""
        self._p.on_feedback = callback

    def stats(self) -> TransportStats:
        return self._p.stats()

    def buffered_bytes(self) -> int:
        return self._p.buffered_bytes()

    async def close(self, reason: str = "") -> None:
        if self._p.state == "open":
            self._p._send_control(Refuse(reason or "call ended"))
        self._p.close(ERR_NONE, reason)
        self._p.transmit()
        try:
            await asyncio.wait_for(self._p.wait_closed(), 1.0)
        except TimeoutError:
            pass

"""The call protocol, sans I/O: what one peer of a call does, given QUIC events and the time.

``CallProtocol`` sits on an aioquic ``QuicConnection`` (itself sans I/O) the way
aioquic's ``H3Connection`` does: the owner hands it every QUIC event with
``handle_event(event, now)`` (and calls ``datagram_received()`` once each datagram's
events are handled) and gets back ``CallEvent``s; it sends frames and
feedback through ``send_frame`` and ``send_feedback``; and it asks ``get_timer()``
when to call ``handle_timer(now)``. The protocol never reads a clock, a socket or
an event loop, so two of them can be driven in memory with a fake clock
(``tests/net/test_protocol.py``). The owner transmits what the ``QuicConnection``
has queued after each call (``net.connection`` does, on asyncio).

What it owns:

* authentication: the client's first control message is HELLO with the room token
  and protocol version; the server answers WELCOME or REFUSE, and closes a client
  that has not shown the token ``auth_timeout`` after its first packet (TLS included).
  Nothing else is accepted before that. A server's ``gate`` (the listening endpoint's
  admission policy) may refuse a HELLO unread (too many wrong tokens from its source) and
  refuses a peer with the right token the application cannot take: that close carries
  ``CloseCode.BUSY``, which the client reports as busy rather than as a wrong token;
* feedback coalescing: acks wait up to ``feedback_delay`` to ride with the next frame
  (in datagram mode inside its datagram), NACKs and I-frame requests leave at once;
  QUIC's own ACKs wait as long and ride in whatever we send (:mod:`nerfconf.net.quic_acks`);
* redundancy while loss is seen: copies in each datagram only after the peer reports
  lost datagrams (:class:`~nerfconf.net.redundancy.RedundancyPolicy`);
* NACK → retransmission of frames that can still make their deadline (datagram mode);
* deadline drops: datagrams still in aioquic's queue past their deadline are dropped;
* keepalive PINGs.

Streams on a connection:

* bidirectional stream 0 (opened by the client): the control stream, see
  :mod:`nerfconf.net.messages`;
* one unidirectional stream per side, opened on first use in stream mode:
  that side's frames, byte-stuffed and delimited (:func:`nerfconf.codec.frame.stuff`);
* QUIC DATAGRAM frames in datagram mode: :mod:`nerfconf.net.redundancy`;
* QUIC DATAGRAM frames in video mode, whatever the frame mode:
  :mod:`nerfconf.net.video_channel` (NACKed packets are resent before their deadline).

New media (video, audio, avatar transfer) become new message types on the control
stream or new stream types here; the state machine stays as it is.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode

from nerfconf.codec.frame import MAX_FRAME_BYTES, StreamDeframer, stuff
from nerfconf.net.config import ReceivedFrame, TransportConfig, TransportStats
from nerfconf.net.errors import ConnectionClosedError, ProtocolError
from nerfconf.net.messages import (
    MAX_FEEDBACK_SEQS,
    PROTOCOL_VERSION,
    ControlDeframer,
    Feedback,
    Hello,
    Message,
    ModeRequest,
    ModeSwitch,
    Refuse,
    VideoFeedback,
    Welcome,
    encode_message,
)
from nerfconf.net.quic_acks import AckTiming
from nerfconf.net.redundancy import FrameReassembler, RedundancyPolicy, RedundantPacker
from nerfconf.net.video_channel import ReceivedVideo, VideoHistory, is_video_datagram, unpack_video
from nerfconf.types import EncodedFrame

log = logging.getLogger(__name__)

ALPN = "nerfconf/1"
CONTROL_STREAM = 0
#: TLS alert bad_certificate as QUIC reports it (CRYPTO_ERROR range 0x100 + alert)
CRYPTO_BAD_CERTIFICATE = 0x100 + 42


class State(enum.Enum):
    HANDSHAKE = "handshake"  # TLS under way
    AUTHENTICATING = "authenticating"  # TLS done, HELLO / WELCOME not yet
    OPEN = "open"
    CLOSING = "closing"  # we closed; aioquic is draining
    CLOSED = "closed"


class CloseCode(enum.IntEnum):
    """Application close codes on the wire."""

    NONE = 0
    AUTH = 0x101
    PROTOCOL = 0x102
    TIMEOUT = 0x103
    BUSY = 0x104


#: close codes a server uses for "not now": the client may try again later
BUSY_CODES = (CloseCode.BUSY, QuicErrorCode.CONNECTION_REFUSED)


class HelloGate(Protocol):
    """What a server consults when a HELLO arrives: its admission policy, bound to this connection."""

    def refuse_hello(self, now: float) -> str | None:
        """A reason to refuse the HELLO without looking at its token, or None."""
        ...

    def token_failed(self, now: float) -> None: ...

    def refuse_peer(self) -> str | None:
        """The token is right: a reason the application cannot take this peer, or None (it joins)."""
        ...


class FeedbackSink(Protocol):
    """What the peer's feedback drives: the parameter encoder (``codec.ParamEncoder``)."""

    def acknowledge(self, seq: int) -> None: ...

    def request_iframe(self) -> None: ...


@dataclass(frozen=True)
class Opened:
    """The peer authenticated; frames flow from now on."""

    peer_copies: int


@dataclass(frozen=True)
class FrameReceived:
    frame: ReceivedFrame


@dataclass(frozen=True)
class FeedbackReceived:
    feedback: Feedback


@dataclass(frozen=True)
class Refused:
    """Authentication failed: this side refused the peer, or the peer refused us. The close follows."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The connection is gone (aioquic finished closing it)."""

    reason: str
    #: the peer closed it before the call opened (a refusal the peer made at the QUIC level)
    by_peer_before_open: bool
    #: the close code on the wire (a ``CloseCode``, or a QUIC transport error code)
    code: int = CloseCode.NONE


@dataclass(frozen=True)
class VideoReceived:
    packet: ReceivedVideo


#: control messages about the media (modes, video feedback) that the owner acts on
MediaMessage = ModeRequest | ModeSwitch | VideoFeedback


@dataclass(frozen=True)
class MediaMessageReceived:
    message: MediaMessage


CallEvent = Opened | FrameReceived | FeedbackReceived | Refused | Closed | VideoReceived | MediaMessageReceived


@dataclass
class Counters:
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
    video_packets_sent: int = 0
    video_bytes_sent: int = 0
    video_packets_received: int = 0
    video_bytes_received: int = 0
    video_nacks_received: int = 0
    video_retransmissions: int = 0


@dataclass(frozen=True)
class _Queued:
    datagram: bytes
    deadline: float


class CallProtocol:
    """One peer's end of a call over ``quic`` (client or server, as its configuration says)."""

    def __init__(self, quic: QuicConnection, config: TransportConfig, token: str) -> None:
        self.quic = quic
        self.config = config
        self._token = token
        self.is_client = quic.configuration.is_client
        self.state = State.HANDSHAKE
        self.close_reason: str | None = None
        self.counters = Counters()
        #: where the peer's acks and I-frame requests go
        self.feedback_sink: FeedbackSink | None = None
        #: a server's admission policy for this connection (None: any peer with the token joins)
        self.gate: HelloGate | None = None
        self._control = ControlDeframer()
        self._packer = RedundantPacker(config.copies, config.max_datagram)
        self._redundancy = RedundancyPolicy(config.copies, adaptive=config.adaptive_copies)
        self._reassembler = FrameReassembler(config.copies, nack_window=config.nack_window)
        self._media_deframer = StreamDeframer(MAX_FRAME_BYTES)
        self._peer_media_stream: int | None = None
        self._own_media_stream: int | None = None
        self._queued: deque[_Queued] = deque()
        self._video = VideoHistory()
        # bounded: only the newest entries matter, the encoder acts on the newest ack
        self._pending_acks: deque[int] = deque(maxlen=MAX_FEEDBACK_SEQS)
        self._pending_nacks: deque[int] = deque(maxlen=MAX_FEEDBACK_SEQS)
        self._pending_iframe = False
        self._pending_lost = 0
        self._auth_deadline: float | None = None
        self._keepalive_at: float | None = None
        self._feedback_at: float | None = None
        #: a close that waits one transmission, so that the message before it (REFUSE) leaves
        #: first: aioquic drops unsent stream data once it closes
        self._close_at: float | None = None
        self._close_code = CloseCode.NONE
        self._close_phrase = ""
        self._events: list[CallEvent] = []
        # our ACKs wait for datagram-mode peers only (a call's peers share a mode)
        self._acks = AckTiming(quic, config.feedback_delay if config.mode == "datagram" else None)
        #: the datagram being handed out brought a DATAGRAM frame
        self._datagram_in_packet = False

    # -- driving it --------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The connection's first packet arrived: a server's peer has ``auth_timeout`` from now to authenticate.

        Counting from here rather than from the end of TLS bounds how long a half-open
        connection, one whose TLS never completes included, holds the server's memory.
        """
        if not self.is_client and self._auth_deadline is None:
            self._auth_deadline = now + self.config.auth_timeout

    def handle_event(self, event: events.QuicEvent, now: float) -> list[CallEvent]:
        """Takes one event of the ``QuicConnection``; returns what the owner must act on."""
        try:
            if isinstance(event, events.HandshakeCompleted):
                self._handshake_completed(now)
            elif isinstance(event, events.StreamDataReceived):
                self._stream_data(event.stream_id, event.data, now)
            elif isinstance(event, events.DatagramFrameReceived):
                self._datagram_in_packet = True
                self._datagram(event.data, now)
            elif isinstance(event, events.ConnectionTerminated):
                self._terminated(event)
        except ProtocolError as exc:
            self._fail(CloseCode.PROTOCOL, f"protocol violation by the peer: {exc}")
        return self._take_events()

    def datagram_received(self) -> None:
        """The owner fed one UDP datagram to the ``QuicConnection`` and handed out its events: decides
        whether our QUIC ACK waits to ride with our next packet (only for frame datagrams) or leaves now."""
        self._acks.packet_received(datagrams_only=self._datagram_in_packet)
        self._datagram_in_packet = False

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (None: no timer pending)."""
        if self.state == State.CLOSED:
            return None
        if self.state == State.CLOSING:
            return self._close_at
        due = [t for t in (self._auth_deadline, self._keepalive_at, self._feedback_at) if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[CallEvent]:
        if self._close_at is not None and now >= self._close_at:
            self._close_at = None
            self.quic.close(error_code=int(self._close_code), reason_phrase=self._close_phrase[:200])
            return self._take_events()
        if self._auth_deadline is not None and now >= self._auth_deadline:
            self._auth_deadline = None
            if self.state in (State.HANDSHAKE, State.AUTHENTICATING):
                self._fail(CloseCode.TIMEOUT, "the peer did not authenticate in time")
        if self._feedback_at is not None and now >= self._feedback_at:
            self._flush_feedback()
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            if self.state == State.OPEN:
                self.quic.send_ping(0)
                self._keepalive_at = now + self.config.keepalive
        return self._take_events()

    def send_frame(self, frame: EncodedFrame, deadline: float | None, now: float) -> None:
        """Queues one coded frame; ``deadline`` is when it stops being worth delivering
        (default ``now + max_age``). Raises ConnectionClosedError when the call is not open."""
        if self.state != State.OPEN:
            raise ConnectionClosedError(self.close_reason or f"connection is {self.state.value}")
        if deadline is None:
            deadline = now + self.config.max_age
        self.counters.frames_sent += 1
        self.counters.payload_bytes_sent += len(frame.data)
        ack = self._take_ack() if self.config.mode == "datagram" else None
        self._flush_feedback()  # into the same packet as the frame
        if self.config.mode == "stream":
            if self._own_media_stream is None:
                self._own_media_stream = self.quic.get_next_available_stream_id(is_unidirectional=True)
            try:
                self.quic.send_stream_data(self._own_media_stream, stuff(frame.data))
            except ValueError as exc:  # the peer stopped our media stream
                self._fail(CloseCode.PROTOCOL, f"the peer refused our media stream ({exc})")
                raise ConnectionClosedError(self.close_reason or "media stream closed") from None
            return
        copies = self._redundancy.copies_at(now)
        self._queue_datagram(self._packer.pack(frame.seq, frame.data, deadline, now, copies, ack), deadline, now)

    def send_video(self, payload: bytes, deadline: float | None, now: float) -> int:
        """Queues one video datagram (``payload`` from :mod:`nerfconf.video.packets`); returns its sequence
        number. Sent as a DATAGRAM whatever the frame mode: a reliable stream would hold every later
        frame behind a lost packet. Raises ConnectionClosedError when the call is not open."""
        if self.state != State.OPEN:
            raise ConnectionClosedError(self.close_reason or f"connection is {self.state.value}")
        if deadline is None:
            deadline = now + self.config.max_age
        seq, datagram = self._video.number(payload, deadline)
        self.counters.video_packets_sent += 1
        self.counters.video_bytes_sent += len(payload)
        self._flush_feedback()
        self._queue_datagram(datagram, deadline, now)
        return seq

    def send_media_message(self, msg: MediaMessage, now: float) -> None:
        """Sends a mode request, a mode switch or video feedback at once (no-op when not open)."""
        if not isinstance(msg, (ModeRequest, ModeSwitch, VideoFeedback)):
            raise TypeError(f"not a media control message: {msg!r}")
        if self.state == State.OPEN:
            self._send_control(msg)

    def send_feedback(self, fb: Feedback, now: float) -> None:
        """Queues feedback; it leaves with the next frame we send, or after ``feedback_delay``.

        Riding in the same packet as a frame saves a packet (and the ACK it
        draws) per frame: on a 5 kbps stream, packets are most of the bitrate.
        In datagram mode acks alone ride in the frame's datagram, the newest
        only: the encoder acts on the newest.
        """
        if self.state != State.OPEN or not fb:
            return
        c = self.counters
        c.acks_sent += len(fb.acks)
        c.nacks_sent += len(fb.nacks)
        c.iframe_requests_sent += int(fb.iframe_request)
        self._pending_acks.extend(fb.acks)
        self._pending_nacks.extend(fb.nacks)
        self._pending_iframe = self._pending_iframe or fb.iframe_request
        self._pending_lost = min(255, self._pending_lost + fb.lost)
        if fb.iframe_request or fb.nacks or self.config.feedback_delay == 0:
            self._flush_feedback()  # these cannot wait: a frame or a GOP is at stake
        elif self._feedback_at is None:
            self._feedback_at = now + self.config.feedback_delay

    def leave(self, reason: str, now: float) -> None:
        """Ends the call politely: tells an open peer why, and closes after that has been sent."""
        if self.state == State.OPEN:
            self._send_control(Refuse(reason))
            self.close_reason = f"closed locally: {reason}"
            self._close_later(CloseCode.NONE, reason, now)
        else:
            self.close(CloseCode.NONE, reason)

    def close(self, code: CloseCode | int = CloseCode.NONE, reason: str = "") -> None:
        """Closes now; ``code`` goes on the wire (an application code the peer may not know is fine)."""
        if self.close_reason is None and self.state not in (State.CLOSING, State.CLOSED):
            self.close_reason = f"closed locally{': ' + reason if reason else ''}"
        self._fail(code, reason)

    def fail_pin(self, message: str) -> None:
        """The server's certificate did not match the join string's pin (TLS aborts the handshake)."""
        self.close_reason = message

    def stats(self) -> TransportStats:
        c, r = self.counters, self._reassembler.stats
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
            video_packets_sent=c.video_packets_sent,
            video_bytes_sent=c.video_bytes_sent,
            video_packets_received=c.video_packets_received,
            video_bytes_received=c.video_bytes_received,
            video_nacks_received=c.video_nacks_received,
            video_retransmissions=c.video_retransmissions,
        )

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the peer's input held in partial messages and frames."""
        return self._control.buffered + self._media_deframer.buffered

    # -- handshake and authentication ------------------------------------------------

    def _take_events(self) -> list[CallEvent]:
        out, self._events = self._events, []
        return out

    def _handshake_completed(self, now: float) -> None:
        self.state = State.AUTHENTICATING
        self._acks.handshake_done()
        if self.is_client:
            self._send_control(Hello(self._token, self._sending_copies()))
        elif self._auth_deadline is None:
            self._auth_deadline = now + self.config.auth_timeout

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        was = self.state
        self.state = State.CLOSED
        self._auth_deadline = self._keepalive_at = self._feedback_at = self._close_at = None
        by_peer = self.close_reason is None
        if by_peer:
            if event.error_code == CRYPTO_BAD_CERTIFICATE and not self.is_client:
                self.close_reason = ("the peer rejected this server's certificate: its join string pins "
                                     "another fingerprint (an outdated join string?)")
            elif event.error_code in BUSY_CODES and self.is_client and was != State.OPEN:
                self.close_reason = f"the server cannot take this peer now: {event.reason_phrase or 'busy'}"
            elif event.error_code == CloseCode.NONE:
                phrase = f": {event.reason_phrase}" if event.reason_phrase else ""
                self.close_reason = f"closed by the peer{phrase}"
            else:
                self.close_reason = (f"closed by the peer (error {event.error_code:#x}): "
                                     f"{event.reason_phrase or 'no reason'}")
        self._events.append(Closed(self.close_reason, by_peer and was != State.OPEN, event.error_code))

    def _control_message(self, msg: Message, now: float) -> None:
        if self.state == State.AUTHENTICATING:
            if self.is_client:
                if isinstance(msg, Welcome):
                    self._open(msg.copies, now)
                elif isinstance(msg, Refuse):
                    self._refused(f"the server refused this peer: {msg.reason}", now)
                else:
                    raise ProtocolError(f"expected WELCOME, got {type(msg).__name__}")
            elif isinstance(msg, Hello):
                self._check_hello(msg, now)
            else:
                raise ProtocolError(f"expected HELLO, got {type(msg).__name__}")
        elif self.state == State.OPEN:
            if isinstance(msg, Feedback):
                self._feedback(msg, now)
            elif isinstance(msg, Refuse):
                self._fail(CloseCode.NONE, f"the peer left: {msg.reason}")
            elif isinstance(msg, (ModeRequest, ModeSwitch, VideoFeedback)):
                self._media_message(msg, now)
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} on an open connection")
        elif self.state == State.HANDSHAKE:
            raise ProtocolError(f"control message before the TLS handshake: {type(msg).__name__}")
        # CLOSING / CLOSED: whatever still arrives is ignored

    def _check_hello(self, hello: Hello, now: float) -> None:
        gate = self.gate
        if hello.version != PROTOCOL_VERSION:
            reason = f"protocol version {hello.version} is not supported (this peer speaks {PROTOCOL_VERSION})"
        elif gate is not None and (unread := gate.refuse_hello(now)) is not None:
            reason = unread
        elif not hmac.compare_digest(hello.token.encode(), self._token.encode()):
            reason = "wrong room token"
            if gate is not None:
                gate.token_failed(now)
        elif gate is not None and (busy := gate.refuse_peer()) is not None:
            # no REFUSE message: the close code alone tells the client "busy", not "wrong token"
            self.close_reason = busy
            self._events.append(Refused(busy))
            self._fail(CloseCode.BUSY, busy)
            return
        else:
            self._send_control(Welcome(self._sending_copies()))
            self._open(hello.copies, now)
            return
        self._send_control(Refuse(reason))
        self._refused(reason, now)

    def _refused(self, reason: str, now: float) -> None:
        self.close_reason = reason
        self._events.append(Refused(reason))
        self._close_later(CloseCode.AUTH, reason, now)

    def _close_later(self, code: CloseCode, phrase: str, now: float) -> None:
        self.state = State.CLOSING
        self._auth_deadline = self._keepalive_at = self._feedback_at = None
        self._close_code = code
        self._close_phrase = phrase
        self._close_at = now

    def _open(self, peer_copies: int, now: float) -> None:
        self.state = State.OPEN
        self._auth_deadline = None
        # The NACK horizon depends on how many copies the peer puts in each datagram.
        self._reassembler.copies = peer_copies
        self._redundancy.opened(now)
        self._keepalive_at = now + self.config.keepalive
        self._events.append(Opened(peer_copies))

    def _send_control(self, msg: Message) -> None:
        data = encode_message(msg)
        self.counters.control_bytes_sent += len(data)
        self.quic.send_stream_data(CONTROL_STREAM, data)
        self._acks.sending()

    def _fail(self, code: CloseCode | int, reason: str) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if self.close_reason is None:
            self.close_reason = reason
        if code != CloseCode.NONE:
            log.warning("closing the connection: %s", reason)
        self.state = State.CLOSING
        self.quic.close(error_code=int(code), reason_phrase=reason[:200])

    # -- streams -----------------------------------------------------------------------

    def _stream_data(self, stream_id: int, data: bytes, now: float) -> None:
        if stream_id == CONTROL_STREAM:
            self.counters.control_bytes_received += len(data)
            for msg in self._control.feed(data):
                self._control_message(msg, now)
            return
        # bit 1: unidirectional; bit 0: opened by the server
        peer_uni = bool(stream_id & 0x2) and (stream_id & 0x1) == (1 if self.is_client else 0)
        if self.state != State.OPEN or not peer_uni:
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
                self.counters.malformed += 1
        if frames:
            self._deliver(self._reassembler.receive_frames(frames).frames, now)

    def _refuse_stream(self, stream_id: int) -> None:
        """Asks the peer to stop sending on a stream we have no use for (its data is discarded)."""
        try:
            self.quic.stop_stream(stream_id, CloseCode.PROTOCOL)
        except ValueError:
            pass  # a stream aioquic already closed, or one only we may send on (aioquic rejects those itself)

    # -- feedback ------------------------------------------------------------------------

    def _feedback(self, fb: Feedback, now: float) -> None:
        c = self.counters
        c.acks_received += len(fb.acks)
        c.nacks_received += len(fb.nacks)
        c.iframe_requests_received += int(fb.iframe_request)
        self._redundancy.loss_reported(fb.lost, now)
        if self.feedback_sink is not None:
            for seq in fb.acks:
                self.feedback_sink.acknowledge(seq)
            if fb.iframe_request:
                self.feedback_sink.request_iframe()
        if fb.nacks and self.config.retransmit_nacked and self.config.mode == "datagram":
            datagram = self._packer.retransmission(fb.nacks, now)
            if datagram is not None:
                c.retransmissions += 1
                # retransmissions carry frames already near their deadline: the oldest one's counts
                self._queue_datagram(datagram, now + self.config.max_age / 2, now)
        self._events.append(FeedbackReceived(fb))

    def _media_message(self, msg: MediaMessage, now: float) -> None:
        if isinstance(msg, VideoFeedback) and msg.nacks:
            self.counters.video_nacks_received += len(msg.nacks)
            if self.config.retransmit_nacked:
                for datagram, deadline in self._video.retransmissions(msg.nacks, now):
                    self.counters.video_retransmissions += 1
                    self._queue_datagram(datagram, deadline, now)
        self._events.append(MediaMessageReceived(msg))

    def _take_ack(self) -> int | None:
        """The newest pending ack, taken to ride in a frame datagram, if acks are all that is pending."""
        if not self._pending_acks or self._pending_nacks or self._pending_iframe or self._pending_lost:
            return None
        ack = self._pending_acks[-1]
        self._pending_acks.clear()
        self._feedback_at = None
        return ack

    def _flush_feedback(self) -> None:
        self._feedback_at = None
        if self.state != State.OPEN or not (self._pending_acks or self._pending_nacks or self._pending_iframe
                                            or self._pending_lost):
            return
        fb = Feedback(tuple(self._pending_acks), tuple(self._pending_nacks), self._pending_iframe, self._pending_lost)
        self._pending_acks.clear()
        self._pending_nacks.clear()
        self._pending_iframe = False
        self._pending_lost = 0
        self._send_control(fb)

    # -- media ---------------------------------------------------------------------------

    def _sending_copies(self) -> int:
        return self.config.copies if self.config.mode == "datagram" else 1

    def _queue_datagram(self, datagram: bytes, deadline: float, now: float) -> None:
        if len(datagram) > self.config.max_datagram:
            # one oversize DATAGRAM would block every datagram behind it in aioquic, forever
            raise ValueError(f"datagram of {len(datagram)} B exceeds the {self.config.max_datagram} B cap")
        # aioquic has no way to withdraw a queued DATAGRAM, so its private queue is trimmed here
        pending: deque[bytes] = self.quic._datagrams_pending
        # aioquic pops sent datagrams from the left: what it still holds is a suffix of ours.
        while len(self._queued) > len(pending):
            self._queued.popleft()
        if self._queued and pending and self._queued[0].datagram is not pending[0]:
            self._queued.clear()  # someone else queued datagrams; stop trimming what we cannot vouch for
        while self._queued and (self._queued[0].deadline < now or len(self._queued) >= self.config.max_queued_datagrams):
            self._queued.popleft()
            pending.popleft()
            self.counters.stale_datagrams_dropped += 1
        self.quic.send_datagram_frame(datagram)
        self._acks.sending()
        self._queued.append(_Queued(datagram, deadline))

    def _datagram(self, data: bytes, now: float) -> None:
        if self.state != State.OPEN:
            return  # nothing is accepted from a peer before it authenticated
        if is_video_datagram(data):
            try:
                seq, payload = unpack_video(data)
            except ProtocolError:
                self.counters.malformed += 1
                return
            self.counters.video_packets_received += 1
            self.counters.video_bytes_received += len(payload)
            self._events.append(VideoReceived(ReceivedVideo(seq, payload, now)))
            return
        result = self._reassembler.receive_datagram(data)
        if result.ack is not None:
            self._feedback(Feedback(acks=(result.ack,)), now)
        self._deliver(result.frames, now)
        nacks = result.nacks[-MAX_FEEDBACK_SEQS:] if self.config.retransmit_nacked else ()
        # the loss count keeps the peer's copies coming while its datagrams get lost
        self.send_feedback(Feedback(nacks=nacks, lost=self._reassembler.take_losses()), now)

    def _deliver(self, frames: list[tuple[int, bytes]], now: float) -> None:
        for seq, data in frames:
            self.counters.frames_received += 1
            self.counters.payload_bytes_received += len(data)
            self._events.append(FrameReceived(ReceivedFrame(seq, data, now)))

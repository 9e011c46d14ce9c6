"""Typed values at the transport's boundary: its settings, what it delivers, what it counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nerfconf.net.redundancy import MAX_DATAGRAM_PAYLOAD

#: IPv4 (20 B) + UDP (8 B) headers, added per packet to count bytes as the wire sees them
IP_UDP_OVERHEAD = 28


@dataclass(frozen=True)
class TransportConfig:
    #: "datagram": one QUIC DATAGRAM per frame with copies of earlier frames (default);
    #: "stream": the paper's reliable stream with delimited frames
    mode: Literal["datagram", "stream"] = "datagram"
    #: frames per datagram: the new one and copies of the copies - 1 before it
    copies: int = 3
    #: carry the copies only while the peer reports lost datagrams (and for
    #: redundancy.LOSS_HOLD_S after): on a clean path they are most of each datagram
    adaptive_copies: bool = True
    #: DATAGRAM payload cap in bytes (aioquic stalls forever on a datagram over ~1170 B)
    max_datagram: int = MAX_DATAGRAM_PAYLOAD
    #: a frame sent without a deadline must arrive within this many seconds to be useful
    max_age: float = 0.3
    #: retransmit frames the receiver NACKs, if they can still make their deadline
    retransmit_nacked: bool = True
    #: acks, ours and (in datagram mode) QUIC's, wait up to this long (s) to ride with our next frame
    #: (one frame at 20 fps, plus slack; QUIC's peer is told it as max_ack_delay); NACKs and I-frame
    #: requests never wait
    feedback_delay: float = 0.06
    #: how far back (frames) a receiver NACKs missing frames
    nack_window: int = 16
    #: datagrams waiting in aioquic's queue past this count are dropped oldest first
    max_queued_datagrams: int = 64
    #: seconds between PINGs, well inside the idle timeout
    keepalive: float = 15.0
    idle_timeout: float = 60.0
    #: received frames kept for recv_frame(); the oldest is dropped when it overflows
    recv_queue: int = 256
    handshake_timeout: float = 10.0
    #: a client that has not shown the room token this long after its first packet (TLS included) is
    #: dropped: the bound on how long a half-open connection holds a listening peer's memory
    auth_timeout: float = 5.0
    #: where the server's certificate is cached (default: nerfconf.net.certs.config_dir())
    identity_dir: Path | None = None
    congestion_control: Literal["reno", "cubic"] = "reno"

    def __post_init__(self) -> None:
        if self.mode not in ("datagram", "stream"):
            raise ValueError(f"mode is 'datagram' or 'stream', not {self.mode!r}")
        if not 1 <= self.copies <= 16:
            raise ValueError(f"copies must be 1..16, got {self.copies}")
        if not 1030 <= self.max_datagram <= MAX_DATAGRAM_PAYLOAD:
            raise ValueError(f"max_datagram must be 1030..{MAX_DATAGRAM_PAYLOAD} bytes")
        if not 0 < self.keepalive < self.idle_timeout:
            raise ValueError("keepalive must be positive and shorter than idle_timeout")
        if not 0 <= self.feedback_delay <= 1:
            raise ValueError("feedback_delay must be 0..1 s")
        for name in ("max_age", "handshake_timeout", "auth_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.recv_queue < 1 or self.max_queued_datagrams < 1 or self.nack_window < 0:
            raise ValueError("recv_queue and max_queued_datagrams must be >= 1, nack_window >= 0")


@dataclass(frozen=True)
class ReceivedFrame:
    seq: int
    #: the coded frame, as ParamDecoder.decode takes it
    data: bytes
    #: loop time (time.monotonic() under the default event loop) when it arrived
    t_arrival: float


@dataclass(frozen=True)
class TransportStats:
    """Counters of one connection; bytes are per direction."""

    #: new frames handed to send_frame / delivered to recv_frame
    frames_sent: int
    frames_received: int
    #: coded frame bytes of those frames (each frame once, no copies, no framing)
    payload_bytes_sent: int
    payload_bytes_received: int
    #: UDP packets and their bytes including the IP/UDP headers: QUIC's own ACKs,
    #: handshake, feedback, keepalives and redundant copies all included
    packets_sent: int
    packets_received: int
    wire_bytes_sent: int
    wire_bytes_received: int
    #: control-stream bytes (handshake and feedback messages)
    control_bytes_sent: int
    control_bytes_received: int
    acks_sent: int
    acks_received: int
    nacks_sent: int
    nacks_received: int
    iframe_requests_sent: int
    iframe_requests_received: int
    retransmissions: int
    #: datagrams dropped from the send queue because their deadline had passed
    stale_datagrams_dropped: int
    recovered_from_copies: int
    duplicates: int
    #: datagrams or stream segments that did not parse, and frames inside them that did not
    malformed: int
    #: received frames dropped because nobody read them fast enough
    recv_overflow: int
    #: video mode: datagrams and their payload bytes (each packet once), NACKed packets and resends
    video_packets_sent: int = 0
    video_bytes_sent: int = 0
    video_packets_received: int = 0
    video_bytes_received: int = 0
    video_nacks_received: int = 0
    video_retransmissions: int = 0

"""Video datagrams (sans-I/O): how they share the connection with frame datagrams, and what NACKs resend.

A video datagram is ``0xF1 | packet sequence number:2 | payload``; the payload
(a fragment of a coded video frame with its own header) belongs to
:mod:`nerfconf.video.packets`. A frame datagram (:func:`nerfconf.codec.frame.pack_datagram`)
starts with its first frame's length: one byte 0x01..0x7F, or 0x81..0x88 for a
two-byte length, so a first byte of 0xF1 is never one of them and the two kinds
need no extra byte to tell apart.

The packet sequence number is the transport's, as RTP's is: the receiver NACKs
missing numbers and the sender resends what :class:`VideoHistory` still holds
before its deadline. Retransmissions keep their number.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.errors import ProtocolError

VIDEO_DATAGRAM = 0xF1
HEADER_BYTES = 3


def is_video_datagram(data: bytes) -> bool:
    return bool(data) and data[0] == VIDEO_DATAGRAM


def pack_video(seq: int, payload: bytes) -> bytes:
    if not payload:
        raise ValueError("a video datagram carries a payload")
    return bytes((VIDEO_DATAGRAM,)) + (seq % SEQ_MODULO).to_bytes(2, "big") + payload


def unpack_video(data: bytes) -> tuple[int, bytes]:
    """(sequence number, payload); :class:`ProtocolError` for anything that is not a video datagram."""
    if len(data) <= HEADER_BYTES or data[0] != VIDEO_DATAGRAM:
        raise ProtocolError(f"not a video datagram ({len(data)} bytes)")
    return int.from_bytes(data[1:3], "big"), bytes(data[HEADER_BYTES:])


@dataclass(frozen=True)
class ReceivedVideo:
    """One video datagram as it arrived: the transport's sequence number and the payload."""

    seq: int
    payload: bytes
    #: loop time when it arrived
    t_arrival: float


#: resends of one packet at most: the receiver asks twice (once at the gap, once 60 ms later), and a
#: peer that NACKs the same packets over and over must not turn our uplink into its amplifier
MAX_RESENDS = 2


@dataclass
class _Sent:
    datagram: bytes
    deadline: float
    resent: int = 0


class VideoHistory:
    """The sender's recent video datagrams, numbered, for NACKed retransmission; bounded by ``capacity``."""

    def __init__(self, capacity: int = 256) -> None:
        self._sent: OrderedDict[int, _Sent] = OrderedDict()
        self._capacity = capacity
        self._next = 0

    def number(self, payload: bytes, deadline: float) -> tuple[int, bytes]:
        """The next sequence number and the datagram carrying ``payload`` under it, remembered."""
        seq = self._next
        self._next = (self._next + 1) % SEQ_MODULO
        datagram = pack_video(seq, payload)
        self._sent.pop(seq, None)
        self._sent[seq] = _Sent(datagram, deadline)
        while len(self._sent) > self._capacity:
            self._sent.popitem(last=False)
        return seq, datagram

    def retransmissions(self, seqs: tuple[int, ...], now: float) -> list[tuple[bytes, float]]:
        """(datagram, deadline) of the NACKed packets that can still arrive in time and were not resent
        ``MAX_RESENDS`` times already, each once."""
        out = []
        for seq in dict.fromkeys(seqs):
            sent = self._sent.get(seq)
            if sent is not None and sent.deadline > now and sent.resent < MAX_RESENDS:
                sent.resent += 1
                out.append((sent.datagram, sent.deadline))
        return out

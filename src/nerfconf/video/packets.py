"""The video payload format: one coded frame cut into fragments, each a video datagram's payload.

Each fragment carries (big-endian)::

    0..1  frame number (mod 2**16), one more for each coded frame
    2     fragment index, 0..count-1
    3     fragment count, 1..MAX_FRAGMENTS
    4     flags: bit 0 keyframe; bits 1..2 codec (``VideoCodec``); others 0
    5..7  capture time, ms (mod 2**24)
    then  the fragment's share of the coded frame

Frames are cut into fragments of equal size (as WebRTC's packetizers do), so no
tiny last packet pays a whole header. The transport adds its own 3 bytes in front
(:mod:`nerfconf.net.video_channel`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfconf.codec.frame import SEQ_MODULO, TIMESTAMP_MODULO
from nerfconf.net.messages import VideoCodec
from nerfconf.net.redundancy import MAX_DATAGRAM_PAYLOAD
from nerfconf.net.video_channel import HEADER_BYTES as TRANSPORT_HEADER

HEADER_BYTES = 8
#: what one fragment can carry of a coded frame
MAX_FRAGMENT_DATA = MAX_DATAGRAM_PAYLOAD - TRANSPORT_HEADER - HEADER_BYTES
#: 64 fragments: 72 KB, several times a 256 px keyframe at any rate this mode runs at
MAX_FRAGMENTS = 64
MAX_FRAME_BYTES = MAX_FRAGMENTS * MAX_FRAGMENT_DATA


class PacketError(ValueError):
    """A video payload that does not parse; the receiver drops it."""


@dataclass(frozen=True)
class EncodedVideo:
    """One coded video frame."""

    data: bytes
    #: frame number, mod 2**16
    frame_no: int
    keyframe: bool
    codec: VideoCodec
    #: capture time in ms (mod 2**24)
    timestamp_ms: int
    #: the picture's side in pixels (square)
    size: int = 0


@dataclass(frozen=True)
class Fragment:
    frame_no: int
    index: int
    count: int
    keyframe: bool
    codec: VideoCodec
    timestamp_ms: int
    data: bytes


def packetize(frame: EncodedVideo) -> list[bytes]:
    """The payloads that carry ``frame``; ValueError for a frame over :data:`MAX_FRAME_BYTES`."""
    n = len(frame.data)
    if not 0 < n <= MAX_FRAME_BYTES:
        raise ValueError(f"a coded video frame is 1..{MAX_FRAME_BYTES} bytes, got {n}")
    count = -(-n // MAX_FRAGMENT_DATA)
    base, extra = divmod(n, count)
    flags = int(frame.keyframe) | (int(frame.codec) << 1)
    head = (frame.frame_no % SEQ_MODULO).to_bytes(2, "big")
    stamp = (frame.timestamp_ms % TIMESTAMP_MODULO).to_bytes(3, "big")
    out, pos = [], 0
    for i in range(count):
        size = base + (i < extra)
        out.append(head + bytes((i, count, flags)) + stamp + frame.data[pos : pos + size])
        pos += size
    return out


def parse(payload: bytes) -> Fragment:
    if len(payload) <= HEADER_BYTES:
        raise PacketError(f"video payload of {len(payload)} bytes has no data after its header")
    if len(payload) > HEADER_BYTES + MAX_FRAGMENT_DATA:
        raise PacketError(f"video payload of {len(payload)} bytes exceeds the fragment limit")
    index, count, flags = payload[2], payload[3], payload[4]
    if not 0 < count <= MAX_FRAGMENTS or index >= count:
        raise PacketError(f"fragment {index} of {count} is out of range (1..{MAX_FRAGMENTS} fragments)")
    if flags & ~0b111:
        raise PacketError(f"unknown video flags {flags:#x}")
    try:
        codec = VideoCodec(flags >> 1)
    except ValueError:
        raise PacketError(f"unknown video codec {flags >> 1}") from None
    if codec == VideoCodec.NONE:
        raise PacketError("a video fragment names no codec")
    return Fragment(int.from_bytes(payload[0:2], "big"), index, count, bool(flags & 1), codec,
                    int.from_bytes(payload[5:8], "big"), bytes(payload[HEADER_BYTES:]))

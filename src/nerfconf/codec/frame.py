"""Frame format: header, byte stuffing with a 2-byte delimiter, and datagram packing.

Header (big-endian), 4 bytes for the common P-frame::

    byte 0   version:3  type:1  face_found:1  coder:1  near_ref:1  short_time:1
    1..2     sequence number (mod 2**16)
    short_time: 1 byte, ms after the reference frame's timestamp (0..255)
    otherwise:  3 bytes, ms since the encoder started (mod 2**24, ~4.7 h)
    I-frame:            2-byte configuration tag (CRC of layout, depths, bounds, priors)
    P-frame, face, !near: 1-byte reference distance (2..255); near means distance 1
    then the entropy-coded body (empty when no face was found)

Every header byte counts: at 20 fps one byte is 0.16 kbps, 4 % of the budget.
A P-frame's reference must be decoded first anyway, so its timestamp is sent
relative to the reference's whenever that fits in a byte.
There is no checksum because both transports (QUIC streams and datagrams) are
already authenticated by TLS; the decoder still checks structure and ranges.

Stream transport separates frames with ``FF 01``. Inside a frame every ``FF``
is stuffed as ``FF 00`` (as JPEG does), so no payload can contain the delimiter
and a receiver can resynchronise at the next delimiter after any damage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nerfconf.codec.errors import BitstreamError, IncompatibleStreamError
from nerfconf.types import FrameType

FORMAT_VERSION = 2
DELIMITER = b"\xff\x01"
_ESCAPE = 0xFF
SEQ_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 24
MAX_REF_DISTANCE = 255
#: far more than any frame we produce (~60 B at 10 bits x 52 dims, I-frame)
MAX_FRAME_BYTES = 1024
#: copies in one datagram; a redundancy depth past this is pointless
MAX_FRAMES_PER_DATAGRAM = 16


@dataclass(frozen=True)
class FrameHeader:
    frame_type: FrameType
    face_found: bool
    coder: int
    seq: int
    #: ms since the encoder started (mod 2**24); None when sent relative to the reference
    timestamp_ms: int | None
    config_tag: int | None = None  # I-frames
    ref_distance: int | None = None  # P-frames with a face
    #: ms after the reference frame's timestamp (P-frames with a face only)
    time_delta_ms: int | None = None


def write_frame(header: FrameHeader, body: bytes) -> bytes:
    near = header.ref_distance == 1
    short_time = header.time_delta_ms is not None
    b0 = (
        (FORMAT_VERSION << 5)
        | (int(header.frame_type) << 4)
        | (int(header.face_found) << 3)
        | (header.coder << 2)
        | (int(near) << 1)
        | int(short_time)
    )
    out = bytearray((b0,))
    out += (header.seq % SEQ_MODULO).to_bytes(2, "big")
    if short_time:
        assert header.frame_type == FrameType.P and header.face_found
        assert header.time_delta_ms is not None and 0 <= header.time_delta_ms <= 255
        out.append(header.time_delta_ms)
    else:
        assert header.timestamp_ms is not None
        out += (header.timestamp_ms % TIMESTAMP_MODULO).to_bytes(3, "big")
    if header.frame_type == FrameType.I:
        assert header.config_tag is not None and header.face_found
        out += header.config_tag.to_bytes(2, "big")
    elif header.face_found and not near:
        assert header.ref_distance is not None and 2 <= header.ref_distance <= MAX_REF_DISTANCE
        out.append(header.ref_distance)
    out += body
    return bytes(out)


def read_frame(data: bytes) -> tuple[FrameHeader, bytes]:
    """Parses the header; the body is returned undecoded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a frame must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_FRAME_BYTES:
        raise BitstreamError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    if len(data) < 4:
        raise BitstreamError(f"frame of {len(data)} bytes is shorter than the shortest header")
    b0 = data[0]
    version = b0 >> 5
    if version != FORMAT_VERSION:
        raise IncompatibleStreamError(
            f"frame is format version {version}; this decoder reads version {FORMAT_VERSION}"
        )
    frame_type = FrameType((b0 >> 4) & 1)
    face = bool(b0 & 8)
    coder = (b0 >> 2) & 1
    near = bool(b0 & 2)
    short_time = bool(b0 & 1)
    seq = int.from_bytes(data[1:3], "big")
    if short_time:
        if frame_type != FrameType.P or not face:
            raise BitstreamError("only P-frames with a face may carry a relative timestamp")
        timestamp, time_delta, pos = None, data[3], 4
    else:
        if len(data) < 6:
            raise BitstreamError(f"frame of {len(data)} bytes is truncated inside its timestamp")
        timestamp, time_delta, pos = int.from_bytes(data[3:6], "big"), None, 6
    config_tag = ref_distance = None
    if frame_type == FrameType.I:
        if not face or near:
            raise BitstreamError("malformed I-frame header (I-frames always carry a face)")
        if len(data) < pos + 2:
            raise BitstreamError("I-frame truncated inside its configuration tag")
        config_tag = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
    elif face:
        if near:
            ref_distance = 1
        else:
            if len(data) < pos + 1:
                raise BitstreamError("P-frame truncated inside its reference distance")
            ref_distance = data[pos]
            if ref_distance < 2:
                raise BitstreamError(f"P-frame reference distance {ref_distance} is not allowed here")
            pos += 1
    elif near or coder:
        raise BitstreamError("malformed header of a frame without a face")
    body = data[pos:]
    if face and not body:
        raise BitstreamError("frame claims a face but carries no parameters")
    if not face and body:
        raise BitstreamError("frame without a face carries a body")
    header = FrameHeader(frame_type, face, coder, seq, timestamp, config_tag, ref_distance, time_delta)
    return header, body


# -- byte-stream transport --------------------------------------------------------------


def stuff(frame: bytes) -> bytes:
    """Escapes a frame so it cannot contain ``DELIMITER``, and appends the delimiter."""
    return frame.replace(b"\xff", b"\xff\x00") + DELIMITER


def unstuff(segment: bytes) -> bytes:
    """Inverse of the escaping in :func:`stuff` for one delimiter-free segment."""
    i = segment.find(b"\xff")
    while i != -1:
        if i + 1 >= len(segment) or segment[i + 1] != 0:
            raise BitstreamError(f"invalid escape sequence at byte {i} of a stream segment")
        i = segment.find(b"\xff", i + 2)
    return segment.replace(b"\xff\x00", b"\xff")


class StreamDeframer:
    """Splits a byte stream into frames (sans-I/O: feed bytes, get frames back).

    Damage costs only the frames it touches: a bad segment yields a
    :class:`BitstreamError` in the output, and parsing resumes at the next
    delimiter. The internal buffer never exceeds about twice the frame limit.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max_segment = 2 * max_frame_bytes
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | BitstreamError]:
        out: list[bytes | BitstreamError] = []
        self._buf += data
        while True:
            i = self._buf.find(DELIMITER)
            if i == -1:
                break
            segment = bytes(self._buf[:i])
            del self._buf[: i + 2]
            if self._discarding:
                self._discarding = False
                continue
            if not segment:
                out.append(BitstreamError("empty frame between two delimiters"))
                continue
            try:
                out.append(unstuff(segment))
            except BitstreamError as exc:
                out.append(exc)
        if len(self._buf) > self._max_segment:
            # Keep a trailing FF: it may be the first half of the next delimiter.
            keep = self._buf[-1:] if self._buf[-1] == _ESCAPE else b""
            self._buf = bytearray(keep)
            if not self._discarding:
                out.append(BitstreamError("no delimiter within the frame-size limit; resynchronising"))
            self._discarding = True
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


# -- datagram transport -----------------------------------------------------------------


def pack_datagram(frames: Iterable[bytes]) -> bytes:
    """Length-prefixed frames in one datagram, newest first by convention."""
    out = bytearray()
    count = 0
    for frame in frames:
        n = len(frame)
        if not 0 < n <= MAX_FRAME_BYTES:
            raise ValueError(f"cannot pack a frame of {n} bytes")
        # one byte for lengths under 128, two otherwise (a 7-bit varint)
        out += bytes((n,)) if n < 0x80 else bytes((0x80 | (n >> 7), n & 0x7F))
        out += frame
        count += 1
    if not 0 < count <= MAX_FRAMES_PER_DATAGRAM:
        raise ValueError(f"a datagram carries 1..{MAX_FRAMES_PER_DATAGRAM} frames, not {count}")
    return bytes(out)


def unpack_datagram(data: bytes) -> list[bytes]:
    data = bytes(data)
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(frames) == MAX_FRAMES_PER_DATAGRAM:
            raise BitstreamError(f"datagram holds more than {MAX_FRAMES_PER_DATAGRAM} frames")
        n = data[pos]
        pos += 1
        if n & 0x80:
            if pos >= len(data):
                raise BitstreamError("datagram truncated inside a frame length")
            n = ((n & 0x7F) << 7) | data[pos]
            if data[pos] & 0x80 or n < 0x80:
                raise BitstreamError("non-canonical frame length in datagram")
            pos += 1
        if n == 0 or n > MAX_FRAME_BYTES:
            raise BitstreamError(f"datagram frame length {n} is outside 1..{MAX_FRAME_BYTES}")
        if pos + n > len(data):
            raise BitstreamError(f"datagram truncated: frame needs {n} bytes, {len(data) - pos} left")
        frames.append(data[pos : pos + n])
        pos += n
    if not frames:
        raise BitstreamError("empty datagram")
    return frames

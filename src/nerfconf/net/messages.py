"""Control-stream messages (sans-I/O): the handshake after TLS, and receiver feedback.

Each message is ``type:1 | length:2 (big-endian) | body``. The control stream
is reliable and ordered, so messages need no sequence numbers of their own.

* ``HELLO``    client -> server: protocol version, copies per datagram the
  client sends, room token (UTF-8)
* ``WELCOME``  server -> client: protocol version, copies per datagram the
  server sends; media may flow after it
* ``REFUSE``   either way: a reason in UTF-8, sent just before closing
* ``FEEDBACK`` either way: flags (bit 0: I-frame request; bit 1: a loss count
  follows), the loss count (the sender's datagrams found missing since the last
  count, one byte), acked sequence numbers, NACKed sequence numbers (a count
  byte, then 2 bytes each). In video mode the I-frame request asks the video
  encoder for a keyframe.
* ``MODE_REQUEST`` receiver -> sender: the mode it wants the sender's face in
  (avatar parameters, or video when it has no avatar of the sender), the video
  codecs it decodes (a bit mask) and its video bitrate cap in kbps (2 bytes)
* ``MODE_SWITCH`` sender -> receiver: the mode its media is in from now on, the
  video codec (0 in avatar mode), and the number of the first frame in it (an
  avatar sequence number or a video frame number), which is an I-frame or keyframe
* ``VIDEO_FEEDBACK`` receiver -> sender: flags (bit 0: a loss report follows),
  the report (fraction of video packets lost since the last one, in 256ths, and
  the video rate received, kbps on 2 bytes), then NACKed video packet sequence
  numbers (a count byte, then 2 bytes each)

Version 2 added the last three, version 3 FEEDBACK's loss count and the ack a frame
datagram may carry (:mod:`nerfconf.net.redundancy`); a peer of another version is
refused at HELLO.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.errors import ProtocolError

PROTOCOL_VERSION = 3
MAX_BODY = 1024
#: sequence numbers in one feedback message, per list
MAX_FEEDBACK_SEQS = 255
_HEADER = 3


class MsgType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    FEEDBACK = 4
    MODE_REQUEST = 5
    MODE_SWITCH = 6
    VIDEO_FEEDBACK = 7


class CallMode(enum.IntEnum):
    """What a sender's face travels as."""

    #: ~50 face parameters a frame, rendered through the receiver's avatar of the sender
    AVATAR = 0
    #: low-delay video of the head crop: when the receiver has no avatar of the sender
    VIDEO = 1


class VideoCodec(enum.IntEnum):
    """Video codecs on the wire; a receiver names those it decodes as a bit mask of ``1 << value``."""

    NONE = 0
    H264 = 1
    AV1 = 2


@dataclass(frozen=True)
class Hello:
    token: str
    #: frames per datagram this peer sends (the receiver's NACK horizon depends on it)
    copies: int = 1
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Welcome:
    copies: int = 1
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Refuse:
    reason: str


@dataclass(frozen=True)
class Feedback:
    """What a receiver tells a sender: frames it decoded, frames it misses, and whether it needs an I-frame."""

    acks: tuple[int, ...] = ()
    nacks: tuple[int, ...] = ()
    iframe_request: bool = False
    #: the sender's datagrams this receiver found missing since its last count (recovered or not):
    #: the sender keeps redundant copies while there are any
    lost: int = 0

    def __post_init__(self) -> None:
        for name in ("acks", "nacks"):
            seqs = tuple(int(s) for s in getattr(self, name))
            if len(seqs) > MAX_FEEDBACK_SEQS or not all(0 <= s < SEQ_MODULO for s in seqs):
                raise ValueError(f"feedback {name}: at most {MAX_FEEDBACK_SEQS} sequence numbers in 0..65535")
            object.__setattr__(self, name, seqs)
        if not 0 <= self.lost <= 255:
            raise ValueError(f"feedback lost: a count in 0..255, got {self.lost}")

    def __bool__(self) -> bool:
        return bool(self.acks or self.nacks or self.iframe_request or self.lost)


@dataclass(frozen=True)
class ModeRequest:
    """Receiver -> sender: send me your face this way (sent when the call opens, and again to switch)."""

    mode: CallMode
    #: video codecs this receiver decodes
    codecs: frozenset[VideoCodec] = frozenset({VideoCodec.H264})
    #: the video bitrate this receiver wants at most (its downlink's budget)
    max_kbps: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", CallMode(self.mode))
        object.__setattr__(self, "codecs", frozenset(VideoCodec(c) for c in self.codecs) - {VideoCodec.NONE})
        if not 1 <= self.max_kbps <= 0xFFFF:
            raise ValueError(f"max_kbps must be 1..65535, got {self.max_kbps}")
        if self.mode == CallMode.VIDEO and not self.codecs:
            raise ValueError("a request for video names at least one codec")


@dataclass(frozen=True)
class ModeSwitch:
    """Sender -> receiver: my media is in ``mode`` from frame ``first`` on, an I-frame or keyframe."""

    mode: CallMode
    codec: VideoCodec = VideoCodec.NONE
    #: the avatar sequence number or video frame number (mod 2**16) of the first frame in this mode
    first: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", CallMode(self.mode))
        object.__setattr__(self, "codec", VideoCodec(self.codec))
        if (self.mode == CallMode.VIDEO) == (self.codec == VideoCodec.NONE):
            raise ValueError("video mode names its codec; avatar mode names none")
        if not 0 <= self.first < SEQ_MODULO:
            raise ValueError(f"first frame must be 0..65535, got {self.first}")


@dataclass(frozen=True)
class LossReport:
    #: video packets lost since the previous report, in 256ths (RTCP's fraction lost)
    lost_256: int
    #: video bitrate received over that interval
    received_kbps: int

    def __post_init__(self) -> None:
        if not 0 <= self.lost_256 <= 255 or not 0 <= self.received_kbps <= 0xFFFF:
            raise ValueError("a loss report holds lost_256 in 0..255 and received_kbps in 0..65535")

    @property
    def loss(self) -> float:
        return self.lost_256 / 256


@dataclass(frozen=True)
class VideoFeedback:
    """Receiver -> sender about the video stream: packets to retransmit, and a loss report."""

    nacks: tuple[int, ...] = ()
    report: LossReport | None = None

    def __post_init__(self) -> None:
        seqs = tuple(int(s) for s in self.nacks)
        if len(seqs) > MAX_FEEDBACK_SEQS or not all(0 <= s < SEQ_MODULO for s in seqs):
            raise ValueError(f"video nacks: at most {MAX_FEEDBACK_SEQS} sequence numbers in 0..65535")
        object.__setattr__(self, "nacks", seqs)


Message = Hello | Welcome | Refuse | Feedback | ModeRequest | ModeSwitch | VideoFeedback


def _seq_list(seqs: Iterable[int]) -> bytes:
    seqs = tuple(seqs)
    return bytes((len(seqs),)) + b"".join(s.to_bytes(2, "big") for s in seqs)


def encode_message(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        body = bytes((msg.version, msg.copies)) + msg.token.encode()
        kind = MsgType.HELLO
    elif isinstance(msg, Welcome):
        body, kind = bytes((msg.version, msg.copies)), MsgType.WELCOME
    elif isinstance(msg, Refuse):
        body, kind = msg.reason.encode()[:MAX_BODY], MsgType.REFUSE
    elif isinstance(msg, Feedback):
        flags = int(msg.iframe_request) | (2 if msg.lost else 0)
        body = bytes((flags, msg.lost) if msg.lost else (flags,)) + _seq_list(msg.acks) + _seq_list(msg.nacks)
        kind = MsgType.FEEDBACK
    elif isinstance(msg, ModeRequest):
        mask = sum(1 << c for c in msg.codecs)
        body, kind = bytes((msg.mode, mask)) + msg.max_kbps.to_bytes(2, "big"), MsgType.MODE_REQUEST
    elif isinstance(msg, ModeSwitch):
        body, kind = bytes((msg.mode, msg.codec)) + msg.first.to_bytes(2, "big"), MsgType.MODE_SWITCH
    elif isinstance(msg, VideoFeedback):
        r = msg.report
        body = bytes((int(r is not None),))
        if r is not None:
            body += bytes((r.lost_256,)) + r.received_kbps.to_bytes(2, "big")
        body += _seq_list(msg.nacks)
        kind = MsgType.VIDEO_FEEDBACK
    else:
        raise TypeError(f"not a control message: {msg!r}")
    if len(body) > MAX_BODY:
        raise ValueError(f"control message body of {len(body)} bytes exceeds {MAX_BODY}")
    return bytes((kind,)) + len(body).to_bytes(2, "big") + body


def _read_seqs(body: bytes, pos: int) -> tuple[tuple[int, ...], int]:
    if pos >= len(body):
        raise ProtocolError("feedback message truncated before a sequence-number count")
    n = body[pos]
    end = pos + 1 + 2 * n
    if end > len(body):
        raise ProtocolError("feedback message truncated inside its sequence numbers")
    seqs = tuple(int.from_bytes(body[i : i + 2], "big") for i in range(pos + 1, end, 2))
    return seqs, end


def decode_message(kind: int, body: bytes) -> Message:
    try:
        kind = MsgType(kind)
    except ValueError:
        raise ProtocolError(f"unknown control message type {kind}") from None
    if kind in (MsgType.HELLO, MsgType.WELCOME):
        if len(body) < 2 or not 1 <= body[1] <= 16:
            raise ProtocolError(f"malformed {kind.name} message")
    if kind == MsgType.HELLO:
        try:
            return Hello(body[2:].decode(), body[1], body[0])
        except UnicodeDecodeError:
            raise ProtocolError("room token is not UTF-8") from None
    if kind == MsgType.WELCOME:
        if len(body) != 2:
            raise ProtocolError("malformed WELCOME message")
        return Welcome(body[1], body[0])
    if kind == MsgType.REFUSE:
        return Refuse(body.decode(errors="replace"))
    if kind in (MsgType.MODE_REQUEST, MsgType.MODE_SWITCH, MsgType.VIDEO_FEEDBACK):
        return _decode_media(kind, body)
    if not body or body[0] > 3:
        raise ProtocolError("malformed FEEDBACK flags")
    lost, pos = 0, 1
    if body[0] & 2:
        if len(body) < 2 or body[1] == 0:
            raise ProtocolError("FEEDBACK truncated inside its loss count, or a count of 0")
        lost, pos = body[1], 2
    acks, pos = _read_seqs(body, pos)
    nacks, pos = _read_seqs(body, pos)
    if pos != len(body):
        raise ProtocolError("trailing bytes after a FEEDBACK message")
    return Feedback(acks, nacks, bool(body[0] & 1), lost)


_CODEC_MASK = sum(1 << c for c in VideoCodec if c != VideoCodec.NONE)


def _decode_media(kind: MsgType, body: bytes) -> Message:
    try:
        if kind == MsgType.MODE_REQUEST:
            if len(body) != 4 or body[1] & ~_CODEC_MASK:
                raise ProtocolError("malformed MODE_REQUEST message")
            codecs = frozenset(c for c in VideoCodec if c != VideoCodec.NONE and body[1] >> c & 1)
            return ModeRequest(CallMode(body[0]), codecs, int.from_bytes(body[2:4], "big"))
        if kind == MsgType.MODE_SWITCH:
            if len(body) != 4:
                raise ProtocolError("malformed MODE_SWITCH message")
            return ModeSwitch(CallMode(body[0]), VideoCodec(body[1]), int.from_bytes(body[2:4], "big"))
        if not body or body[0] > 1:
            raise ProtocolError("malformed VIDEO_FEEDBACK flags")
        report, pos = None, 1
        if body[0]:
            if len(body) < 4:
                raise ProtocolError("VIDEO_FEEDBACK truncated inside its loss report")
            report, pos = LossReport(body[1], int.from_bytes(body[2:4], "big")), 4
        nacks, pos = _read_seqs(body, pos)
        if pos != len(body):
            raise ProtocolError("trailing bytes after a VIDEO_FEEDBACK message")
        return VideoFeedback(nacks, report)
    except ValueError as exc:  # an unknown mode or codec, or a combination the dataclass refuses
        raise ProtocolError(f"malformed {kind.name} message: {exc}") from None


class ControlDeframer:
    """Splits the control stream into messages; its buffer never exceeds one message."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Messages completed by ``data``; raises :class:`ProtocolError` on anything malformed."""
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _HEADER:
            n = int.from_bytes(self._buf[1:3], "big")
            if n > MAX_BODY:
                raise ProtocolError(f"control message of {n} bytes exceeds the {MAX_BODY}-byte limit")
            if len(self._buf) < _HEADER + n:
                break
            kind, body = self._buf[0], bytes(self._buf[_HEADER : _HEADER + n])
            del self._buf[: _HEADER + n]
            out.append(decode_message(kind, body))
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

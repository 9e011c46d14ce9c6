"""Control-stream messages (sans-I/O): the handshake after TLS, and receiver feedback.

Each message is ``type:1 | length:2 (big-endian) | body``. The control stream
is reliable and ordered, so messages need no sequence numbers of their own.

* ``HELLO``    client -> server: protocol version, copies per datagram the
  client sends, room token (UTF-8)
* ``WELCOME``  server -> client: protocol version, copies per datagram the
  server sends; media may flow after it
* ``REFUSE``   either way: a reason in UTF-8, sent just before closing
* ``FEEDBACK`` either way: flags (bit 0: I-frame request), acked sequence
  numbers, NACKed sequence numbers (a count byte, then 2 bytes each)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_BODY = 1024
#: sequence numbers in one feedback message, per list
MAX_FEEDBACK_SEQS = 255
_HEADER = 3


class MsgType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    FEEDBACK = 4


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

    def __post_init__(self) -> None:
        for name in ("acks", "nacks"):
            seqs = tuple(int(s) for s in getattr(self, name))
            if len(seqs) > MAX_FEEDBACK_SEQS or not all(0 <= s < SEQ_MODULO for s in seqs):
                raise ValueError(f"feedback {name}: at most {MAX_FEEDBACK_SEQS} sequence numbers in 0..65535")
            object.__setattr__(self, name, seqs)

    def __bool__(self) -> bool:
        return bool(self.acks or self.nacks or self.iframe_request)


Message = Hello | Welcome | Refuse | Feedback


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
        body = bytes((int(msg.iframe_request),)) + _seq_list(msg.acks) + _seq_list(msg.nacks)
        kind = MsgType.FEEDBACK
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
    if not body or body[0] > 1:
        raise ProtocolError("malformed FEEDBACK flags")
    acks, pos = _read_seqs(body, 1)
    nacks, pos = _read_seqs(body, pos)
    if pos != len(body):
        raise ProtocolError("trailing bytes after a FEEDBACK message")
    return Feedback(acks, nacks, bool(body[0]))


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

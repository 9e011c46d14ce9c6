"""Small coded frames for transport tests: real frame headers, arbitrary bodies."""

from __future__ import annotations

from nerfconf.codec.frame import SEQ_MODULO, FrameHeader, write_frame
from nerfconf.types import EncodedFrame, FrameType


def frame(seq: int, body_len: int = 12) -> EncodedFrame:
    seq %= SEQ_MODULO
    body = bytes((seq * 7 + k) % 251 + 1 for k in range(body_len))
    data = write_frame(FrameHeader(FrameType.P, True, 0, seq, None, None, 1, 50), body)
    return EncodedFrame(data, FrameType.P, seq, seq * 50, True, (seq - 1) % SEQ_MODULO)

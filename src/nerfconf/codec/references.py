"""Decoded frames kept for prediction, shared by the encoder and the decoder."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from nerfconf.codec.entropy import CoderId, CoderState
from nerfconf.codec.frame import SEQ_MODULO


@dataclass(frozen=True)
class ReferenceFrame:
    levels: tuple[int, ...]
    coder: CoderId
    state: CoderState
    gop: int
    #: the frame's own timestamp (mod 2**24): later frames may be timed relative to it
    timestamp_ms: int


class ReferenceStore:
    """Bounded by count, so a hostile stream cannot make it grow."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: OrderedDict[int, ReferenceFrame] = OrderedDict()

    def put(self, seq: int, frame: ReferenceFrame) -> None:
        self._frames.pop(seq, None)
        self._frames[seq] = frame
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def get(self, seq: int) -> ReferenceFrame | None:
        return self._frames.get(seq)

    def __contains__(self, seq: int) -> bool:
        return seq in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        self._frames.clear()


def seq_distance(newer: int, older: int) -> int:
    """Forward distance from ``older`` to ``newer`` in sequence-number space."""
    return (newer - older) % SEQ_MODULO


def seq_is_newer(a: int, b: int) -> bool:
    """RFC 1982 serial-number comparison: is ``a`` after ``b``?"""
    d = seq_distance(a, b)
    return 0 < d < SEQ_MODULO // 2

"""What every entropy coder of one frame's quantized values shares.

Both code an I-frame as levels relative to the mid level and a P-frame as
residuals against a reference frame that ``encoder`` chose. The coder may
refine the prediction from that reference (the arithmetic coder does).
A coder carries a *state* from its reference frame to the next: nothing for
Exp-Golomb; for the arithmetic coder the adaptive context counts, the last
residuals and the running residual scales. Because the state travels with the reference (not with decode order), a
P-frame that predicts from an acknowledged anchor stays decodable when the
frames between were lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from nerfconf.codec.errors import BitstreamError


class CoderId(enum.IntEnum):
    EXP_GOLOMB = 0
    ARITHMETIC = 1


@dataclass(frozen=True)
class CoderState:
    """What a frame leaves behind for frames that predict from it."""

    #: adaptive context counts (arithmetic coder)
    ctx: list[int] | None = None
    #: each dimension's last residual (arithmetic coder)
    last_residual: tuple[int, ...] | None = None
    #: each dimension's running mean |residual| in 1/16 steps (arithmetic coder)
    scales: tuple[int, ...] | None = None
    #: each dimension's last level change, for the predictor (arithmetic coder)
    last_delta: tuple[int, ...] | None = None


class EntropyCoder(Protocol):
    coder_id: CoderId

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]: ...

    def encode_inter(
        self, levels: list[int], ref: tuple[int, ...], state: CoderState
    ) -> tuple[bytes, CoderState]: ...

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]: ...

    def decode_inter(
        self, body: bytes, ref: tuple[int, ...], state: CoderState
    ) -> tuple[list[int], CoderState]: ...


def check_levels(levels: list[int], top: list[int]) -> None:
    for d, (v, t) in enumerate(zip(levels, top)):
        if not 0 <= v <= t:
            raise BitstreamError(f"level {v} in dimension {d} is outside 0..{t}")

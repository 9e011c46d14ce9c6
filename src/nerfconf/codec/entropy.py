"""Entropy coders for one frame's quantized values: Exp-Golomb and context-adaptive arithmetic.

Both code an I-frame as levels relative to the mid level and a P-frame as
residuals against a reference frame; prediction itself lives in ``encoder``.
A coder carries a *state* from its reference frame to the next: nothing for
Exp-Golomb, the adaptive context counts and last residuals for the arithmetic
coder. Because the state travels with the reference (not with decode order), a
P-frame that predicts from an acknowledged anchor stays decodable when the
frames between were lost.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nerfconf.codec.arith import COUNT_ONE, ArithmeticDecoder, ArithmeticEncoder
from nerfconf.codec.bitio import BitReader, BitWriter
from nerfconf.codec.errors import BitstreamError
from nerfconf.codec.expgolomb import read_se, se_bits, write_se


class CoderId(enum.IntEnum):
    EXP_GOLOMB = 0
    ARITHMETIC = 1


@dataclass(frozen=True)
class CoderState:
    """What a frame leaves behind for frames that predict from it."""

    ctx: list[int] | None = None
    last_residual: tuple[int, ...] | None = None


class EntropyCoder(Protocol):
    coder_id: CoderId

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]: ...

    def encode_inter(self, residual: list[int], state: CoderState) -> tuple[bytes, CoderState]: ...

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]: ...

    def decode_inter(self, body: bytes, state: CoderState) -> tuple[list[int], CoderState]: ...


def _check_range(values: list[int], lo: int, hi: int, what: str) -> None:
    for d, v in enumerate(values):
        if not lo <= v <= hi:
            raise BitstreamError(f"{what} {v} in dimension {d} is outside {lo}..{hi}")


class ExpGolombCoder:
    """The paper's coder: order-0 Exp-Golomb of signed values.

    I-frames take a fixed ``bits`` per value or Exp-Golomb of the distance from
    the mid level, whichever is shorter, flagged by the first bit.
    """

    coder_id = CoderId.EXP_GOLOMB

    def __init__(self, dims: int, bits: int) -> None:
        self.dims = dims
        self.bits = bits
        self.mid = 1 << (bits - 1)
        self.levels = (1 << bits) - 1

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]:
        w = BitWriter()
        centred = [v - self.mid for v in q]
        if sum(se_bits(v) for v in centred) < self.bits * self.dims:
            w.write(1, 1)
            for v in centred:
                write_se(w, v)
        else:
            w.write(0, 1)
            for v in q:
                w.write(v, self.bits)
        return w.to_bytes(), CoderState()

    def encode_inter(self, residual: list[int], state: CoderState) -> tuple[bytes, CoderState]:
        w = BitWriter()
        for v in residual:
            write_se(w, v)
        return w.to_bytes(), state

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]:
        r = BitReader(body)
        if r.read_bit():
            q = [read_se(r, self.bits) + self.mid for _ in range(self.dims)]
        else:
            q = [r.read(self.bits) for _ in range(self.dims)]
        r.expect_padding()
        _check_range(q, 0, self.levels, "level")
        return q, CoderState()

    def decode_inter(self, body: bytes, state: CoderState) -> tuple[list[int], CoderState]:
        r = BitReader(body)
        residual = [read_se(r, self.bits) for _ in range(self.dims)]
        r.expect_padding()
        _check_range(residual, -self.levels, self.levels, "residual")
        return residual, state


# Binarisation of a signed value v (a residual, or an I-frame level minus mid):
#   nonzero flag; sign; magnitude class n = bit_length(|v|) - 1 as truncated unary;
#   the top bit below the leading one, context-coded; the remaining n-1 bits bypass.
# Classes adapt like an Exp-Golomb order that learns, so a dimension whose
# residuals run to ±30 costs about its entropy instead of Exp-Golomb's 11 bits.
_MAX_CLASS = 10  # |v| <= 2**10 - 1 at the deepest quantization
# P-frame contexts, per dimension:
_CTX_NONZERO = 0  # 3: by the previous residual's magnitude (0, 1..3, 4+)
_CTX_SIGN = 3  # 3: by the previous residual's sign (0, +, -)
_CTX_CLASS = 6  # one per unary position
_CTX_TOPBIT = _CTX_CLASS + _MAX_CLASS  # one per class
CTX_PER_DIM = _CTX_TOPBIT + _MAX_CLASS
# I-frame contexts, shared by all dimensions of the one frame they code.
_ICTX_NONZERO = 0
_ICTX_SIGN = 1
_ICTX_CLASS = 2
_ICTX_TOPBIT = _ICTX_CLASS + _MAX_CLASS
_N_ICTX = _ICTX_TOPBIT + _MAX_CLASS


def _signed_bins(
    add, v: int, nonzero: int, sign: int, klass: int, topbit: int, max_class: int
) -> None:
    """Appends the bins of ``v``: ``(context, bit)``, or ``(-width, value)`` for bypass bits."""
    add((nonzero, int(v != 0)))
    if not v:
        return
    add((sign, int(v < 0)))
    a = -v if v < 0 else v
    n = a.bit_length() - 1
    for k in range(n):
        add((klass + k, 1))
    if n < max_class:
        add((klass + n, 0))
    if n:
        add((topbit + n, (a >> (n - 1)) & 1))
        if n > 1:
            add((1 - n, a & ((1 << (n - 1)) - 1)))


def _decode_signed(
    dec: ArithmeticDecoder, ctx: list[int], nonzero: int, sign: int, klass: int, topbit: int, max_class: int
) -> int:
    if not dec.decode_context(ctx, nonzero):
        return 0
    negative = dec.decode_context(ctx, sign)
    n = 0
    while n < max_class and dec.decode_context(ctx, klass + n):
        n += 1
    a = 1
    if n:
        a = (2 | dec.decode_context(ctx, topbit + n)) << (n - 1) | dec.decode_bypass(n - 1)
    return -a if negative else a


def _code_bins(enc: ArithmeticEncoder, ctx: list[int], bins: list[tuple[int, int]]) -> None:
    for i, bit in bins:
        if i < 0:
            enc.encode_bypass(bit, -i)
        else:
            enc.encode_context(bit, ctx, i)


@dataclass(frozen=True)
class ContextPriors:
    """Initial counts of the arithmetic coder's P-frame contexts.

    Models reset to these at every I-frame. Fitted on an enrollment track they
    play the role of CABAC's initialisation tables, specialised to one person;
    they ship in the avatar bundle beside the quantization bounds.
    """

    counts: tuple[int, ...]

    @classmethod
    def uniform(cls, dims: int) -> ContextPriors:
        # Half an observation of each outcome: the Krichevsky-Trofimov estimator.
        return cls((COUNT_ONE // 2,) * (2 * CTX_PER_DIM * dims))

    @property
    def dims(self) -> int:
        return len(self.counts) // (2 * CTX_PER_DIM)

    def to_json(self) -> str:
        return json.dumps({"ctx_per_dim": CTX_PER_DIM, "counts": list(self.counts)})

    @classmethod
    def from_json(cls, text: str) -> ContextPriors:
        try:
            obj = json.loads(text)
            counts = tuple(int(c) for c in obj["counts"])
            per_dim = int(obj["ctx_per_dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a context-priors JSON object: {exc}") from exc
        if per_dim != CTX_PER_DIM or len(counts) % (2 * CTX_PER_DIM):
            raise ValueError("context priors were made for another arithmetic-coder layout")
        if any(not 1 <= c <= 1 << 16 for c in counts):
            raise ValueError("context prior counts must be in 1..65536")
        return cls(counts)

    def canonical_bytes(self) -> bytes:
        return np.asarray(self.counts, dtype="<u4").tobytes()


class ArithmeticCoder:
    """Context-adaptive binary arithmetic coding of residuals, per dimension.

    Each residual is binarised as nonzero flag, sign, unary magnitude and a
    bypass Exp-Golomb tail. Contexts are per dimension and conditioned on the
    same dimension's previous residual, which captures both how busy a
    dimension is and whether it is moving.
    """

    coder_id = CoderId.ARITHMETIC

    def __init__(self, dims: int, bits: int, priors: ContextPriors | None = None) -> None:
        self.dims = dims
        self.bits = bits
        self.mid = 1 << (bits - 1)
        self.levels = (1 << bits) - 1
        self.priors = priors or ContextPriors.uniform(dims)
        if self.priors.dims != dims:
            raise ValueError(f"context priors are for {self.priors.dims} dimensions, not {dims}")
        self._fresh = CoderState(list(self.priors.counts), (0,) * dims)

    # -- I-frames -------------------------------------------------------------------

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]:
        """Fixed-width levels or context-coded distances from mid, whichever is shorter."""
        fixed = ArithmeticEncoder()
        fixed.encode_bypass(0, 1)
        for v in q:
            fixed.encode_bypass(v, self.bits)
        adaptive = ArithmeticEncoder()
        adaptive.encode_bypass(1, 1)
        bins: list[tuple[int, int]] = []
        for v in q:
            _signed_bins(
                bins.append, v - self.mid, _ICTX_NONZERO, _ICTX_SIGN, _ICTX_CLASS, _ICTX_TOPBIT, self.bits - 1
            )
        _code_bins(adaptive, [COUNT_ONE // 2] * (2 * _N_ICTX), bins)
        a, b = fixed.finish(), adaptive.finish()
        return (b if len(b) < len(a) else a), self._fresh

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]:
        dec = ArithmeticDecoder(body)
        if dec.decode_bypass(1) == 0:
            q = [dec.decode_bypass(self.bits) for _ in range(self.dims)]
        else:
            ctx = [COUNT_ONE // 2] * (2 * _N_ICTX)
            q = [
                self.mid
                + _decode_signed(dec, ctx, _ICTX_NONZERO, _ICTX_SIGN, _ICTX_CLASS, _ICTX_TOPBIT, self.bits - 1)
                for _ in range(self.dims)
            ]
        dec.finish()
        _check_range(q, 0, self.levels, "level")
        return q, self._fresh

    # -- P-frames -------------------------------------------------------------------

    def encode_inter(self, residual: list[int], state: CoderState) -> tuple[bytes, CoderState]:
        assert state.ctx is not None and state.last_residual is not None
        ctx = state.ctx.copy()
        enc = ArithmeticEncoder()
        _code_bins(enc, ctx, inter_bins(residual, state.last_residual, self.bits))
        return enc.finish(), CoderState(ctx, tuple(residual))

    def decode_inter(self, body: bytes, state: CoderState) -> tuple[list[int], CoderState]:
        if state.ctx is None or state.last_residual is None:
            raise BitstreamError("arithmetic-coded P-frame predicts from a frame of another coder")
        ctx = state.ctx.copy()
        dec = ArithmeticDecoder(body)
        residual = []
        for d, last in enumerate(state.last_residual):
            base = d * CTX_PER_DIM
            residual.append(
                _decode_signed(
                    dec,
                    ctx,
                    base + _CTX_NONZERO + _magnitude_class(last),
                    base + _CTX_SIGN + _sign_class(last),
                    base + _CTX_CLASS,
                    base + _CTX_TOPBIT,
                    self.bits - 1,
                )
            )
        dec.finish()
        _check_range(residual, -self.levels, self.levels, "residual")
        return residual, CoderState(ctx, tuple(residual))


def inter_bins(residual: list[int], last_residual: tuple[int, ...], bits: int) -> list[tuple[int, int]]:
    """Binarises one P-frame. The one definition, used by the encoder and by prior fitting."""
    bins: list[tuple[int, int]] = []
    for d, (r, last) in enumerate(zip(residual, last_residual)):
        base = d * CTX_PER_DIM
        _signed_bins(
            bins.append,
            r,
            base + _CTX_NONZERO + _magnitude_class(last),
            base + _CTX_SIGN + _sign_class(last),
            base + _CTX_CLASS,
            base + _CTX_TOPBIT,
            bits - 1,
        )
    return bins


def _magnitude_class(last: int) -> int:
    return 0 if last == 0 else 1 if -4 < last < 4 else 2


def _sign_class(last: int) -> int:
    return 0 if last == 0 else 1 if last > 0 else 2


def make_coder(coder: CoderId, dims: int, bits: int, priors: ContextPriors | None = None) -> EntropyCoder:
    if coder == CoderId.EXP_GOLOMB:
        return ExpGolombCoder(dims, bits)
    return ArithmeticCoder(dims, bits, priors)

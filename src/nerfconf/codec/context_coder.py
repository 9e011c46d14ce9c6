"""Context-adaptive binary arithmetic coding of a frame's values, after CABAC.

Binarisation of a signed value ``v`` (a residual, or an I-frame level minus mid):
nonzero flag; sign; magnitude class ``n = bit_length(|v|) - 1`` as truncated
unary; the bit below the leading one, context-coded; the remaining ``n - 1``
bits bypass. The classes act like an Exp-Golomb order that learns, so a
dimension whose residuals run to ±30 costs close to its entropy instead of
order-0 Exp-Golomb's 11 bits.

Context selection for P-frames follows JPEG-LS rather than giving each
dimension its own contexts: each dimension keeps a running mean of its
|residual| (its *scale*), the scale is multiplied by how busy the frame has
been so far (|residuals| of the dimensions already coded against their
scales), and contexts are chosen by the octave of that expected magnitude.
Dimensions of similar activity share statistics, so the model learns within a
single GOP, and a still moment (a pause in speech) is cheap for every
dimension at once.

The coder also refines the prediction: each dimension predicts its level as
the reference level plus a fitted fraction of its last change (momentum) and
of its distance to its mean (pull back), clamped to the level range. With
the default priors both fractions are zero and the prediction is the
reference itself, exactly the paper's scheme.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nerfconf.codec.arith import COUNT_ONE, ArithmeticDecoder, ArithmeticEncoder
from nerfconf.codec.entropy import CoderId, CoderState, check_levels
from nerfconf.codec.errors import BitstreamError

MODEL_NAME = "scale-octave-1"
_MAX_CLASS = 10  # |v| <= 2**10 - 1 at the deepest quantization
#: context buckets: octave of the expected |residual| in 1/16 steps (0 .. >= 2**11)
_N_BUCKETS = 13
_PER_BUCKET = 1 + 2 * _MAX_CLASS  # nonzero flag, unary positions, top bits
_CTX_SIGN = _N_BUCKETS * _PER_BUCKET  # 3 sign contexts by the dimension's last residual sign
N_CONTEXTS = _CTX_SIGN + 3
#: regularises the frame-activity ratio so the first dimensions rely on their own scale
_ACTIVITY_PRIOR = 4 * 16
#: scale update rate: the running mean moves 1/2**_SCALE_SHIFT of the way per frame
_SCALE_SHIFT = 2
#: a fresh dimension's scale when nothing was fitted: 2 steps
_DEFAULT_SCALE = 2 * 16
# I-frame contexts, shared by all dimensions of the one frame they code.
_ICTX_NONZERO = 0
_ICTX_SIGN = 1
_ICTX_CLASS = 2
_ICTX_TOPBIT = _ICTX_CLASS + _MAX_CLASS
_N_ICTX = _ICTX_TOPBIT + _MAX_CLASS

Bin = tuple[int, int]


def _signed_bins(add: Callable[[Bin], None], v: int, nonzero: int, sign: int, klass: int, topbit: int,
                 max_class: int) -> None:
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


def _decode_signed(dec: ArithmeticDecoder, ctx: list[int], nonzero: int, sign: int, klass: int, topbit: int,
                   max_class: int) -> int:
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


def _code_bins(enc: ArithmeticEncoder, ctx: list[int], bins: list[Bin]) -> None:
    for i, bit in bins:
        if i < 0:
            enc.encode_bypass(bit, -i)
        else:
            enc.encode_context(bit, ctx, i)


class _InterModel:
    """Walks one P-frame dimension by dimension: its prediction and its contexts."""

    __slots__ = ("priors", "state", "activity", "expected")

    def __init__(self, priors: ContextPriors, state: CoderState) -> None:
        assert state.scales is not None and state.last_residual is not None and state.last_delta is not None
        self.priors = priors
        self.state = state
        self.activity = _ACTIVITY_PRIOR
        self.expected = _ACTIVITY_PRIOR

    def predict(self, ref: tuple[int, ...], top: list[int]) -> list[int]:
        pr = self.priors
        out = []
        for p, dlt, a, b, c, t in zip(ref, self.state.last_delta, pr.momentum, pr.pullback, pr.centre, top):
            p += (a * dlt + b * (c - p) + 128) >> 8
            out.append(0 if p < 0 else t if p > t else p)
        return out

    def contexts(self, d: int) -> tuple[int, int, int, int]:
        expected = self.state.scales[d] * self.activity // self.expected
        base = min(_N_BUCKETS - 1, expected.bit_length()) * _PER_BUCKET
        last = self.state.last_residual[d]
        sign = _CTX_SIGN + (0 if last == 0 else 1 if last > 0 else 2)
        return base, sign, base + 1, base + 1 + _MAX_CLASS

    def coded(self, d: int, r: int) -> None:
        self.activity += abs(r) << 4
        self.expected += self.state.scales[d]

    def next_state(self, levels: list[int], ref: tuple[int, ...], residual: list[int],
                   ctx: list[int] | None) -> CoderState:
        scales = tuple(a + (((abs(r) << 4) - a) >> _SCALE_SHIFT) for a, r in zip(self.state.scales, residual))
        delta = tuple(v - p for v, p in zip(levels, ref))
        return CoderState(ctx, tuple(residual), scales, delta)


def inter_bins(priors: ContextPriors, levels: list[int], ref: tuple[int, ...], state: CoderState,
               bits: tuple[int, ...]) -> tuple[list[Bin], CoderState]:
    """Binarises one P-frame; the one definition, used by the encoder and by prior fitting.

    Returns the bins and the state the frame leaves behind (with ``state.ctx``
    unchanged: only coding the bins updates counts).
    """
    model = _InterModel(priors, state)
    bins: list[Bin] = []
    residual = [v - p for v, p in zip(levels, model.predict(ref, [(1 << b) - 1 for b in bits]))]
    for d, r in enumerate(residual):
        nonzero, sign, klass, topbit = model.contexts(d)
        _signed_bins(bins.append, r, nonzero, sign, klass, topbit, bits[d] - 1)
        model.coded(d, r)
    return bins, model.next_state(levels, ref, residual, state.ctx)


@dataclass(frozen=True)
class ContextPriors:
    """Where the arithmetic coder's P-frame model starts at every I-frame.

    Initial context counts and per-dimension residual scales. Fitted on an
    enrollment track they play the role of CABAC's initialisation tables,
    specialised to one person; they ship in the avatar bundle beside the
    quantization bounds.
    """

    counts: tuple[int, ...]
    #: per dimension: running mean |residual| in 1/16 steps
    scales: tuple[int, ...]
    #: per dimension, in 1/256: fraction of the last change carried forward
    momentum: tuple[int, ...] = ()
    #: per dimension, in 1/256: fraction of the distance to ``centre`` pulled back
    pullback: tuple[int, ...] = ()
    #: per dimension: the mean level
    centre: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        dims = len(self.scales)
        for name in ("momentum", "pullback", "centre"):
            if not getattr(self, name):
                object.__setattr__(self, name, (0,) * dims)
            if len(getattr(self, name)) != dims:
                raise ValueError(f"context priors need one {name} value per dimension")
        if any(not -256 <= v <= 256 for v in self.momentum + self.pullback):
            raise ValueError("context prior predictor weights must be in -256..256 (that is ±1)")
        if any(not 0 <= v <= 1 << 16 for v in self.centre):
            raise ValueError("context prior centres must be levels in 0..65536")
        if len(self.counts) != 2 * N_CONTEXTS:
            raise ValueError(f"context priors need {2 * N_CONTEXTS} counts, got {len(self.counts)}")
        if any(not 1 <= c <= 1 << 16 for c in self.counts):
            raise ValueError("context prior counts must be in 1..65536")
        if not self.scales or any(not 0 <= s <= 1 << 16 for s in self.scales):
            raise ValueError("context prior scales must be in 0..65536, one per dimension")

    @classmethod
    def uniform(cls, dims: int) -> ContextPriors:
        # Half an observation of each outcome: the Krichevsky-Trofimov estimator.
        return cls((COUNT_ONE // 2,) * (2 * N_CONTEXTS), (_DEFAULT_SCALE,) * dims)

    @property
    def dims(self) -> int:
        return len(self.scales)

    def to_json(self) -> str:
        fields = ("counts", "scales", "momentum", "pullback", "centre")
        return json.dumps({"model": MODEL_NAME, **{f: list(getattr(self, f)) for f in fields}})

    @classmethod
    def from_json(cls, text: str) -> ContextPriors:
        try:
            obj = json.loads(text)
            model = obj["model"]
            fields = {f: tuple(int(c) for c in obj[f]) for f in ("counts", "scales", "momentum", "pullback", "centre")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a context-priors JSON object: {exc}") from exc
        if model != MODEL_NAME:
            raise ValueError(f"context priors are for model {model!r}; this coder uses {MODEL_NAME!r}")
        return cls(**fields)

    def canonical_bytes(self) -> bytes:
        values = self.counts + self.scales + self.momentum + self.pullback + self.centre
        return np.asarray(values, dtype="<i4").tobytes()

    def initial_state(self) -> CoderState:
        zeros = (0,) * self.dims
        return CoderState(list(self.counts), zeros, self.scales, zeros)


class ArithmeticCoder:
    coder_id = CoderId.ARITHMETIC

    def __init__(self, bits: tuple[int, ...], priors: ContextPriors | None = None) -> None:
        self.bits = bits
        self.dims = len(bits)
        self.mid = tuple(1 << (b - 1) for b in bits)
        self.top = [(1 << b) - 1 for b in bits]
        self.priors = priors or ContextPriors.uniform(self.dims)
        if self.priors.dims != self.dims:
            raise ValueError(f"context priors are for {self.priors.dims} dimensions, not {self.dims}")
        self._fresh = self.priors.initial_state()

    # -- I-frames: the model resets, so each GOP decodes on its own -----------------

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]:
        """Fixed-width levels or context-coded distances from mid, whichever is shorter."""
        fixed = ArithmeticEncoder()
        fixed.encode_bypass(0, 1)
        for v, b in zip(q, self.bits):
            fixed.encode_bypass(v, b)
        adaptive = ArithmeticEncoder()
        adaptive.encode_bypass(1, 1)
        bins: list[Bin] = []
        for v, m, b in zip(q, self.mid, self.bits):
            _signed_bins(bins.append, v - m, _ICTX_NONZERO, _ICTX_SIGN, _ICTX_CLASS, _ICTX_TOPBIT, b - 1)
        _code_bins(adaptive, [COUNT_ONE // 2] * (2 * _N_ICTX), bins)
        a, b = fixed.finish(), adaptive.finish()
        return (b if len(b) < len(a) else a), self._fresh

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]:
        dec = ArithmeticDecoder(body)
        if dec.decode_bypass(1) == 0:
            q = [dec.decode_bypass(b) for b in self.bits]
        else:
            ctx = [COUNT_ONE // 2] * (2 * _N_ICTX)
            q = [
                m + _decode_signed(dec, ctx, _ICTX_NONZERO, _ICTX_SIGN, _ICTX_CLASS, _ICTX_TOPBIT, b - 1)
                for m, b in zip(self.mid, self.bits)
            ]
        dec.finish()
        check_levels(q, self.top)
        return q, self._fresh

    # -- P-frames -------------------------------------------------------------------

    def encode_inter(self, levels: list[int], ref: tuple[int, ...], state: CoderState) -> tuple[bytes, CoderState]:
        assert state.ctx is not None
        ctx = state.ctx.copy()
        bins, after = inter_bins(self.priors, levels, ref, state, self.bits)
        enc = ArithmeticEncoder()
        _code_bins(enc, ctx, bins)
        return enc.finish(), CoderState(ctx, after.last_residual, after.scales, after.last_delta)

    def decode_inter(self, body: bytes, ref: tuple[int, ...], state: CoderState) -> tuple[list[int], CoderState]:
        if state.ctx is None or state.scales is None:
            raise BitstreamError("arithmetic-coded P-frame predicts from a frame of another coder")
        ctx = state.ctx.copy()
        dec = ArithmeticDecoder(body)
        model = _InterModel(self.priors, state)
        residual = []
        for d, b in enumerate(self.bits):
            nonzero, sign, klass, topbit = model.contexts(d)
            r = _decode_signed(dec, ctx, nonzero, sign, klass, topbit, b - 1)
            model.coded(d, r)
            residual.append(r)
        dec.finish()
        levels = [p + r for p, r in zip(model.predict(ref, self.top), residual)]
        check_levels(levels, self.top)
        return levels, model.next_state(levels, ref, residual, ctx)

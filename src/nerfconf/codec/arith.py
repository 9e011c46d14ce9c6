"""Binary adaptive arithmetic coding, in the spirit of CABAC.

A frame is a few dozen symbols, so two things matter more than raw speed:

* termination must be cheap. Byte-oriented range coders (LZMA's) flush four
  bytes per stream, which would be 15 % of a P-frame. This is the classic
  bit-oriented integer coder (Witten, Neal & Cleary 1987) that ends with two
  bits plus pending underflow bits, padded with zeros to a byte.
* the decoder must reject input the encoder could not have produced. The
  decoder runs the same renormalisation as the encoder, so it knows exactly how
  many bits the encoder emitted and checks the frame length against that.

Probabilities come from counts (a Krichevsky–Trofimov-style estimator with
pseudo-counts from a prior) rather than CABAC's exponential state machine:
models reset at every I-frame and see only tens of symbols per GOP, where a
count-based estimate converges faster than a fixed-rate one.
"""

from __future__ import annotations

from nerfconf.codec.errors import BitstreamError

_PRECISION = 32
_TOP = (1 << _PRECISION) - 1
_HALF = 1 << (_PRECISION - 1)
_QUARTER = 1 << (_PRECISION - 2)
_THREE_QUARTERS = _HALF + _QUARTER

#: probabilities are integers out of 2**16
PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
#: keep every probability away from 0 and 1 so a surprise costs at most ~11 bits
_P_MIN = 32
_P_MAX = PROB_ONE - _P_MIN
PROB_HALF = PROB_ONE // 2

#: counts are in 1/16 of an observation so priors can hold fractional pseudo-counts
COUNT_ONE = 16
#: once a context has seen this many observations its counts are halved, letting
#: it track slow drift in a long GOP
COUNT_LIMIT = 48 * COUNT_ONE


def probability_of_one(c0: int, c1: int) -> int:
    p = (c1 << PROB_BITS) // (c0 + c1)
    return _P_MIN if p < _P_MIN else _P_MAX if p > _P_MAX else p


def update_counts(ctx: list[int], i: int, bit: int) -> None:
    """Adds one observation of ``bit`` to context ``i`` (counts at ``2i``, ``2i+1``)."""
    j = 2 * i + bit
    ctx[j] += COUNT_ONE
    if ctx[2 * i] + ctx[2 * i + 1] > COUNT_LIMIT:
        ctx[2 * i] = (ctx[2 * i] + 1) >> 1
        ctx[2 * i + 1] = (ctx[2 * i + 1] + 1) >> 1


class ArithmeticEncoder:
    __slots__ = ("_low", "_high", "_pending", "_acc", "_nbits")

    def __init__(self) -> None:
        self._low = 0
        self._high = _TOP
        self._pending = 0
        self._acc = 0
        self._nbits = 0

    def _emit(self, bit: int) -> None:
        n = 1 + self._pending
        # the bit followed by `pending` copies of its complement
        run = (1 << self._pending) - 1 if bit == 0 else 0
        self._acc = (self._acc << n) | (bit << self._pending) | run
        self._nbits += n
        self._pending = 0

    def encode(self, bit: int, p1: int) -> None:
        """Codes ``bit`` where ``p1`` is P(bit = 1) out of ``PROB_ONE``."""
        low, high = self._low, self._high
        split = low + (((high - low + 1) * (PROB_ONE - p1)) >> PROB_BITS)
        if bit:
            low = split
        else:
            high = split - 1
        while True:
            if high < _HALF:
                self._emit(0)
            elif low >= _HALF:
                self._emit(1)
                low -= _HALF
                high -= _HALF
            elif low >= _QUARTER and high < _THREE_QUARTERS:
                self._pending += 1
                low -= _QUARTER
                high -= _QUARTER
            else:
                break
            low <<= 1
            high = (high << 1) | 1
        self._low, self._high = low, high

    def encode_context(self, bit: int, ctx: list[int], i: int) -> None:
        self.encode(bit, probability_of_one(ctx[2 * i], ctx[2 * i + 1]))
        update_counts(ctx, i, bit)

    def encode_bypass(self, value: int, width: int) -> None:
        for shift in range(width - 1, -1, -1):
            self.encode((value >> shift) & 1, PROB_HALF)

    def finish(self) -> bytes:
        self._pending += 1
        self._emit(0 if self._low < _QUARTER else 1)
        pad = -self._nbits % 8
        return (self._acc << pad).to_bytes((self._nbits + pad) // 8, "big")


class ArithmeticDecoder:
    __slots__ = ("_low", "_high", "_value", "_data", "_total", "_pos", "_shifts")

    def __init__(self, data: bytes) -> None:
        self._data = int.from_bytes(data, "big")
        self._total = len(data) * 8
        self._pos = 0
        self._low = 0
        self._high = _TOP
        self._shifts = 0
        value = 0
        for _ in range(_PRECISION):
            value = (value << 1) | self._next_bit()
        self._value = value

    def _next_bit(self) -> int:
        # Past the end the encoder's termination guarantees zeros are right.
        pos = self._pos
        self._pos = pos + 1
        if pos >= self._total:
            return 0
        return (self._data >> (self._total - 1 - pos)) & 1

    def decode(self, p1: int) -> int:
        low, high, value = self._low, self._high, self._value
        split = low + (((high - low + 1) * (PROB_ONE - p1)) >> PROB_BITS)
        if value >= split:
            bit = 1
            low = split
        else:
            bit = 0
            high = split - 1
        while True:
            if high < _HALF:
                pass
            elif low >= _HALF:
                low -= _HALF
                high -= _HALF
                value -= _HALF
            elif low >= _QUARTER and high < _THREE_QUARTERS:
                low -= _QUARTER
                high -= _QUARTER
                value -= _QUARTER
            else:
                break
            low <<= 1
            high = (high << 1) | 1
            value = (value << 1) | self._next_bit()
            self._shifts += 1
        self._low, self._high, self._value = low, high, value
        return bit

    def decode_context(self, ctx: list[int], i: int) -> int:
        bit = self.decode(probability_of_one(ctx[2 * i], ctx[2 * i + 1]))
        update_counts(ctx, i, bit)
        return bit

    def decode_bypass(self, width: int) -> int:
        value = 0
        for _ in range(width):
            value = (value << 1) | self.decode(PROB_HALF)
        return value

    def finish(self) -> None:
        """Checks the input is exactly what an encoder would have written.

        The encoder ends on the code point QUARTER or HALF of its final
        interval followed by zeros, so a genuine stream leaves the decoder's
        value register holding exactly that point, and its length is fixed by
        the number of renormalisation shifts. Truncated or damaged input almost
        never satisfies both.
        """
        # Each renormalisation shift accounts for one emitted bit; termination adds two.
        expected = (self._shifts + 2 + 7) // 8
        actual = self._total // 8
        if actual != expected:
            raise BitstreamError(
                f"arithmetic-coded body is {actual} byte(s), the symbols in it need {expected}"
            )
        if self._value != (_QUARTER if self._low < _QUARTER else _HALF):
            raise BitstreamError("arithmetic-coded body does not end the way an encoder ends it")

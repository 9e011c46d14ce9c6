import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.arith import (
    COUNT_ONE,
    PROB_ONE,
    ArithmeticDecoder,
    ArithmeticEncoder,
    probability_of_one,
)
from nerfconf.codec.errors import BitstreamError


@given(st.lists(st.tuples(st.booleans(), st.integers(1, PROB_ONE - 1)), max_size=400))
def test_round_trip_with_any_probabilities(symbols):
    enc = ArithmeticEncoder()
    for bit, p in symbols:
        enc.encode(int(bit), p)
    data = enc.finish()
    dec = ArithmeticDecoder(data)
    assert [dec.decode(p) for _, p in symbols] == [int(b) for b, _ in symbols]
    dec.finish()


def test_skewed_source_compresses_near_its_entropy():
    rng = random.Random(3)
    bits = [int(rng.random() < 0.05) for _ in range(4000)]
    data = _encode(bits)
    # H(0.05) = 0.286 bit/symbol; an adaptive coder should be within 15 %.
    assert len(data) * 8 < 0.286 * 4000 * 1.15
    dec = ArithmeticDecoder(data)
    ctx = [COUNT_ONE // 2, COUNT_ONE // 2]
    assert [dec.decode_context(ctx, 0) for _ in bits] == bits


def _encode(bits):
    enc = ArithmeticEncoder()
    ctx = [COUNT_ONE // 2, COUNT_ONE // 2]
    for b in bits:
        enc.encode_context(b, ctx, 0)
    return enc.finish()


def test_termination_costs_at_most_a_byte_over_the_information():
    enc = ArithmeticEncoder()
    for _ in range(10):
        enc.encode(0, PROB_ONE // 2)
    # 10 bits of information plus 2 bits of termination fit in 2 bytes
    assert len(enc.finish()) == 2


def test_trailing_or_missing_bytes_are_detected():
    data = _encode([1, 0, 1, 1, 0] * 20)
    for bad in (data + b"\x00", data[:-1]):
        dec = ArithmeticDecoder(bad)
        ctx = [COUNT_ONE // 2, COUNT_ONE // 2]
        for _ in range(100):
            dec.decode_context(ctx, 0)
        with pytest.raises(BitstreamError, match="need"):
            dec.finish()


def test_probability_is_clamped_away_from_certainty():
    assert 0 < probability_of_one(1 << 16, 1) < PROB_ONE // 1000
    assert PROB_ONE - PROB_ONE // 1000 < probability_of_one(1, 1 << 16) < PROB_ONE

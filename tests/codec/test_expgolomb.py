from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.bitio import BitReader, BitWriter
from nerfconf.codec.expgolomb import (
    read_se,
    read_ue,
    se_bits,
    signed_to_unsigned,
    unsigned_to_signed,
    write_se,
    write_ue,
)


def test_known_codewords():
    # H.264 Table 9-2: 0 -> 1, 1 -> 010, 2 -> 011, 3 -> 00100
    w = BitWriter()
    for u in (0, 1, 2, 3):
        write_ue(w, u)
    assert len(w) == 1 + 3 + 3 + 5
    assert w.to_bytes() == bytes([0b10100110, 0b01000000])


def test_signed_mapping_matches_the_standard():
    assert [signed_to_unsigned(v) for v in (0, 1, -1, 2, -2)] == [0, 1, 2, 3, 4]


@given(st.integers(-(1 << 12), 1 << 12))
def test_signed_mapping_is_a_bijection(v):
    assert unsigned_to_signed(signed_to_unsigned(v)) == v


@given(st.lists(st.integers(-1023, 1023), max_size=60))
def test_round_trip_and_length(values):
    w = BitWriter()
    for v in values:
        write_se(w, v)
    assert len(w) == sum(se_bits(v) for v in values)
    r = BitReader(w.to_bytes())
    assert [read_se(r, 11) for _ in values] == values
    r.expect_padding()


def test_overlong_prefix_is_rejected():
    import pytest

    from nerfconf.codec.errors import BitstreamError

    r = BitReader(bytes(4))
    with pytest.raises(BitstreamError, match="prefix longer"):
        read_ue(r, 8)

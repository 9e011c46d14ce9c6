import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.quantize import Bounds, Quantizer, equal_step_bits


def bounds(d=5):
    return Bounds(np.linspace(-1, 0, d), np.linspace(1, 3, d))


@pytest.mark.parametrize("bits", [4, 8, 10])
def test_error_is_at_most_half_a_step(bits):
    q = Quantizer(bounds(), bits)
    rng = np.random.default_rng(1)
    for _ in range(200):
        x = rng.uniform(q.bounds.lo, q.bounds.hi)
        levels = q.quantize(x)
        assert levels.min() >= 0 and levels.max() <= (1 << bits) - 1
        assert np.all(np.abs(q.dequantize(levels) - x) <= q.step / 2 + 1e-12)
    assert q.stats.clamped == 0


def test_out_of_range_values_are_clamped_and_counted():
    q = Quantizer(bounds(3), 8)
    levels = q.quantize(np.array([-5.0, 0.5, 99.0]))
    assert levels.tolist() == [0, levels[1], 255]
    assert q.stats.clamped == 2
    assert q.stats.clamped_per_dim.tolist() == [1, 0, 1]


def test_degenerate_dimension_codes_level_zero_without_counting_clamps():
    q = Quantizer(Bounds(np.array([0.0, 2.0]), np.array([1.0, 2.0])), 8)
    levels = q.quantize(np.array([0.5, 7.0]))
    assert levels[1] == 0
    assert q.dequantize(levels)[1] == 2.0
    assert q.stats.clamped == 0


@pytest.mark.parametrize("bits", [3, 11])
def test_depth_outside_4_to_10_bits_is_refused(bits):
    with pytest.raises(ValueError, match="4..10 bits"):
        Quantizer(bounds(), bits)


def test_nan_input_names_the_dimension():
    q = Quantizer(bounds(3), 8)
    with pytest.raises(ValueError, match=r"dimension\(s\) \[1\]"):
        q.quantize(np.array([0.0, np.nan, 0.0]))


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="hi < lo"):
        Bounds(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        Bounds(np.array([0.0]), np.array([np.inf]))


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=50))
def test_bounds_from_data_cover_the_data(values):
    data = np.array(values).reshape(-1, 1)
    b = Bounds.from_data(data)
    q = Quantizer(b, 8)
    for row in data:
        q.quantize(row)
    assert q.stats.clamped == 0


def test_bounds_json_round_trip():
    b = bounds()
    again = Bounds.from_json(b.to_json())
    assert np.array_equal(again.lo, b.lo) and np.array_equal(again.hi, b.hi)
    with pytest.raises(ValueError, match="bounds JSON"):
        Bounds.from_json('{"lo": [1]}')


def test_equal_step_allocation_gives_narrow_components_fewer_bits():
    lo = np.zeros(6)
    hi = np.array([100.0, 49.0, 10.0, 0.5, 1.0, 1.0])  # three expression components, then pose
    bits = equal_step_bits(Bounds(lo, hi), 3, max_bits=8)
    assert bits == (8, 7, 5, 8, 8, 8)
    q = Quantizer(Bounds(lo, hi), bits)
    assert q.step[:3] == pytest.approx([100 / 255, 49 / 127, 10 / 31])
    assert max(q.step[:3]) <= 100 / 255 * 1.01  # no component is coarser than the widest one
    assert equal_step_bits(Bounds(lo, np.array([100.0, 0.01, 1, 1, 1, 1])), 2)[1] == 4  # floor of 4 bits


def test_per_dimension_depths_are_validated():
    with pytest.raises(ValueError, match="one quantization depth per dimension"):
        Quantizer(bounds(3), (8, 8))
    with pytest.raises(ValueError, match="4..10 bits, got 12"):
        Quantizer(bounds(2), (8, 12))

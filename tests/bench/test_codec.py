import json

import pytest

from nerfconf.bench.codec import CodecBench, bench_codec
from nerfconf.report import to_json
from nerfconf.tracks import synthetic_track


@pytest.fixture(scope="module")
def result() -> CodecBench:
    return bench_codec(synthetic_track(500, seed=6), test_frames=200, repeats=1)


def test_every_mode_decodes_the_same_values_and_reports_its_costs(result):
    assert result.source.startswith("synthetic")
    assert result.test_frames == 200 and result.fps == 20.0 and result.gop_frames == 20
    modes = {(m.allocation, m.run.coder, m.run.reference, m.run.ack_delay_frames) for m in result.results}
    coders = ("exp_golomb", "arithmetic")
    assert modes == {
        (a, c, ref, d) for a in ("uniform", "equal-step") for c in coders
        for ref, d in (("prev", None), ("anchor", 1), ("anchor", None))
    }
    for m in result.results:
        r = m.run
        assert m.decoded_identical
        assert r.i_frames == 10  # one per 20-frame GOP over 200 frames
        assert 0 < r.body_kbps < r.payload_kbps < result.unquantized_kbps
        assert r.bytes_per_i_frame > 0 and r.bytes_per_p_frame > 0
        assert r.encode_us_median > 0 and r.decode_us_median > 0
    by = {(m.allocation, m.run.coder, m.run.reference, m.run.ack_delay_frames): m.run for m in result.results}
    # without acks every P-frame predicts from the I-frame, which costs more bits
    assert (by["uniform", "exp_golomb", "anchor", None].payload_kbps
            > by["uniform", "exp_golomb", "prev", None].payload_kbps)
    # equal steps spend fewer bits, for a quantization error no step of which exceeds the widest component's
    assert (by["equal-step", "exp_golomb", "prev", None].payload_kbps
            < by["uniform", "exp_golomb", "prev", None].payload_kbps)
    uniform, equal = result.allocations["uniform"], result.allocations["equal-step"]
    assert uniform.bits == [8] * 49 and max(equal.bits) == 8 and min(equal.bits) < 8
    assert equal.quantization_error.expression_l2_mean > uniform.quantization_error.expression_l2_mean


def test_the_json_keeps_its_flat_rows(result):
    """The keys docs and scripts read: each row names its allocation next to the run's own figures."""
    out = json.loads(to_json(result))
    assert list(out) == ["source", "fps", "dims", "bits", "gop_frames", "rtt_ms", "train_frames", "test_frames",
                         "repeats", "clamped_fraction", "unquantized_kbps", "allocations", "results"]
    row = out["results"][0]
    assert list(row) == ["allocation", "coder", "reference", "ack_delay_frames", "payload_kbps", "body_kbps",
                         "bytes_per_i_frame", "bytes_per_p_frame", "encode_us_median", "decode_us_median",
                         "frames", "i_frames", "decoded_identical"]
    first = result.results[0]
    assert row["allocation"] == first.allocation and row["payload_kbps"] == first.run.payload_kbps
    assert row["ack_delay_frames"] is None and row["decoded_identical"] is True
    equal = result.allocations["equal-step"]
    err = equal.quantization_error
    assert out["allocations"]["equal-step"] == {
        "bits": equal.bits, "fixed_bits_kbps": equal.fixed_bits_kbps,
        "quantization_error": {"expression_l2_mean": err.expression_l2_mean, "rotation_deg_max": err.rotation_deg_max},
    }


def test_too_short_track_is_refused():
    with pytest.raises(ValueError, match="held out"):
        bench_codec(synthetic_track(100), test_frames=500)

import pytest

from nerfconf.bench.codec import bench_codec
from nerfconf.tracks import synthetic_track


def test_every_mode_decodes_the_same_values_and_reports_its_costs():
    result = bench_codec(synthetic_track(500, seed=6), test_frames=200, repeats=1)
    assert result["source"].startswith("synthetic")
    assert result["test_frames"] == 200 and result["fps"] == 20.0 and result["gop_frames"] == 20
    modes = {(r["allocation"], r["coder"], r["reference"], r["ack_delay_frames"]) for r in result["results"]}
    coders = ("exp_golomb", "arithmetic")
    assert modes == {
        (a, c, ref, d) for a in ("uniform", "equal-step") for c in coders
        for ref, d in (("prev", None), ("anchor", 1), ("anchor", None))
    }
    for r in result["results"]:
        assert r["decoded_identical"]
        assert r["i_frames"] == 10  # one per 20-frame GOP over 200 frames
        assert 0 < r["body_kbps"] < r["payload_kbps"] < result["unquantized_kbps"]
        assert r["bytes_per_i_frame"] > 0 and r["bytes_per_p_frame"] > 0
        assert r["encode_us_median"] > 0 and r["decode_us_median"] > 0
    by = {(r["allocation"], r["coder"], r["reference"], r["ack_delay_frames"]): r for r in result["results"]}
    # without acks every P-frame predicts from the I-frame, which costs more bits
    assert (by["uniform", "exp_golomb", "anchor", None]["payload_kbps"]
            > by["uniform", "exp_golomb", "prev", None]["payload_kbps"])
    # equal steps spend fewer bits, for a quantization error no step of which exceeds the widest component's
    assert (by["equal-step", "exp_golomb", "prev", None]["payload_kbps"]
            < by["uniform", "exp_golomb", "prev", None]["payload_kbps"])
    uniform, equal = result["allocations"]["uniform"], result["allocations"]["equal-step"]
    assert uniform["bits"] == [8] * 49 and max(equal["bits"]) == 8 and min(equal["bits"]) < 8
    assert equal["quantization_error"]["expression_l2_mean"] > uniform["quantization_error"]["expression_l2_mean"]


def test_too_short_track_is_refused():
    with pytest.raises(ValueError, match="held out"):
        bench_codec(synthetic_track(100), test_frames=500)

"""A short real demo call: extraction, QUIC through the emulator, decoding, playout, rendering."""

import json

import numpy as np
import pytest

from nerfconf.pipeline.demo import SAMPLE, DemoSettings, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(DemoSettings(seconds=3.0, resolution=32, out=out))


def test_frames_cross_the_call_and_are_rendered(demo):
    s = demo.stats
    assert s["sender"]["sent"] >= 20
    assert s["receiver"]["decoded"] >= 0.9 * s["sender"]["sent"]
    assert s["receiver"]["rendered"] >= 5 and s["receiver"]["displayed"] >= 5
    assert s["side_by_side_frames"] >= 5 and demo.video.stat().st_size > 0
    assert s["renderer"].startswith("numba renderer on cpu")


def test_received_parameters_equal_the_sent_ones_after_quantization(demo):
    from nerfconf.avatar.bundle import AvatarBundle

    q = AvatarBundle.load(SAMPLE).codec.make_quantizer()
    sent, got = demo.sender.sent, demo.receiver.decoded
    common = sorted(set(sent) & set(got))
    assert len(common) >= 0.9 * len(sent) > 0
    for seq in common:
        np.testing.assert_allclose(got[seq], q.dequantize(q.quantize(sent[seq])), atol=1e-9)


def test_the_stats_file_is_complete(demo):
    stats = json.loads(demo.stats_path.read_text())
    for key in ("sender", "receiver", "transport_sender", "transport_receiver", "payload_kbps",
                "wire_kbps_sent", "latency_ms", "renderer", "settings"):
        assert key in stats, key
    modules = {row["module"] for row in stats["latency_ms"]}
    assert {"extract", "encode", "transport", "decode", "generate", "end to end"} <= modules
    assert 0 < stats["payload_kbps"] < 20
    r = stats["receiver"]
    assert 0 < r["fresh_displayed"] <= r["displayed"] and r["fresh_displayed"] <= r["slots"]
    assert r["longest_freeze_ms"] >= 0 and 0 < r["render_ms_p50"] <= r["render_ms_p95"]
    assert sum(r["resolutions"].values()) == r["rendered"]


def test_the_renderer_is_warm_before_the_first_frame(demo):
    r = demo.stats["receiver"]
    # numba compiling inside the call would make the first frame take seconds, not milliseconds
    assert r["first_render_ms"] <= max(3 * r["render_ms_p95"], 100.0), r


def test_the_summary_names_fresh_frames_freezes_and_latency(demo):
    from nerfconf.pipeline.report import call_summary

    text = "\n".join(call_summary(demo.stats["sender"], demo.stats["receiver"], demo.latencies))
    r = demo.stats["receiver"]
    assert f"fresh frames on screen {r['fresh_displayed']} (" in text and "% of" in text
    assert "longest freeze" in text and "render p50" in text and "end to end p50" in text
    assert f"captured {demo.stats['sender']['captured']}" in text


def test_when_the_face_leaves_the_receiver_holds_the_last_pose_and_fades(tmp_path):
    from nerfconf.capture.video import read_all
    from nerfconf.playout.sinks import VideoFileSink

    frames, _ = read_all(SAMPLE / "demo_clip.mp4", stop=30)
    clip = tmp_path / "face_leaves.mp4"
    with VideoFileSink(clip, fps=20, size=frames.shape[1]) as sink:
        for image in frames:
            sink.write(image)
        for _ in range(40):  # the face is gone: an empty wall
            sink.write(np.full_like(frames[0], 200))
    result = run_demo(DemoSettings(video=clip, resolution=32, out=tmp_path / "out"))
    r = result.stats["receiver"]
    assert r["rendered"] >= 3 and r["faded"] >= 10
    last = result.receiver.shown[-1].image
    assert last.min() >= 200  # faded towards white, no garbage
    assert np.isfinite(last).all()


def test_the_default_demo_loops_the_recorded_clip_for_20_seconds(tmp_path):
    from nerfconf.pipeline.demo import DEFAULT_SECONDS, _source, call_seconds, demo_clip

    default = DemoSettings()
    assert demo_clip(default) == SAMPLE / "demo_clip.mp4" and _source(default).loop
    assert call_seconds(default) == DEFAULT_SECONDS == 20.0
    assert call_seconds(DemoSettings(seconds=3.0)) == 3.0
    video = DemoSettings(video=SAMPLE / "demo_clip.mp4")
    assert demo_clip(video) is None and call_seconds(video) is None and not _source(video).loop
    with pytest.raises(FileNotFoundError, match="give --video or --camera"):
        demo_clip(DemoSettings(avatar=tmp_path))

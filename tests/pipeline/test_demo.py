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

"""A send session and a receive session joined directly, the time passed in: rate, ladder and recovery."""

from pathlib import Path

import pytest

from nerfconf.capture.video import read_frames
from nerfconf.net.messages import LossReport, VideoCodec
from nerfconf.video.receive import VideoReceiveSession
from nerfconf.video.send import VideoSendSession

CLIP = Path(__file__).resolve().parents[2] / "avatars" / "sample" / "demo_clip.mp4"


@pytest.fixture(scope="module")
def pictures():
    return [f.image for f in read_frames(CLIP, stop=80)]


def _run(sender, receiver, pictures, *, drop=lambda frame_no: False, reports=None, fps=20.0, t0=0.0, seq=0):
    shown = []
    for i, image in enumerate(pictures):
        t = t0 + i / fps
        if reports is not None:
            sender.on_report(reports(t), t)
        out = sender.encode(image, t)
        if out is not None:
            for payload in out.payloads:
                seq += 1
                if not drop(out.frame.frame_no):
                    shown += receiver.on_packet(seq, payload, t)
        shown += receiver.poll(t + 0.001)
        if receiver.feedback(t).keyframe_request:
            sender.request_keyframe()
    return shown


@pytest.mark.parametrize("codec", [VideoCodec.H264, VideoCodec.AV1])
def test_the_coded_rate_meets_the_target(pictures, codec):
    sender = VideoSendSession(codec, max_kbps=32)
    receiver = VideoReceiveSession()
    shown = _run(sender, receiver, pictures)
    summary = sender.stats.summary()
    # the first keyframe is most of the overshoot a 4 s clip can show
    assert 20 <= summary["kbps"] <= 36
    assert len(shown) == sender.stats.frames and sender.stats.keyframes == 1


def test_a_lost_frame_freezes_the_picture_until_the_keyframe_it_asks_for(pictures):
    sender = VideoSendSession(VideoCodec.H264, max_kbps=32)
    receiver = VideoReceiveSession(frame_timeout=0.2)
    shown = _run(sender, receiver, pictures, drop=lambda n: n == 20)
    numbers = [p.frame_no for p in shown]
    assert 20 not in numbers and receiver.stats.lost == 1 and receiver.stats.keyframe_requests == 1
    resumed = numbers[numbers.index(19) + 1]
    assert shown[numbers.index(resumed)].keyframe and 21 < resumed <= 27  # one timeout and a frame later
    assert receiver.stats.skipped == resumed - 21  # deltas between the loss and the keyframe were not shown
    assert sender.stats.keyframes == 2


def test_heavy_loss_steps_the_picture_down_and_a_clean_link_back_up(pictures):
    sender = VideoSendSession(VideoCodec.H264, max_kbps=48)
    receiver = VideoReceiveSession()
    lossy = _run(sender, receiver, pictures[:40], reports=lambda t: LossReport(128, 20))
    assert sender.target_kbps < 20 and sender.rung.size <= 128 and sender.stats.rate_decreases >= 3
    assert lossy and sender.stats.opens >= 2  # a new size is a new encoder
    for i in range(100):
        sender.on_report(LossReport(0, 200), 2.0 + i * 0.25)
    assert sender.target_kbps == 48
    _run(sender, receiver, pictures[40:] * 4, t0=30.0, seq=10_000)  # 8 s: the ladder climbs a rung per hold
    assert sender.rung.size == 256

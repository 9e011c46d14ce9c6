"""The video mode in a call: the fallback when the receiver has no avatar of the sender, and a switch
from video to avatar mid-call, over real QUIC on loopback with the sample's real clip."""

import asyncio
import logging
from pathlib import Path

import pytest

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.capture.source import SourceSpec
from nerfconf.capture.video import probe, read_frames
from nerfconf.net import TransportConfig, connect, listen
from nerfconf.net.messages import CallMode, VideoCodec
from nerfconf.pipeline.call import CallSettings, run_call
from nerfconf.pipeline.media_gate import MediaGate
from nerfconf.pipeline.render_worker import RenderWorker
from nerfconf.pipeline.session import ModeControl, PeerPlan, run_peer
from nerfconf.video.settings import VideoSettings

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"
CLIP = SAMPLE / "demo_clip.mp4"


class Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def write(self, image) -> None:
        self.sizes.append(image.shape[0])

    def close(self) -> None:
        pass


def test_a_receiver_without_an_avatar_of_the_sender_gets_video(tmp_path, caplog):
    saved = tmp_path / "received.mp4"
    listener = CallSettings(listen=("127.0.0.1", 0), receive_video=True, seconds=4, window=False, save=saved,
                            resolution=64)

    async def pair():
        join: asyncio.Future = asyncio.get_running_loop().create_future()
        host = asyncio.create_task(run_call(listener, on_join=join.set_result))
        guest = CallSettings(join=await asyncio.wait_for(join, 30), own=SAMPLE, video=CLIP, seconds=4,
                             refine_pose=False)
        return await asyncio.gather(host, run_call(guest))

    with caplog.at_level(logging.WARNING, logger="nerfconf.pipeline.session"):
        host, guest = asyncio.run(pair())
    assert "no avatar of the other peer (--avatar-peer): showing them as video" in caplog.text
    video = host.video_receiver
    assert [(s.mode, s.codec) for s in host.peer_modes] == [(CallMode.VIDEO, VideoCodec.H264)]
    assert guest.sender.video_frames >= 30 and guest.sender.sent == 0  # nothing extracted or coded as parameters
    assert video.displayed >= 30 and video.session["lost"] == 0 and video.session["undecodable"] == 0
    assert 0 < guest.sender.video["kbps"] <= 40
    assert sum(1 for _ in read_frames(saved)) == video.displayed and probe(saved).width == 64


def test_a_call_switches_from_video_to_avatar_mid_call_and_shows_both(tmp_path):
    bundle = AvatarBundle.load(SAMPLE)
    recorder = Recorder()
    control = ModeControl()
    sender = PeerPlan(own=bundle, source=SourceSpec(video=CLIP, fps=20), seconds=7, refine_pose=False)
    receiver = PeerPlan(peer=bundle, receive_video=True, start_in=CallMode.VIDEO, sinks=[recorder], record=True,
                        video=VideoSettings(display_size=32), seconds=7)
    config = TransportConfig(identity_dir=tmp_path / "identity")

    async def call(worker):
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as client:
                peer = await asyncio.wait_for(server.accept(), 5)

                async def switch_later():
                    await asyncio.sleep(3.0)  # MediaPipe loads for ~1 s, then ~2 s of video
                    control.request(CallMode.AVATAR)

                switch = asyncio.create_task(switch_later())
                a, b = await asyncio.gather(run_peer(sender, client),
                                            run_peer(receiver, peer, worker=worker, control=control))
                await switch
                return a, b

    with RenderWorker(SAMPLE, resolution=16) as worker:
        sent, got = asyncio.run(call(worker))
    assert [s.mode for s in got.peer_modes] == [CallMode.VIDEO, CallMode.AVATAR]
    assert sent.sender.mode_switches == 2 and sent.sender.video_frames >= 10 and sent.sender.sent >= 10
    assert sent.sender.encoder["forced_i_frames"] + sent.sender.encoder["i_frames"] >= 1
    video_times = [p.t_display for p in got.video_shown]
    avatar_times = [s.t_display for s in got.shown if s.key >= 0]
    # a busy 2-core host renders few of the avatar's frames in the 4 s left; one is the point
    assert len(video_times) >= 10 and len(avatar_times) >= 3
    assert max(video_times) < min(avatar_times)  # the gate never let the two interleave
    # the sink saw the video at its display size, then the avatar at its render size
    assert recorder.sizes[0] == 32 and recorder.sizes[-1] == 16
    first_avatar = recorder.sizes.index(16)
    assert set(recorder.sizes[:first_avatar]) == {32} and set(recorder.sizes[first_avatar:]) == {16}


def test_asking_for_avatar_mode_without_an_avatar_is_refused():
    control = ModeControl()
    with pytest.raises(RuntimeError, match="not bound"):
        control.request(CallMode.VIDEO)
    control.bind(object(), MediaGate(CallMode.VIDEO), VideoSettings(), has_avatar=False)
    with pytest.raises(ValueError, match="no avatar of the other"):
        control.request(CallMode.AVATAR)

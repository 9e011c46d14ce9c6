"""The video mode over real QUIC on loopback: a send session on one peer, a receive session on the
other, with the transport's NACKs and the I-frame request between them."""

import asyncio
import time
from pathlib import Path

import cv2
import pytest

from nerfconf.capture.video import read_frames
from nerfconf.evaluate.metrics import psnr
from nerfconf.net import Feedback, TransportConfig, connect, listen
from nerfconf.net.messages import VideoCodec
from nerfconf.video.packets import parse
from nerfconf.video.receive import VideoReceiveSession
from nerfconf.video.send import VideoSendSession

CLIP = Path(__file__).resolve().parents[2] / "avatars" / "sample" / "demo_clip.mp4"


@pytest.fixture(scope="module")
def pictures():
    return [f.image for f in read_frames(CLIP, stop=40, size=128)]


def _small(image):
    return cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)



async def _call(tmp_path, pictures, codec, *, lose=lambda packet, first_time: False):
    """Sends the pictures at 20 fps; ``lose`` drops arrivals on the receiving side (a lossy last hop)."""
    config = TransportConfig(identity_dir=tmp_path / "identity")
    sender = VideoSendSession(codec, max_kbps=64)
    receiver = VideoReceiveSession()
    shown = []
    async with listen("127.0.0.1", 0, None, config) as server:
        async with connect(server.join_info, config) as client:
            peer = await asyncio.wait_for(server.accept(), 5)
            client.attach_encoder(sender)
            client.on_media_message(lambda msg: sender.on_report(msg.report, time.monotonic())
                                    if msg.report is not None else None)
            seen: set[int] = set()

            async def receive():
                while True:
                    packet = await peer.recv_video()
                    first = packet.seq not in seen
                    seen.add(packet.seq)
                    if lose(packet, first):
                        continue
                    for pic in receiver.on_packet(packet.seq, packet.payload, packet.t_arrival):
                        shown.append(pic)

            async def poll():
                while True:
                    await asyncio.sleep(0.01)
                    shown.extend(receiver.poll(time.monotonic()))
                    fb = receiver.feedback(time.monotonic())
                    if fb.video is not None:
                        peer.send_media_message(fb.video)
                    if fb.keyframe_request:
                        peer.send_feedback(Feedback(iframe_request=True))

            tasks = [asyncio.create_task(receive()), asyncio.create_task(poll())]
            for i, image in enumerate(pictures):
                t = time.monotonic()
                out = sender.encode(image, t)
                if out is not None:
                    for payload in out.payloads:
                        client.send_video(payload, t + 0.3)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            for task in tasks:
                task.cancel()
            stats = client.stats()
    sender.close()
    return sender, receiver, shown, stats


@pytest.mark.parametrize("codec", [VideoCodec.H264, VideoCodec.AV1])
def test_video_round_trips_over_loopback_quic(tmp_path, pictures, codec):
    sender, receiver, shown, stats = asyncio.run(_call(tmp_path, pictures, codec))
    assert sender.stats.frames == len(shown) >= len(pictures) - 2
    assert receiver.stats.lost == receiver.stats.keyframe_requests == 0
    assert stats.video_packets_sent == sender.stats.packets
    by_no = {p.frame_no: p for p in shown}
    assert min(psnr(_small(by_no[n].image), pictures[n]) for n in range(5, 20)) > 28


def test_a_lost_keyframe_is_recovered_through_a_keyframe_request(tmp_path, pictures):
    def lose(packet, first_time):
        return parse(packet.payload).frame_no == 0  # the first keyframe never arrives, resent or not

    sender, receiver, shown, _ = asyncio.run(_call(tmp_path, pictures, VideoCodec.H264, lose=lose))
    assert receiver.stats.keyframe_requests >= 1 and sender.stats.keyframe_requests >= 1
    assert sender.stats.keyframes >= 2
    assert shown and shown[0].keyframe and shown[0].frame_no > 0
    # frames after the new keyframe all show, and show the right picture
    assert [p.frame_no for p in shown] == list(range(shown[0].frame_no, shown[0].frame_no + len(shown)))
    assert psnr(_small(shown[-1].image), pictures[shown[-1].frame_no]) > 28


def test_a_lost_packet_is_resent_on_a_nack_without_a_keyframe(tmp_path, pictures):
    def lose(packet, first_time):
        return first_time and packet.seq == 10

    sender, receiver, shown, stats = asyncio.run(_call(tmp_path, pictures, VideoCodec.H264, lose=lose))
    assert stats.video_retransmissions >= 1
    assert receiver.stats.lost == 0 and sender.stats.keyframes == 1
    assert len(shown) == sender.stats.frames

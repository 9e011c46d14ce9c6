"""Video datagrams beside frame datagrams: telling them apart, NACKed resends, and the mode messages,
through two in-memory ``CallProtocol``s (``tests/net/test_protocol.py``'s wire and fake clock)."""

import asyncio

import pytest

from nerfconf.codec.frame import MAX_FRAME_BYTES, pack_datagram
from nerfconf.net import TransportConfig, connect, listen
from nerfconf.net.errors import ProtocolError
from nerfconf.net.messages import (
    CallMode,
    LossReport,
    ModeRequest,
    ModeSwitch,
    VideoCodec,
    VideoFeedback,
)
from nerfconf.net.protocol import FrameReceived, MediaMessageReceived, VideoReceived
from nerfconf.net.video_channel import (
    VIDEO_DATAGRAM,
    VideoHistory,
    is_video_datagram,
    pack_video,
    unpack_video,
)
from tests.net.helpers import frame
from tests.net.test_protocol import Wire, opened


def test_no_frame_datagram_starts_like_a_video_datagram():
    for n in range(1, MAX_FRAME_BYTES + 1):
        assert not is_video_datagram(pack_datagram([b"x" * n]))
    assert unpack_video(pack_video(65537, b"abc")) == (1, b"abc")
    for bad in (b"", bytes((VIDEO_DATAGRAM, 0, 1)), b"\x05abcd"):
        with pytest.raises(ProtocolError):
            unpack_video(bad)


def test_the_history_resends_only_what_can_still_arrive_and_stays_bounded():
    h = VideoHistory(capacity=4)
    seqs = [h.number(bytes((i,)), deadline=10.0 + i)[0] for i in range(6)]
    assert seqs == list(range(6))
    assert [d for d, _ in h.retransmissions((0, 1, 2, 5, 5), now=12.5)] == [pack_video(5, b"\x05")]
    assert len(h._sent) == 4
    # a peer that keeps asking for the same packet gets it twice in all, not once per NACK
    assert len(h.retransmissions((4,), now=0.0)) == len(h.retransmissions((4,), now=0.0)) == 1
    assert h.retransmissions((4,), now=0.0) == []


def test_video_datagrams_arrive_numbered_beside_frames_in_either_mode():
    for mode in ("datagram", "stream"):
        wire = opened(TransportConfig(mode=mode))
        for i in range(5):
            assert wire.client.send_video(b"v" * 900, None, wire.now) == i
            wire.client.send_frame(frame(i), None, wire.now)
            wire.advance(0.05)
        got = [e.packet for e in wire.of("server", VideoReceived)]
        assert [p.seq for p in got] == list(range(5)) and {p.payload for p in got} == {b"v" * 900}
        assert len(wire.of("server", FrameReceived)) == 5
        s = wire.server.stats()
        assert (s.video_packets_received, s.video_bytes_received, s.malformed) == (5, 4500, 0)


def test_a_nacked_video_packet_is_resent_under_its_number_before_its_deadline_only():
    lose = {"armed": False}

    def drop(direction, data):
        # the first packet big enough to carry our video payload, once
        if direction == "up" and lose["armed"] and len(data) > 700:
            lose["armed"] = False
            return True
        return False

    wire = Wire(drop=drop)
    wire.advance(0.01)
    lose["armed"] = True  # after the handshake, whose packets are as big
    wire.client.send_video(b"a" * 800, wire.now + 0.3, wire.now)
    wire.advance(0.02)
    assert wire.of("server", VideoReceived) == []
    wire.server.send_media_message(VideoFeedback(nacks=(0,)), wire.now)
    wire.advance(0.02)
    got = wire.of("server", VideoReceived)
    assert [(e.packet.seq, e.packet.payload) for e in got] == [(0, b"a" * 800)]
    assert wire.client.stats().video_retransmissions == 1
    wire.advance(0.5)  # past its deadline: not resent again
    wire.server.send_media_message(VideoFeedback(nacks=(0,)), wire.now)
    wire.advance(0.02)
    assert wire.client.stats().video_retransmissions == 1 and wire.client.stats().video_nacks_received == 2


def test_mode_messages_and_video_feedback_reach_the_owner():
    wire = opened()
    msgs = [ModeRequest(CallMode.VIDEO, frozenset({VideoCodec.H264, VideoCodec.AV1}), 48),
            ModeSwitch(CallMode.VIDEO, VideoCodec.AV1, 7), VideoFeedback((), LossReport(30, 25))]
    for m in msgs:
        wire.server.send_media_message(m, wire.now)
    wire.advance(0.02)
    assert [e.message for e in wire.of("client", MediaMessageReceived)] == msgs
    with pytest.raises(TypeError):
        wire.server.send_media_message(frame(1), wire.now)


def test_a_media_message_that_comes_before_anyone_listens_is_handed_over_later(tmp_path):
    config = TransportConfig(identity_dir=tmp_path / "identity")
    request = ModeRequest(CallMode.VIDEO, frozenset({VideoCodec.H264}), 24)

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as client:
                peer = await asyncio.wait_for(server.accept(), 5)
                peer.send_media_message(request)
                await asyncio.sleep(0.2)  # it has arrived; nobody listens yet
                got = []
                client.on_media_message(got.append)
                peer.send_media_message(ModeSwitch(CallMode.AVATAR))
                await asyncio.sleep(0.2)
                return got

    assert asyncio.run(main()) == [request, ModeSwitch(CallMode.AVATAR)]

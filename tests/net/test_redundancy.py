import random

from nerfconf.codec.frame import unpack_datagram
from nerfconf.net.redundancy import MAX_DATAGRAM_PAYLOAD, FrameReassembler, RedundantPacker
from tests.net.helpers import frame


def _send(packer, seq, now=0.0, deadline=1.0, body_len=12):
    return packer.pack(seq, frame(seq, body_len).data, deadline, now)


def test_each_datagram_carries_the_frame_and_previous_copies_newest_first():
    packer = RedundantPacker(copies=3)
    datagrams = [_send(packer, s) for s in range(4)]
    assert unpack_datagram(datagrams[0]) == [frame(0).data]
    assert unpack_datagram(datagrams[3]) == [frame(3).data, frame(2).data, frame(1).data]


def test_copies_past_their_deadline_are_left_out():
    packer = RedundantPacker(copies=3)
    packer.pack(0, frame(0).data, deadline=0.1, now=0.0)
    packer.pack(1, frame(1).data, deadline=1.0, now=0.05)
    assert unpack_datagram(packer.pack(2, frame(2).data, deadline=1.0, now=0.2)) == [frame(2).data, frame(1).data]
    assert packer.copies_skipped_stale == 1


def test_datagram_stays_under_the_cap_with_big_frames():
    packer = RedundantPacker(copies=3)
    for s in range(5):
        d = _send(packer, s, body_len=600)
        assert len(d) <= MAX_DATAGRAM_PAYLOAD
        assert unpack_datagram(d)[0] == frame(s, 600).data


def test_sequence_wrap_keeps_copies():
    packer = RedundantPacker(copies=3)
    for s in (65534, 65535):
        _send(packer, s)
    assert len(unpack_datagram(_send(packer, 0))) == 3


def test_receiver_rebuilds_lost_frames_and_delivers_each_once_in_order():
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    delivered = []
    for s in range(10):
        d = _send(packer, s)
        if s in (3, 4):  # two consecutive datagrams lost: copies in datagram 5 bring them back
            continue
        delivered += [seq for seq, _ in rx.receive_datagram(d).frames]
    assert delivered == list(range(10))
    assert rx.stats.recovered_from_copies == 2
    assert rx.stats.duplicates > 0


def test_frames_no_copy_can_bring_are_nacked_once_and_retransmitted():
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    nacks = []
    for s in range(10):
        d = _send(packer, s)
        if s in (3, 4, 5):  # three in a row: frame 3 has no copy left
            continue
        nacks += rx.receive_datagram(d).nacks
    assert nacks == [3]
    retransmission = packer.retransmission((3,), now=0.0)
    assert [seq for seq, _ in rx.receive_datagram(retransmission).frames] == [3]
    assert packer.retransmission((3,), now=5.0) is None  # past its deadline: not worth sending


def test_garbage_and_replays_are_counted_not_delivered():
    rx = FrameReassembler()
    rng = random.Random(1)
    for _ in range(500):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        for seq, payload in rx.receive_datagram(data).frames:
            assert isinstance(seq, int) and payload  # a lucky parse is still a well-formed frame
    assert rx.stats.malformed_datagrams + rx.stats.malformed_frames > 400
    packer = RedundantPacker(copies=1)
    d = _send(packer, 1000)
    assert len(rx.receive_datagram(d).frames) == 1
    assert rx.receive_datagram(d).frames == []


def test_memory_stays_bounded_under_a_sequence_flood():
    rx = FrameReassembler(window=64)
    for s in range(0, 200_000, 7):
        rx.receive_frames([frame(s).data])
    assert len(rx._seen) <= 2 * 64 + 1

import random

from nerfconf.codec.frame import unpack_datagram
from nerfconf.net.redundancy import (
    LOSS_HOLD_S,
    MAX_DATAGRAM_PAYLOAD,
    START_HOLD_S,
    FrameReassembler,
    RedundancyPolicy,
    RedundantPacker,
)
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


def test_copies_come_only_while_the_peer_reports_loss():
    policy = RedundancyPolicy(3)
    policy.opened(100.0)
    assert policy.copies_at(100.0) == 3  # a call starts with copies: its first frames have no NACK
    assert policy.copies_at(100.0 + START_HOLD_S) == 1
    policy.loss_reported(0, 105.0)
    assert policy.copies_at(105.0) == 1
    policy.loss_reported(2, 106.0)
    assert policy.copies_at(106.0) == 3 and policy.copies_at(106.0 + LOSS_HOLD_S - 0.01) == 3
    policy.loss_reported(1, 110.0)  # another loss extends the hold
    assert policy.copies_at(106.0 + LOSS_HOLD_S + 1) == 3 and policy.copies_at(110.0 + LOSS_HOLD_S) == 1
    fixed = RedundancyPolicy(3, adaptive=False)
    assert fixed.copies_at(0.0) == 3


def test_the_packer_sends_as_many_copies_as_asked_up_to_its_own():
    packer = RedundantPacker(copies=3)
    for s in range(3):
        _send(packer, s)
    assert unpack_datagram(packer.pack(3, frame(3).data, 1.0, 0.0, copies=1)) == [frame(3).data]
    assert len(unpack_datagram(packer.pack(4, frame(4).data, 1.0, 0.0, copies=9))) == 3


def test_a_nacked_frame_is_resent_and_rides_in_the_next_datagrams():
    packer = RedundantPacker(copies=3)
    for s in range(6):
        packer.pack(s, frame(s).data, 1.0, 0.0, copies=1)
    assert unpack_datagram(packer.retransmission((2,), now=0.3)) == [frame(2).data]
    nexts = [unpack_datagram(packer.pack(s, frame(s).data, 1.0, 0.3, copies=1)) for s in (6, 7, 8)]
    # copies - 1 more times, after the new frame; then no more
    assert nexts == [[frame(6).data, frame(2).data], [frame(7).data, frame(2).data], [frame(8).data]]
    packer.retransmission((3,), now=0.3)
    assert unpack_datagram(packer.pack(9, frame(9).data, 2.0, 1.5, copies=1)) == [frame(9).data]  # 3 is stale


def test_the_receiver_counts_lost_datagrams_even_when_copies_bring_their_frames():
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    datagrams = [_send(packer, s) for s in range(8)]
    for s in (0, 1, 3, 6, 7):  # 2, 4 and 5 lost; copies bring all three
        rx.receive_datagram(datagrams[s])
    assert rx.take_losses() == 3 and rx.take_losses() == 0
    assert rx.stats.frames_new == 8 and rx.stats.datagrams_lost == 3
    # a retransmission (an older frame first) counts nothing
    rx.receive_datagram(packer.retransmission((5,), now=0.0))
    assert rx.take_losses() == 0


def test_without_copies_a_missing_frame_is_nacked_at_the_next_datagram():
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    datagrams = [packer.pack(s, frame(s).data, 1.0, 0.0, copies=1) for s in range(5)]
    assert rx.receive_datagram(datagrams[0]).nacks == () and rx.receive_datagram(datagrams[1]).nacks == ()
    assert rx.receive_datagram(datagrams[3]).nacks == (2,)  # the sender sends no copies now: 2 cannot come
    # with copies, 2 and 3 lost: 4 brings both, nothing to NACK
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    datagrams = [_send(packer, s) for s in range(5)]
    assert [rx.receive_datagram(datagrams[s]).nacks for s in (0, 1, 4)] == [(), (), ()]
    assert rx.stats.frames_new == 5


def test_an_ack_rides_in_front_of_the_frames():
    packer, rx = RedundantPacker(copies=3), FrameReassembler(copies=3)
    d = packer.pack(0, frame(0).data, 1.0, 0.0, ack=65535)
    assert len(d) == len(RedundantPacker(copies=3).pack(0, frame(0).data, 1.0, 0.0)) + 3
    got = rx.receive_datagram(d)
    assert got.ack == 65535 and got.frames == [(0, frame(0).data)]
    assert rx.receive_datagram(d[:3]).ack is None and rx.stats.malformed_datagrams == 1  # an ack with no frames

from nerfconf.video.losses import MAX_GAP, LossTracker


def test_a_gap_is_nacked_at_once_and_once_more_later():
    t = LossTracker(retry=0.06, max_age=0.2)
    assert t.on_packet(10, 100, 0.0) == ()
    assert t.on_packet(13, 100, 0.01) == (11, 12)
    assert t.poll(0.05) == ()
    assert t.on_packet(11, 100, 0.06) == ()  # recovered
    assert t.poll(0.08) == (12,)
    assert t.poll(0.15) == ()  # asked twice: enough
    assert t.stats.recovered == 1 and t.stats.nacked == 3


def test_nothing_is_asked_for_past_its_age():
    t = LossTracker(retry=0.06, max_age=0.1)
    t.on_packet(0, 100, 0.0)
    t.on_packet(2, 100, 0.0)
    assert t.poll(0.2) == ()


def test_sequence_numbers_wrap_and_a_huge_jump_asks_for_its_newest_packets_only():
    t = LossTracker()
    t.on_packet(65535, 10, 0.0)
    assert t.on_packet(1, 10, 0.0) == (0,)
    nacks = t.on_packet(5000, 10, 0.0)
    assert len(nacks) == MAX_GAP and nacks[-1] == 4999


def test_the_report_counts_the_packets_lost_in_its_interval():
    t = LossTracker()
    for seq in range(100):
        if seq % 10 != 3:
            t.on_packet(seq, 125, seq * 0.01)
    report = t.report(1.0)
    assert abs(report.loss - 0.10) < 0.01
    assert 80 <= report.received_kbps <= 95  # 90 x 125 B in ~1 s
    for seq in range(100, 200):
        t.on_packet(seq, 125, 1.0 + (seq - 100) * 0.01)
    assert t.report(2.0).lost_256 == 0
    t.on_packet(150, 125, 2.0)  # a duplicate counts once
    assert t.stats.duplicates == 1

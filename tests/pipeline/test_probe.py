from nerfconf.pipeline.probe import STAMP_WINDOW, StampLog, module_latencies


def test_module_latencies_are_medians_of_stamp_differences():
    log = StampLog()
    for seq in range(5):
        base = 10.0 + seq
        for name, dt in (("capture", 0), ("extract_in", 0.001), ("extract_out", 0.004), ("encode_in", 0.004),
                         ("encode_out", 0.005), ("receive", 0.015 + 0.001 * seq), ("decode_out", 0.0152)):
            log.mark(seq, name, base + dt)
        log.mark(seq, "display", base + 0.1)
    rows = {m.module: m for m in module_latencies(log.rows())}
    assert abs(rows["extract"].median_ms - 3.0) < 1e-6
    assert abs(rows["transport"].median_ms - 12.0) < 1e-6
    assert abs(rows["transport"].max_ms - 14.0) < 1e-6
    assert abs(rows["end to end"].median_ms - 100.0) < 1e-6
    assert "generate" not in rows  # no frame carried both of its stamps
    assert rows["extract"].frames == 5


def test_a_stamp_is_kept_from_its_first_mark_and_the_log_keeps_the_newest_frames():
    log = StampLog(limit=2)
    log.mark(1, "receive", 1.0)
    log.mark(1, "receive", 2.0)  # a duplicate copy arriving later does not move it
    log.mark(2, "receive", 1.0)
    assert log.rows()[1]["receive"] == 1.0
    log.mark(3, "receive", 1.0)
    log.mark(2, "display", 1.5)
    assert log.rows() == {2: {"receive": 1.0, "display": 1.5}, 3: {"receive": 1.0}}


def test_a_long_call_keeps_the_log_at_its_window():
    log = StampLog()
    for seq in range(STAMP_WINDOW * 3):
        log.mark(seq % 65536, "receive", float(seq))
    rows = log.rows()
    assert len(rows) == STAMP_WINDOW and min(rows) == 2 * STAMP_WINDOW

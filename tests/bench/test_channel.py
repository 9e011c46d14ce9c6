from nerfconf.bench.channel import run_channel_sim


def test_copies_and_anchor_prediction_beat_the_papers_scheme_under_loss():
    paper, anchor, copies = run_channel_sim(loss=0.1, seconds=10, seed=2)
    assert paper.decoded < anchor.decoded < copies.decoded
    assert copies.decoded >= 0.97 * copies.frames
    assert copies.recovered_from_copies > 0
    for r in (paper, anchor, copies):
        assert r.max_error_steps <= 0.5 + 1e-9  # what decodes is exact up to rounding

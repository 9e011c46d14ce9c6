import numpy as np

from nerfconf.playout import PlayoutBuffer, PlayoutConfig
from nerfconf.types import FaceParams

FPS = 20.0


def _p(i, x=None):
    x = float(i) if x is None else x
    return FaceParams(np.array([x]), np.radians([x, 0.0, 0.0]), None, True, i / FPS, i)


def _drive(buffer, arrivals, until):
    """Pushes (t, params) arrivals and pops every slot at its due time, as a display loop would."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    shown, k = [], 0
    while True:
        due = buffer.next_due()
        if due is not None and (k == len(arrivals) or due <= arrivals[k][0]):
            if due > until:
                return shown
            shown.append(buffer.pop(due))
        elif k < len(arrivals):
            buffer.push(arrivals[k][1], arrivals[k][0])
            k += 1
        else:
            return shown


def test_paper_schedule_base_plus_index_over_fps():
    b = PlayoutBuffer(PlayoutConfig(k_frames=2, adaptive=False))
    b.push(_p(5), 1.0)
    assert b.next_due() == 1.0 + 2 / FPS
    assert b.pop(1.0 + 2 / FPS - 1e-6) is None
    out = b.pop(1.1)
    assert out.index == 5 and out.kind == "shown"
    assert b.next_due() == 1.0 + 3 / FPS


def test_missing_frame_with_a_later_one_present_is_interpolated():
    b = PlayoutBuffer(PlayoutConfig(k_frames=3, adaptive=False))
    arrivals = [(i / FPS, _p(i)) for i in range(10) if i != 4]
    shown = _drive(b, arrivals, until=9 / FPS + 3 / FPS)
    frame4 = next(f for f in shown if f.index == 4)
    assert frame4.kind == "interpolated"
    np.testing.assert_allclose(frame4.params.expression, [4.0])
    assert b.stats.shown == 9 and b.stats.interpolated == 1


def test_missing_frame_without_a_later_one_is_extrapolated_and_late_frame_not_shown():
    b = PlayoutBuffer(PlayoutConfig(k_frames=1, adaptive=False))
    arrivals = [(i / FPS, _p(i)) for i in range(6)] + [(7 / FPS + 0.02, _p(6))] + [(i / FPS, _p(i)) for i in (7, 8)]
    shown = _drive(b, arrivals, until=9 / FPS)
    frame6 = next(f for f in shown if f.index == 6)
    assert frame6.kind == "extrapolated"
    assert b.stats.late == 1 and b.stats.concealed == 1
    assert [f.index for f in shown] == list(range(9))


def test_adaptive_delay_grows_with_jitter_and_cuts_concealment():
    rng = np.random.default_rng(0)
    jitter = np.abs(rng.normal(0, 0.04, 400))
    arrivals = [(i / FPS + 0.01 + jitter[i], _p(i)) for i in range(400)]
    fixed = PlayoutBuffer(PlayoutConfig(k_frames=1, adaptive=False))
    adaptive = PlayoutBuffer(PlayoutConfig(k_frames=1))
    _drive(fixed, arrivals, until=400 / FPS)
    _drive(adaptive, arrivals, until=400 / FPS)
    assert adaptive.stats.concealed < fixed.stats.concealed / 3
    assert 0.05 < adaptive.stats.delay < 0.25


def test_skipped_slots_count_as_dropped_and_a_jump_restarts_the_timeline():
    b = PlayoutBuffer(PlayoutConfig(k_frames=0, adaptive=False))
    for i in range(5):
        b.push(_p(i), 0.0)
    out = b.pop(3 / FPS + 0.001)  # the display loop stalled: slots 0..2 were missed
    assert out.index == 3 and b.stats.dropped == 3
    assert b.push(_p(5000), 1.0) == "reset"
    assert b.next_due() == 1.0 and len(b) == 1


def test_memory_is_bounded_by_capacity():
    b = PlayoutBuffer(PlayoutConfig(capacity=32))
    for i in range(0, 10_000, 3):
        b.push(_p(i), i / FPS)
    assert len(b) <= 32


def test_next_ready_says_whether_the_next_slot_can_start_early():
    buf = PlayoutBuffer(PlayoutConfig(fps=20.0, k_frames=2, adaptive=False))
    assert not buf.next_ready()  # nothing yet
    buf.push(_p(0), 1.0)
    assert buf.next_ready()
    out = buf.pop(buf.next_due())  # a receiver may pop at the due time, before the clock reaches it
    assert out.kind == "shown" and out.index == 0
    assert not buf.next_ready()  # frame 1 has not arrived
    buf.push(_p(1), 1.06)
    assert buf.next_ready()


def test_a_sender_that_fell_a_second_behind_is_shown_again_within_two_seconds():
    # 100 frames on time, then the sender stalls: every later frame arrives 1 s behind its number,
    # beyond the largest delay the buffer adds above the transit floor it measured on time
    arrivals = [(i / FPS + 0.01, _p(i)) for i in range(100)]
    arrivals += [(i / FPS + 1.01, _p(i)) for i in range(100, 300)]
    b = PlayoutBuffer(PlayoutConfig(k_frames=1))
    shown = _drive(b, arrivals, until=300 / FPS + 1.5)
    assert b.stats.resyncs >= 1
    back = [f.index for f in shown if f.kind == "shown" and f.index >= 100]
    assert back and back[0] < 100 + 2 * FPS, back[:3]
    assert all(f.kind == "shown" for f in shown if back[0] <= f.index < 300)


def test_a_few_late_frames_do_not_drop_the_measured_floor():
    arrivals = [(i / FPS + 0.01 + (0.3 if 50 <= i < 55 else 0.0), _p(i)) for i in range(200)]
    b = PlayoutBuffer(PlayoutConfig(k_frames=1))
    _drive(b, arrivals, until=200 / FPS + 0.5)
    assert b.stats.late >= 1 and b.stats.resyncs == 0

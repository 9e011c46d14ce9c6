from pathlib import Path

import numpy as np
import pytest

from nerfconf.pipeline.render_worker import RenderJob, RenderWorker, RenderWorkerError
from nerfconf.tracks import ParamTrack

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_the_render_process_renders_a_head_from_parameters():
    track = ParamTrack.load(SAMPLE / "demo_track.npz")
    p = track.params(0)
    with RenderWorker(SAMPLE, resolution=32) as worker:
        worker.submit(RenderJob(7, 0, p.expression[:46], p.rotation, p.translation))
        result = worker.result(timeout=120)
    assert result is not None and result.key == 7
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8
    # a head in the middle, white at the corners
    assert result.image[12:20, 12:20].mean() < 200
    assert result.image[0, 0].min() > 240
    assert result.t_out >= result.t_in


def test_a_bad_bundle_fails_at_start_with_the_reason(tmp_path):
    worker = RenderWorker(tmp_path, resolution=16)
    with pytest.raises(RenderWorkerError, match="not an avatar bundle"):
        worker.start(timeout=120)


def test_a_render_process_that_runs_late_renders_smaller_and_scales_up():
    track = ParamTrack.load(SAMPLE / "demo_track.npz")
    p = track.params(0)
    # a frame rate no host can render at: every frame is late, so the process steps down the ladder
    with RenderWorker(SAMPLE, resolution=32, fps=1e6) as worker:
        assert "down to 16 px" in worker.renderer_name
        sizes = []
        for i in range(12):
            worker.submit(RenderJob(i, i, p.expression[:46], p.rotation, p.translation))
            result = worker.result(timeout=120)
            assert result is not None and result.image.shape == (32, 32, 3)
            sizes.append(result.resolution)
    assert sizes[0] == 32 and sizes[-1] == 16, sizes


def test_a_fixed_size_render_process_never_changes_size():
    track = ParamTrack.load(SAMPLE / "demo_track.npz")
    p = track.params(0)
    with RenderWorker(SAMPLE, resolution=32, fps=1e6, adaptive=False) as worker:
        for i in range(10):
            worker.submit(RenderJob(i, i, p.expression[:46], p.rotation, p.translation))
            result = worker.result(timeout=120)
            assert result is not None and result.resolution == 32


def test_a_call_that_also_sends_leaves_the_sender_a_core():
    import os

    from nerfconf.pipeline.render_worker import call_render_threads

    cores = len(os.sched_getaffinity(0))
    assert call_render_threads(None, sending=True) == max(1, cores - 1)
    assert call_render_threads(None, sending=False) is None  # every core
    assert call_render_threads(3, sending=True) == 3

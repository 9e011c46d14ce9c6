from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.bench.latency import modules_alone
from nerfconf.pipeline.probe import PAPER_MS

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_every_module_is_timed_alone_on_real_frames():
    bundle = AvatarBundle.load(SAMPLE)
    k = bundle.face_model.n_expression
    rendered = []
    out = modules_alone(bundle, SAMPLE / "demo_clip.mp4", frames=6, render=lambda p: rendered.append(p))
    assert set(out) == {"extract", "encode", "decode", "generate"}
    assert all(np.isfinite(v) and v > 0 for v in out.values())
    # the renderer saw parameters extracted from the clip, with a face in them
    assert rendered and all(p.face_found and p.expression.shape == (k,) for p in rendered)
    assert set(PAPER_MS) >= set(out)

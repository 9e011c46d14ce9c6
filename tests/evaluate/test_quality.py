"""``nerfconf eval quality`` on the sample avatar's own held-out frames."""

from pathlib import Path

import numpy as np

from nerfconf.evaluate.quality import evaluate_quality
from ..conftest import shared_data

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_the_fast_renderer_scores_as_the_reference_does(tmp_path):
    video = shared_data("obama.mp4")
    ref = evaluate_quality(SAMPLE, video, test_frames=3, strip=tmp_path / "strip.png")
    fast = evaluate_quality(SAMPLE, video, test_frames=3, fast=True)
    assert ref["frames"] == fast["frames"] == 3 and ref["first_frame"] == fast["first_frame"]
    assert "reference" in ref["renderer"] and "fast" in fast["renderer"]
    # the fast path leaves out faint haze the reference draws over the white background, which
    # SSIM notices more than PSNR does
    np.testing.assert_allclose(fast["full"]["psnr"]["per_frame"], ref["full"]["psnr"]["per_frame"], rtol=0.01)
    np.testing.assert_allclose(fast["full"]["ssim"]["per_frame"], ref["full"]["ssim"]["per_frame"], atol=0.02)
    assert 20 < ref["full"]["psnr"]["mean"] < 40  # a head, not a blank frame
    assert (tmp_path / "strip.png").stat().st_size > 0

"""``nerfconf eval quality`` on the sample avatar's own held-out frames."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.evaluate.quality import (
    PoseRefinement,
    QualityResult,
    evaluate_quality,
    held_out_frames,
    refine_poses,
)
from nerfconf.report import to_json

from ..conftest import shared_data

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_the_fast_renderer_scores_as_the_reference_does(tmp_path):
    video = shared_data("obama.mp4")
    ref = evaluate_quality(SAMPLE, video, test_frames=3, strip=tmp_path / "strip.png")
    fast = evaluate_quality(SAMPLE, video, test_frames=3, fast=True)
    assert ref.frames == fast.frames == 3 and ref.first_frame == fast.first_frame
    assert "reference" in ref.renderer and "fast" in fast.renderer
    # the fast path leaves out faint haze the reference draws over the white background, which
    # SSIM notices more than PSNR does
    np.testing.assert_allclose(fast.full.psnr.per_frame, ref.full.psnr.per_frame, rtol=0.01)
    np.testing.assert_allclose(fast.full.ssim.per_frame, ref.full.ssim.per_frame, atol=0.02)
    assert 20 < ref.full.psnr.mean < 40  # a head, not a blank frame
    assert ref.strip == tmp_path / "strip.png" and ref.strip.stat().st_size > 0
    assert fast.strip is None
    assert_shaped_as_the_committed_result(ref)


def test_a_smaller_render_scaled_up_scores_a_little_below_the_full_size(tmp_path):
    video = shared_data("obama.mp4")
    full = evaluate_quality(SAMPLE, video, test_frames=3, fast=True, refine_pose=False)
    half = evaluate_quality(SAMPLE, video, test_frames=3, fast=True, render_resolution=128, refine_pose=False)
    assert "128 px, scaled up" in half.renderer and half.resolution == full.resolution
    # the same frames at the same size, softer: PSNR close (blur even lifts it a little on a noisy
    # avatar), and LPIPS, which sees the lost detail, worse
    assert abs(half.full.psnr.mean - full.full.psnr.mean) < 3.0
    assert half.full.lpips.mean > full.full.lpips.mean + 0.005
    with pytest.raises(ValueError, match="fast renderer"):
        evaluate_quality(SAMPLE, video, test_frames=3, render_resolution=128)


def assert_shaped_as_the_committed_result(result: QualityResult) -> None:
    """The JSON has the keys of the sample's committed eval_quality.json, at every level."""
    committed = json.loads((SAMPLE / "eval_quality.json").read_text())
    out = json.loads(to_json(result))

    def keys(d: dict) -> dict:
        return {k: keys(v) if isinstance(v, dict) else None for k, v in d.items()}

    assert keys(out) == keys(committed)
    assert list(out) == list(committed)
    assert out["full"]["psnr"]["per_frame"] == result.full.psnr.per_frame
    assert out["pose_refinement"]["every"] == result.pose_refinement.every
    assert out["strip"] == str(result.strip)


def test_the_reference_uses_the_head_mask_the_avatar_was_trained_on(tmp_path):
    video = shared_data("obama.mp4")
    tight = shutil.copytree(SAMPLE, tmp_path / "tight")
    wide = shutil.copytree(SAMPLE, tmp_path / "wide")
    meta = json.loads((tight / "face_model.json").read_text())
    assert meta["neck_margin"] == 0.1  # the sample records the margin it was trained with
    (tight / "face_model.json").write_text(json.dumps({**meta, "neck_margin": 0.0}))
    (wide / "face_model.json").write_text(json.dumps({**meta, "neck_margin": 0.5}))
    usual = held_out_frames(AvatarBundle.load(wide), video, 2)
    cut = held_out_frames(AvatarBundle.load(tight), video, 2)
    r = usual.masks.shape[1]
    assert cut.masks[:, r * 3 // 4 :].sum() < 0.5 * usual.masks[:, r * 3 // 4 :].sum()
    np.testing.assert_array_equal(cut.references[:, : r // 2], usual.references[:, : r // 2])
    (tight / "face_model.json").write_text(json.dumps({**meta, "neck_margin": [0.1]}))
    with pytest.raises(ValueError, match=r"neck_margin must be a number of face heights in \[0, 2\], got \[0.1\]"):
        AvatarBundle.load(tight)


def test_held_out_frames_with_the_training_frames_tracked_before_them():
    video, bundle = shared_data("obama.mp4"), AvatarBundle.load(SAMPLE)
    alone = held_out_frames(bundle, video, 2)
    held = held_out_frames(bundle, video, 2, with_training=True)
    # The scored frames do not depend on what ran before them; the parameters do (the smoothing runs on).
    np.testing.assert_array_equal(held.references, alone.references)
    np.testing.assert_array_equal(held.indices, alone.indices)
    assert len(alone.train_params) == 0
    assert held.train_params.shape == (held.indices[0], held.params.shape[1])  # a face in every frame
    assert np.all(np.isfinite(held.train_params))
    # Continuous with the held-out frames: the last training frame's pose is next to the first held-out one.
    k = bundle.face_model.n_expression
    assert np.abs(held.train_params[-1, k:k + 3] - held.params[0, k:k + 3]).max() < 0.05


def test_refined_poses_score_better_than_the_trackers():
    video = shared_data("obama.mp4")
    plain = evaluate_quality(SAMPLE, video, test_frames=6, fast=True, refine_pose=False)
    refined = evaluate_quality(SAMPLE, video, test_frames=6, fast=True, refine_every=1)  # refined by default
    assert plain.pose_refinement is None and json.loads(to_json(plain))["pose_refinement"] is None
    info = refined.pose_refinement
    assert isinstance(info, PoseRefinement)
    assert info.resolution == 64 and info.iterations == 1 and info.every == 1 and info.ms_median > 0
    assert 0 < info.rotation_deg_median < 6 and info.translation_mm_median < 30
    gain = np.subtract(refined.full.psnr.per_frame, plain.full.psnr.per_frame)
    # every frame at least holds its score, and the held-out frames gain on average
    assert gain.min() > -0.2 and gain.mean() > 0.8, gain


def test_refine_poses_moves_an_offset_pose_back_onto_its_frame():
    """The sender's refinement as eval quality and eval rd apply it: frames rendered at known poses,
    the poses handed over off by a degree of yaw and 4 mm; the refined ones land nearer the truth."""
    from nerfconf.avatar.bundle import HELDOUT_TRACK
    from nerfconf.avatar.rendering.fast import Renderer
    from nerfconf.tracks import ParamTrack

    bundle = AvatarBundle.load(SAMPLE)
    track = ParamTrack.load(SAMPLE / HELDOUT_TRACK)
    k = track.layout.n_expression
    truth = track.values[20:26].copy()
    renderer = Renderer(bundle)
    targets = np.stack([renderer.render(track.params(20 + i)).image for i in range(len(truth))])
    params = truth.copy()
    params[:, k] += np.radians(1.0)
    params[:, k + 3] += 0.004
    before = np.abs(params[:, k : k + 6] - truth[:, k : k + 6])
    info = refine_poses(bundle, params, targets, np.arange(len(truth)), every=1)
    after = np.abs(params[:, k : k + 6] - truth[:, k : k + 6])
    assert after[:, 0].mean() < 0.5 * before[:, 0].mean() and after[:, 3].mean() < 0.5 * before[:, 3].mean()
    np.testing.assert_array_equal(params[:, :k], truth[:, :k])  # expressions are not touched
    assert info.every == 1 and info.ms_median > 0

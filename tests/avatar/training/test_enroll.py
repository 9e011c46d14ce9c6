"""``enroll`` end to end on a short real clip, at a tiny resolution and a few iterations."""

import json
import shutil

import numpy as np
import pytest

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.training.dataset import AvatarData
from nerfconf.avatar.training.enroll import EnrollConfig, claim_work, enroll
from nerfconf.codec.quantize import Bounds

from ...conftest import shared_data


def test_enroll_writes_a_bundle_and_resumes(tmp_path):
    video, out = shared_data("short_1.mp4"), tmp_path / "avatar"
    config = EnrollConfig(resolution=48, test_frames=20, n_expression=6, log2_table=10, iterations=20,
                          sh_degree=2, zero_phase=True, pose_alignment=True)
    bundle = enroll(video, out, config, progress=False)
    loaded = AvatarBundle.load(out)
    assert loaded.resolution == 48 and loaded.metadata["training"]["iterations"] == 20
    # Blend weights are the coefficients in units of their spread over the training frames.
    data = AvatarData.load(out / ".work" / "frames.npz")
    spread = data.expressions[data.train_indices].std(axis=0)
    assert np.allclose(loaded.field.config.expression_scale, spread, rtol=1e-3)
    assert bundle.field.config == loaded.field.config
    assert loaded.field.config.sh_degree == 2  # the enrollment's view degree reaches the bundle
    assert loaded.face_model.metadata["training_smoothing"] == "zero-phase"
    # The codec's bounds hold the sender's parameters of the training frames, not the smoothed ones trained on,
    # translation included: the receiver puts the head where the sender's is.
    assert loaded.codec.layout.translation and loaded.codec.layout.dims == 6 + 6
    sent = data.sender_params(data.train_indices)
    expected = Bounds.from_data(sent)
    np.testing.assert_allclose(loaded.codec.bounds.lo, expected.lo, atol=1e-5)
    np.testing.assert_allclose(loaded.codec.bounds.hi, expected.hi, atol=1e-5)

    # The training poses were aligned through the avatar twice, and what was found is kept.
    passes = loaded.metadata["training"]["alignment_passes"]
    assert [p["iteration"] for p in passes] == [4, 9]
    poses = np.load(out / ".work" / "training_poses.npz")
    assert poses["corrections"].shape == (len(data.images), 6) and np.isfinite(poses["corrections"]).all()
    assert not poses["corrections"][~data.face_found].any()
    assert loaded.metadata["training"]["heldout_psnr"] == []  # 20 iterations: no reading is due

    # Run again with more iterations: it resumes from the checkpoint instead of starting over.
    again = enroll(video, out, EnrollConfig(**{**config.__dict__, "iterations": 30}), progress=False)
    assert again.metadata["training"]["iterations"] == 30
    with pytest.raises(ValueError, match="other settings"):
        enroll(video, out, EnrollConfig(**{**config.__dict__, "resolution": 64}), progress=False)


def test_a_resume_is_keyed_on_the_videos_content_not_its_path(tmp_path):
    video, out = tmp_path / "me.mp4", tmp_path / "avatar"
    shutil.copy(shared_data("short_1.mp4"), video)
    config = EnrollConfig(resolution=48, test_frames=20)
    claim_work(out / ".work", video, config)  # as an enrollment interrupted after it began
    # the same clip under another name resumes: it is the same frames
    moved = tmp_path / "moved.mp4"
    shutil.copy(video, moved)
    claim_work(out / ".work", moved, config)
    # another clip at the same path must not reuse the first one's frames and checkpoint
    shutil.copy(shared_data("d6.mp4"), video)
    with pytest.raises(ValueError, match="interrupted enrollment of another video"):
        enroll(video, out, config, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(resolution\)"):
        claim_work(out / ".work", moved, EnrollConfig(resolution=64, test_frames=20))
    # a work directory from before, which recorded only the path, is not trusted either
    (out / ".work" / "settings.json").write_text(json.dumps({"video": str(moved.resolve())}))
    with pytest.raises(ValueError, match="recorded the video's path rather than its content"):
        claim_work(out / ".work", moved, config)

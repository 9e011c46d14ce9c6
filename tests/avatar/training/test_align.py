"""Enrollment's per-frame pose corrections: they find an error put into a training frame, stay
bounded where there is nothing to fit, survive a checkpoint, and leave other frames alone."""

from pathlib import Path

import numpy as np
import pytest

from nerfconf.avatar.bundle import HELDOUT_TRACK, AvatarBundle
from nerfconf.avatar.rendering.fast import Renderer
from nerfconf.avatar.training.align import AlignConfig, TrainingPoses
from nerfconf.avatar.training.dataset import AvatarData
from nerfconf.avatar.training.trainer import TrainConfig, Trainer, camera_of
from nerfconf.face.pose import angles_to_rotation
from nerfconf.tracks import ParamTrack

SAMPLE = Path(__file__).resolve().parents[3] / "avatars" / "sample"
#: yaw, pitch, roll (rad), x, y, z (m): about what the tracker gets wrong on the worst frames
OFFSET = np.array([0.03, -0.02, 0.015, 0.004, -0.003, 0.0])
FRAMES = (10, 14, 18, 22)
INJECTED, BLANK, FACELESS = 1, 2, 3


@pytest.fixture(scope="module")
def bundle():
    return AvatarBundle.load(SAMPLE)


def _data(bundle: AvatarBundle) -> AvatarData:
    """Frames of the sample's held-out track rendered by its own avatar, so their true poses are known;
    one frame's pose is then put off by OFFSET, one frame is blank white, one has no face."""
    track = ParamTrack.load(SAMPLE / HELDOUT_TRACK)
    renderer = Renderer(bundle)
    k = bundle.field.config.n_expression
    images, alphas, expressions, angles, translations = [], [], [], [], []
    for i in FRAMES:
        p = track.params(i)
        frame = renderer.render(p)
        images.append(frame.image)
        alphas.append(np.round(frame.alpha * 255).astype(np.uint8))
        expressions.append(p.expression[:k])
        angles.append(np.asarray(p.rotation))
        translations.append(np.asarray(p.translation))
    images[BLANK][:] = 255
    angles[INJECTED] = angles[INJECTED] + OFFSET[:3]
    translations[INJECTED] = translations[INJECTED] + OFFSET[3:]
    found = np.ones(len(FRAMES), bool)
    found[FACELESS] = False
    return AvatarData(
        images=np.stack(images), alphas=np.stack(alphas), expressions=np.stack(expressions).astype(np.float32),
        rotations=np.stack([angles_to_rotation(a) for a in angles]).astype(np.float32),
        translations=np.stack(translations).astype(np.float32), face_found=found,
        times=np.arange(len(FRAMES)) / 25.0, focal=bundle.focal, test_frames=0)


def _trainer(bundle: AvatarBundle, data: AvatarData, workdir: Path, **kw) -> Trainer:
    """A trainer holding the sample's trained field and occupancy, as if part-way through a run."""
    lo, hi = bundle.face_model.bounds_lo, bundle.face_model.bounds_hi
    k = bundle.field.config.n_expression
    config = TrainConfig(iterations=10, heldout_every=0, **kw)
    trainer = Trainer(data, bundle.field.config, config, (lo[:k], hi[:k]), workdir, face_model=bundle.face_model)
    trainer.field.load_state_dict(bundle.field.state_dict())
    trainer.occupancy.density = bundle.occupancy.float() * 1e3  # cells the bundle marks occupied read as dense
    return trainer


def test_a_pass_recovers_a_pose_error_put_into_a_training_frame(bundle, tmp_path):
    data = _data(bundle)
    # zero_mean off: on three frames the mean of one frame's error is not the drift it is there to remove
    trainer = _trainer(bundle, data, tmp_path, alignment=AlignConfig(at=(0.5,), iterations=3, zero_mean=False))
    found = trainer.align()
    c = trainer.poses.corrections
    # the injected frame is moved back most of the way
    error = c[INJECTED] + OFFSET
    assert np.abs(error[:3]).max() < 0.35 * np.abs(OFFSET[:3]).max(), c[INJECTED]
    assert np.abs(error[3:]).max() < 0.35 * np.abs(OFFSET[3:]).max(), c[INJECTED]
    # a frame whose pose was right stays close to it
    assert np.abs(c[0, :3]).max() < 0.2 * np.abs(OFFSET[:3]).max(), c[0]
    # the blank frame moves, if at all, within the fit's bounds; the frame without a face is not touched
    s = trainer.config.alignment.settings()
    assert np.isfinite(c).all()
    assert np.abs(c[BLANK, :3]).max() <= s.max_rotation + 1e-12
    assert np.abs(c[BLANK, 3:]).max() <= s.max_translation + 1e-12
    assert not c[FACELESS].any()
    assert trainer.state.alignment_passes == 1 and found["seconds"] >= 0
    # training then sees the corrected pose: the injected frame's camera is (nearly) the true one again
    true_rot = angles_to_rotation(TrainingPoses.of(data).tracked[INJECTED, :3] - OFFSET[:3])
    tracked_rot = angles_to_rotation(TrainingPoses.of(data).tracked[INJECTED, :3])
    cam = camera_of(data, INJECTED, trainer.poses)
    assert np.abs(cam.rotation - true_rot.T).max() < 0.5 * np.abs(tracked_rot - true_rot).max()


def test_the_corrections_drift_is_taken_out_after_a_pass(bundle, tmp_path):
    data = _data(bundle)
    # every frame off by the same offset: the field and its poses could as well have moved together
    shifted = AvatarData(**{**data.__dict__, "rotations": np.stack(
        [angles_to_rotation(a) for a in TrainingPoses.of(data).tracked[:, :3] + OFFSET[:3]]).astype(np.float32)})
    free = _trainer(bundle, shifted, tmp_path / "a", alignment=AlignConfig(at=(0.5,), iterations=2, zero_mean=False))
    fixed = _trainer(bundle, shifted, tmp_path / "b", alignment=AlignConfig(at=(0.5,), iterations=2))
    free.align()
    found = fixed.align()
    train = fixed.train_frames
    assert np.abs(free.poses.corrections[train].mean(axis=0)[:3]).max() > 0.3 * np.abs(OFFSET[:3]).max()
    np.testing.assert_allclose(fixed.poses.corrections[train].mean(axis=0), 0.0, atol=1e-12)
    # what was taken out is reported, and it is the common offset the free fit found
    np.testing.assert_allclose(np.radians(found["mean_rotation_deg"]),
                               free.poses.corrections[train].mean(axis=0)[:3], atol=2e-4)


def test_a_stronger_pull_toward_the_tracker_moves_less(bundle, tmp_path):
    data = _data(bundle)
    loose = _trainer(bundle, data, tmp_path / "a", alignment=AlignConfig(at=(0.5,), iterations=2, prior=0.0))
    tight = _trainer(bundle, data, tmp_path / "b", alignment=AlignConfig(at=(0.5,), iterations=2, prior=2.0))
    loose.align()
    tight.align()
    assert np.abs(tight.poses.corrections[INJECTED]).sum() < 0.7 * np.abs(loose.poses.corrections[INJECTED]).sum()


def test_passes_run_at_their_fractions_of_the_run_and_the_corrections_survive_a_checkpoint(bundle, tmp_path):
    data = _data(bundle)
    trainer = _trainer(bundle, data, tmp_path, alignment=AlignConfig(at=(0.2, 0.6), iterations=1),
                       rays_per_batch=64, samples_per_ray=8, occupancy_warmup=1000)
    seen = []
    trainer.train(progress=False, on_step=lambda _: seen.append(trainer.state.alignment_passes))
    # the first pass runs before the third step (progress 0.2), the second before the seventh
    assert seen == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert [p["iteration"] for p in trainer.state.alignment] == [2, 6]
    assert trainer.poses.corrections[INJECTED].any()
    again = _trainer(bundle, data, tmp_path, alignment=AlignConfig(at=(0.2, 0.6), iterations=1))
    assert again.load_checkpoint()
    np.testing.assert_array_equal(again.poses.corrections, trainer.poses.corrections)
    assert again.state.alignment_passes == 2 and not again.alignment_due()


def test_without_passes_training_poses_are_the_tracked_ones(bundle, tmp_path):
    data = _data(bundle)
    poses = TrainingPoses.of(data)
    for i in range(len(FRAMES)):
        pose, ref = poses.head_pose(i), data.head_pose(i)
        np.testing.assert_allclose(pose.rotation, ref.rotation, atol=1e-5)
        np.testing.assert_allclose(pose.translation, ref.translation, atol=1e-5)
    with pytest.raises(ValueError, match="face model"):
        Trainer(data, bundle.field.config, TrainConfig(alignment=AlignConfig()), (None, None), tmp_path)


def test_bad_alignment_settings_are_refused():
    for bad in ({"at": (0.5, 0.2)}, {"at": (1.0,)}, {"rate": 0.0}):
        with pytest.raises(ValueError):
            AlignConfig(**bad)


def test_a_checkpoint_from_another_dataset_is_refused(bundle, tmp_path):
    data = _data(bundle)
    trainer = _trainer(bundle, data, tmp_path)
    trainer.save_checkpoint()
    fewer = AvatarData(**{**data.__dict__, **{k: getattr(data, k)[:3] for k in (
        "images", "alphas", "expressions", "rotations", "translations", "face_found", "times")}})
    other = _trainer(bundle, fewer, tmp_path)
    with pytest.raises(ValueError, match="another dataset"):
        other.load_checkpoint()

"""Sender-side pose refinement: it finds a pose it was not given, stays bounded, refuses bad input."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nerfconf.avatar.bundle import HELDOUT_TRACK, AvatarBundle
from nerfconf.avatar.pose_fit import PoseRefiner, RefineError, RefineSettings
from nerfconf.avatar.rendering.fast import Renderer
from nerfconf.evaluate.metrics import psnr
from nerfconf.tracks import ParamTrack

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"
#: yaw, pitch, roll (rad), x, y, z (m): about what the tracker gets wrong on the worst frames
OFFSET = np.array([0.03, -0.02, 0.015, 0.004, -0.003, 0.0])


@pytest.fixture(scope="module")
def bundle():
    return AvatarBundle.load(SAMPLE)


@pytest.fixture(scope="module")
def truth(bundle):
    """A frame of the sample's held-out track and its render at the bundle's resolution: the camera frame."""
    params = ParamTrack.load(SAMPLE / HELDOUT_TRACK).params(10)
    return params, Renderer(bundle).render(params).image


def _offset(params, delta):
    return replace(params, rotation=params.rotation + delta[:3], translation=params.translation + delta[3:])


def _pose(params):
    return np.concatenate([params.rotation, params.translation])


def test_it_recovers_most_of_a_pose_error(bundle, truth):
    params, target = truth
    refiner = PoseRefiner(bundle, RefineSettings(iterations=3))
    start = _offset(params, OFFSET)
    fit = refiner.refine(start, target)
    error = _pose(fit.params) - _pose(params)
    assert np.abs(error[:3]).max() < 0.3 * np.abs(OFFSET[:3]).max(), error
    assert np.abs(error[3:5]).max() < 0.3 * np.abs(OFFSET[3:5]).max(), error
    # Depth shows only as scale: at 1.3 m, 3 mm changes the head's size by a fifth of a pixel at 256 px.
    assert abs(error[5]) < 0.003, error
    np.testing.assert_allclose(fit.correction, _pose(fit.params) - _pose(start), atol=1e-12)
    # and what the receiver then shows is closer to the frame
    full = Renderer(bundle)
    assert psnr(full.render(fit.params).image, target) > psnr(full.render(start).image, target) + 3.0


def test_frames_in_a_row_carry_the_correction_over(bundle, truth):
    params, target = truth
    start = _offset(params, OFFSET)
    warm = PoseRefiner(bundle, RefineSettings(iterations=1))
    cold = PoseRefiner(bundle, RefineSettings(iterations=1, warm_start=False))
    for _ in range(3):
        w, c = warm.refine(start, target), cold.refine(start, target)
    # one step from scratch every frame stays where one step gets; carried over, three steps' worth
    assert np.abs(_pose(w.params) - _pose(params)).sum() < np.abs(_pose(c.params) - _pose(params)).sum()
    warm.reset()
    np.testing.assert_allclose(warm.refine(start, target).correction, c.correction, atol=1e-9)


def test_without_translation_only_the_rotation_moves(bundle, truth):
    params, target = truth
    start = replace(_offset(params, OFFSET), translation=None)
    fit = PoseRefiner(bundle).refine(start, target)
    assert fit.params.translation is None
    assert np.abs(fit.correction[3:]).max() == 0.0
    assert np.abs(fit.correction[:3]).max() > 0.0


@pytest.mark.parametrize("kind", ["white", "black", "noise"])
def test_a_frame_it_cannot_explain_moves_the_pose_a_bounded_amount(bundle, truth, kind):
    params, _ = truth
    r = bundle.resolution
    target = {"white": np.full((r, r, 3), 255, np.uint8), "black": np.zeros((r, r, 3), np.uint8),
              "noise": np.random.default_rng(0).integers(0, 256, (r, r, 3), dtype=np.uint8)}[kind]
    settings = RefineSettings(iterations=4)
    refiner = PoseRefiner(bundle, settings)
    for _ in range(5):
        fit = refiner.refine(params, target)
    assert np.isfinite(fit.correction).all()
    assert np.abs(fit.correction[:3]).max() <= settings.max_rotation + 1e-12
    assert np.abs(fit.correction[3:]).max() <= settings.max_translation + 1e-12


def test_a_frame_without_a_face_passes_through_and_forgets_the_correction(bundle, truth):
    params, target = truth
    refiner = PoseRefiner(bundle)
    refiner.refine(_offset(params, OFFSET), target)
    lost = replace(params, face_found=False)
    fit = refiner.refine(lost, target)
    assert fit.params is lost and not fit.correction.any()
    assert not refiner._x.any()


def test_bad_input_is_refused_by_name(bundle, truth):
    params, target = truth
    refiner = PoseRefiner(bundle)
    with pytest.raises(RefineError, match="square"):
        refiner.refine(params, target[:, :-1])
    with pytest.raises(RefineError, match="uint8"):
        refiner.refine(params, target.astype(np.float32))
    with pytest.raises(RefineError, match="finite"):
        refiner.refine(replace(params, rotation=np.array([np.nan, 0.0, 0.0])), target)
    for bad in ({"resolution": 8}, {"iterations": 0}, {"blur": -1.0}, {"max_rotation": 0.0}):
        with pytest.raises(RefineError):
            RefineSettings(**bad)


def test_fitting_every_other_frame_carries_the_last_correction_between(bundle, truth):
    params, target = truth
    start = _offset(params, OFFSET)
    refiner = PoseRefiner(bundle, RefineSettings(every=2))
    assert refiner.due
    first = refiner.refine(start, target)
    assert first.fitted and not refiner.due
    # the frame between needs no target, renders nothing, and takes the first frame's correction
    between = refiner.refine(start, None)
    assert not between.fitted and refiner.due
    np.testing.assert_array_equal(between.correction, first.correction)
    with pytest.raises(RefineError, match="needs its target"):
        refiner.refine(start, None)
    third = refiner.refine(start, target)
    assert third.fitted
    assert np.abs(_pose(third.params) - _pose(params)).sum() < np.abs(_pose(first.params) - _pose(params)).sum()
    with pytest.raises(RefineError, match="warm_start"):
        RefineSettings(every=2, warm_start=False)

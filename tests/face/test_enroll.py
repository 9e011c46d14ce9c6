import numpy as np

from nerfconf.face.enroll import smoothed_params, zero_phase_params
from nerfconf.face.pose import Similarity, angles_to_rotation, rotation_to_angles

from .conftest import CNN2_TRAIN


def test_zero_phase_smoothing_follows_a_turning_head_without_lag(cnn2_landmarks, cnn2_model):
    _, landmarks, _ = cnn2_landmarks
    model = cnn2_model
    lm = landmarks[CNN2_TRAIN + 5]
    pose = model.solve_pose(lm)
    coeffs = model.coefficients(lm, pose)
    base = rotation_to_angles(pose.rotation)
    # The head turns at a steady 20 degrees a second for two seconds, with a second held either side.
    times = np.arange(100) / 25.0
    yaw = base[0] + np.radians(20.0) * np.clip(times - 1.0, 0.0, 2.0)
    frames = np.stack([
        model.reconstruct(coeffs, Similarity(pose.scale, angles_to_rotation([y, base[1], base[2]]), pose.translation))
        for y in yaw
    ])
    frames[60] = np.nan  # a frame without a face: both passes restart there
    k = model.n_expression
    causal = smoothed_params(model, frames, times, smoothing=True)[:, k]
    zero = zero_phase_params(model, frames, times)[:, k]
    assert np.isnan(causal[60]) and np.isnan(zero[60])
    turning = (times > 1.2) & (times < 2.3)  # mid-turn, before the gap
    lag_causal = np.mean(yaw[turning] - causal[turning])
    lag_zero = np.mean(yaw[turning] - zero[turning])
    assert lag_causal > np.radians(0.2)  # the streaming filter trails the turn
    assert abs(lag_zero) < 0.2 * lag_causal

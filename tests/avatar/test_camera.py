"""Head pose and camera: the one conversion every module uses, and views about the head centre."""

import numpy as np

from nerfconf.avatar.camera import Camera, HeadPose
from nerfconf.avatar.view import View
from nerfconf.face.pose import angles_to_rotation, rotation_to_angles

CENTRE = np.array([0.0, 0.0, 0.03])
ANGLES = np.radians([10.0, -5.0, 3.0])
T = np.array([0.01, -0.02, 0.9])
POSE = HeadPose.from_angles(ANGLES, T)


def test_no_view_is_the_senders_pose():
    assert POSE.viewed(None, CENTRE) is POSE
    assert np.allclose(POSE.rotation, angles_to_rotation(ANGLES)) and np.allclose(POSE.translation, T)


def test_a_zero_offset_changes_nothing():
    p = POSE.viewed(View(), CENTRE)
    assert np.allclose(p.rotation, POSE.rotation) and np.allclose(p.translation, T)


def test_offsets_turn_the_head_about_its_centre():
    p = POSE.viewed(View(30.0, -20.0, 10.0), CENTRE)
    assert np.allclose(p.apply(CENTRE[None]), POSE.apply(CENTRE[None]))  # the centre stays put in the camera
    assert np.allclose(p.rotation, POSE.rotation @ angles_to_rotation(np.radians([30.0, -20.0, 10.0])))


def test_absolute_views_ignore_the_senders_rotation():
    p = POSE.viewed(View(-45.0, 0.0, 0.0, absolute=True), CENTRE)
    assert np.allclose(rotation_to_angles(p.rotation), np.radians([-45.0, 0.0, 0.0]))
    assert np.allclose(p.apply(CENTRE[None]), POSE.apply(CENTRE[None]))


def test_the_camera_sits_where_the_pose_puts_the_eye():
    cam = Camera.of_pose(POSE.viewed(View(20.0), CENTRE), 100.0, 32)
    pose = cam.head_pose()
    assert np.allclose(pose.apply(cam.centre[None]), 0.0)  # the camera centre is the camera's origin
    assert np.allclose(cam.rotation @ pose.rotation, np.eye(3))


def test_pose_vector_and_camera_round_trip():
    v = np.array([0.2, -0.1, 0.05, 0.01, -0.03, 0.8])
    pose = HeadPose.from_vector(v)
    np.testing.assert_allclose(pose.vector(), v, atol=1e-12)
    np.testing.assert_allclose(Camera.of_pose(pose, 100.0, 32).head_pose().vector(), v, atol=1e-12)


def test_the_centre_ray_looks_down_the_cameras_axis():
    cam = Camera.of_pose(POSE, 100.0, 32)
    o, d = cam.rays(np.array([[15.5, 15.5]]))  # its centre (x + 0.5) is the principal point, 16
    forward = cam.rotation[:, 2]
    np.testing.assert_allclose(d[0].numpy(), forward, atol=1e-6)
    np.testing.assert_allclose(o[0].numpy(), cam.centre, atol=1e-6)

"""The demo's camera clip: its parameter track comes from the held-out end of the sample's video."""

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.pipeline.demo_clip import extract_demo_track

from ..avatar.test_sample_avatar import SAMPLE
from ..conftest import shared_data


def test_the_demo_track_is_the_videos_last_frames_as_a_sender_tracks_them():
    bundle = AvatarBundle.load(SAMPLE)
    track = extract_demo_track(bundle, shared_data("obama.mp4"), frames=6, fps=20.0)
    assert len(track) == 6 and track.face_found.all()
    # resampled to 20 fps: source frames picked on average every 50 ms, stamped with their own times
    assert track.t[0] == 0.0 and abs(track.t[-1] / (len(track) - 1) - 1 / 20.0) < 0.01
    assert track.layout.n_expression == bundle.face_model.n_expression and track.layout.translation
    # framed like the avatar's training frames: the head sits where the avatar expects it
    k = track.layout.n_expression
    assert np.all(track.values[:, k + 5] > 0.2) and np.all(np.abs(track.values[:, k + 3 : k + 5]) < 0.1)

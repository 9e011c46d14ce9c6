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


def test_the_recorded_clip_is_the_videos_last_frames_framed_as_enrollment_framed_them(tmp_path):
    from nerfconf.capture.video import probe, read_all
    from nerfconf.pipeline.demo_clip import record_clip

    bundle = AvatarBundle.load(SAMPLE)
    video = shared_data("obama.mp4")
    clip = record_clip(bundle, video, tmp_path / "clip.mp4", max_seconds=0.2)
    info = probe(clip)
    assert (info.width, info.height, info.frames) == (bundle.resolution, bundle.resolution, 6)
    assert info.fps == probe(video).fps
    # the committed demo clip starts where the held-out split starts and ends with the same frame
    ours, _ = read_all(clip)
    shipped, _ = read_all(SAMPLE / "demo_clip.mp4")
    assert np.abs(ours[-1].astype(float) - shipped[-1].astype(float)).mean() < 6.0

import numpy as np
import pytest

from nerfconf.tracks import ParamTrack, synthetic_track
from nerfconf.types import ParamLayout


def test_save_load_round_trip(tmp_path):
    track = synthetic_track(50, layout=ParamLayout(10, translation=True), seed=2)
    track.face_found[5] = False
    track.save(tmp_path / "t.npz")
    again = ParamTrack.load(tmp_path / "t.npz")
    assert again.layout == track.layout
    assert np.array_equal(again.values, track.values)
    assert np.array_equal(again.face_found, track.face_found)
    assert again.source == track.source
    assert again.fps == pytest.approx(20.0)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format=np.int64(1), values=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable parameter track"):
        ParamTrack.load(path)


def test_garbage_file_is_named(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npz"):
        ParamTrack.load(path)


def test_synthetic_track_is_smooth_and_seeded():
    a, b = synthetic_track(400, seed=1), synthetic_track(400, seed=1)
    assert np.array_equal(a.values, b.values)
    steps = np.abs(np.diff(a.values, axis=0)).mean(axis=0)
    spread = a.values.std(axis=0)
    assert np.all(steps < spread)  # frame-to-frame motion is smaller than the range of motion

import logging

import av
import numpy as np
import pytest

from nerfconf.cli import main
from nerfconf.face.enroll import fit_from_video
from nerfconf.face.extract import Extractor, NoFaceReporter, extract_video
from nerfconf.tracks import ParamTrack
from nerfconf.types import Frame

from ..conftest import shared_data


def test_extract_video_gives_params_landmarks_and_timings(cnn2_model):
    path = shared_data("cnn2_25fps.mp4")
    track, extras = extract_video(path, cnn2_model, start=300, stop=340, fps=20)
    assert len(track) == 32 and track.layout.dims == 46 + 6
    assert track.face_found.all()
    assert extras["landmarks"].shape == (32, 478, 3)
    assert np.all(extras["landmarks_ms"] > 0) and np.all(extras["solve_ms"] > 0)
    # values lie in (or just outside) the bounds the model was fitted with
    inside = (track.values >= cnn2_model.bounds_lo - 1e-9) & (track.values <= cnn2_model.bounds_hi + 1e-9)
    assert inside.mean() > 0.8  # held-out frames: most values inside, some beyond (clamped by the codec)


def test_frames_without_a_face_are_flagged_and_reported_once(cnn2_model, caplog):
    blank = np.full((512, 512, 3), 127, np.uint8)
    real = next(iter(__import__("nerfconf.capture.video", fromlist=["read_frames"]).read_frames(
        shared_data("cnn2_25fps.mp4"), stop=1))).image
    with caplog.at_level(logging.INFO, logger="nerfconf.face"), Extractor(cnn2_model) as ex:
        results = [ex.process(Frame(img, i / 20, i)) for i, img in enumerate([real] + [blank] * 30 + [real])]
    assert [r.params.face_found for r in results] == [True] + [False] * 30 + [True]
    assert results[5].landmarks is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "from frame 1" in warnings[0].getMessage()
    assert any("face back at frame 31" in r.getMessage() for r in caplog.records)


def test_wrong_frame_size_is_named(cnn2_model):
    with Extractor(cnn2_model) as ex, pytest.raises(ValueError, match="fitted on 512x512"):
        ex.process(Frame(np.zeros((100, 100, 3), np.uint8), 0.0, 0))


def test_reporter_counts_runs():
    r = NoFaceReporter(logging.getLogger("test"))
    for i, found in enumerate([True, False, False, True, False, True]):
        r.update(i, found)
    assert r.runs == 2


def _write_faceless_video(path, frames=30):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(frames):
            img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_without_a_face_is_a_clear_error(tmp_path):
    path = tmp_path / "noface.mp4"
    _write_faceless_video(path)
    with pytest.raises(ValueError, match="noface.mp4: no face found"):
        fit_from_video(path)


@pytest.mark.parametrize("clip", ["short_3.mp4", "d9.mp4"])
def test_cli_fit_and_extract_other_identities(clip, tmp_path, capsys):
    video = shared_data(clip)
    assert main(["face", "fit", str(video), "-o", str(tmp_path / "m"), "-k", "16"]) == 0
    assert main(["face", "extract", str(video), "--model", str(tmp_path / "m"), "-o", str(tmp_path / "t.npz"),
                 "--stop", "60"]) == 0
    track = ParamTrack.load(tmp_path / "t.npz")
    assert len(track) == 60 and track.face_found.mean() > 0.9
    assert (tmp_path / "m" / "codec.json").is_file()
    assert "landmarks" in ParamTrack.load_extras(tmp_path / "t.npz")


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "noface.mp4"
    _write_faceless_video(path)
    assert main(["face", "fit", str(path), "-o", str(tmp_path / "m")]) == 2
    assert "no face found" in capsys.readouterr().err
    (tmp_path / "m2").mkdir()
    assert main(["face", "extract", str(path), "--model", str(tmp_path / "m2"), "-o", str(tmp_path / "t.npz")]) == 2
    assert "no face model" in capsys.readouterr().err

"""The video bench on a short clean run: it measures what it says, from a real call."""

import asyncio

from nerfconf.bench.video import CLIP, HEADER, main, row, run_video
from nerfconf.capture.video import read_frames
from nerfconf.net.messages import VideoCodec


def test_a_short_clean_run_shows_every_frame_near_the_target(tmp_path):
    pictures = [f.image for f in read_frames(CLIP, stop=60)]
    r = asyncio.run(run_video("clean", VideoCodec.H264, 32, seconds=4, traces=tmp_path, pictures=pictures,
                              identity_dir=tmp_path / "identity"))
    assert r.frames_shown == r.frames_coded == 80 and r.frames_lost == 0
    assert 15 < r.coded_kbps < 45 and r.wire_kbps > r.coded_kbps
    assert r.sizes == {192: 80} and r.psnr_db_mean > 30
    assert 10 <= r.latency_ms_p50 < 100 and r.encode_ms_p50 > 0 and r.decode_ms_p50 > 0
    assert row(r).count("|") == HEADER.splitlines()[0].count("|")


def test_unknown_conditions_and_codecs_are_refused(capsys):
    for argv in (["--conditions", "moon"], ["--codecs", "vp9"], ["--seconds", "1"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    err = capsys.readouterr().err
    assert "unknown condition(s) moon" in err and "--codecs is h264 and/or av1" in err and "warm-up" in err

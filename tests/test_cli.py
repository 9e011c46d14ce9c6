import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from nerfconf.cli import main
from nerfconf.codec.config import CodecConfig
from nerfconf.tracks import ParamTrack, synthetic_track


@pytest.mark.parametrize(
    "argv", [[], ["demo"], ["bench"], ["bench", "codec"], ["bench", "render"], ["view"], ["codec"], ["codec", "fit"],
             ["codec", "encode"]]
)
def test_every_command_explains_itself(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: nerfconf" in capsys.readouterr().out


def test_codec_commands_will_not_write_over_their_input(tmp_path, capsys):
    track = synthetic_track(50, seed=4)
    track.save(tmp_path / "t.npz")
    before = (tmp_path / "t.npz").read_bytes()
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "t.npz"), "--test-frames", "0"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert (tmp_path / "t.npz").read_bytes() == before
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "no" / "c.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(tmp_path), "--test-frames", "0"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_codec_fit_encode_decode_round_trip(tmp_path, capsys):
    track = synthetic_track(300, seed=4)
    track.face_found[100:110] = False
    track.save(tmp_path / "t.npz")
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "c.json"), "--test-frames", "0"]) == 0
    assert main(["codec", "encode", str(tmp_path / "t.npz"), "--config", str(tmp_path / "c.json"),
                 "-o", str(tmp_path / "s.nfc")]) == 0
    assert main(["codec", "decode", str(tmp_path / "s.nfc"), "--config", str(tmp_path / "c.json"),
                 "-o", str(tmp_path / "d.npz")]) == 0
    out = ParamTrack.load(tmp_path / "d.npz")
    assert np.array_equal(out.face_found, track.face_found)
    step = CodecConfig.from_json((tmp_path / "c.json").read_text()).make_quantizer().step
    err = np.abs(out.values - track.values)[track.face_found]
    assert np.all(err <= step / 2 + 1e-9)
    assert np.allclose(out.t, track.t, atol=1e-3)


def test_damaged_stream_decodes_what_it_can(tmp_path, capsys):
    track = synthetic_track(100, seed=4)
    track.save(tmp_path / "t.npz")
    main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "c.json"), "--test-frames", "0"])
    main(["codec", "encode", str(tmp_path / "t.npz"), "--config", str(tmp_path / "c.json"),
          "-o", str(tmp_path / "s.nfc")])
    data = bytearray((tmp_path / "s.nfc").read_bytes())
    data[200:230] = bytes(30)
    (tmp_path / "s.nfc").write_bytes(bytes(data))
    rc = main(["codec", "decode", str(tmp_path / "s.nfc"), "--config", str(tmp_path / "c.json"),
               "-o", str(tmp_path / "d.npz")])
    assert rc == 1
    assert "could not be decoded" in capsys.readouterr().err
    assert 50 < len(ParamTrack.load(tmp_path / "d.npz")) < 100


def test_user_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{}")
    (tmp_path / "x.nfc").write_bytes(b"hello")
    assert main(["codec", "decode", str(tmp_path / "x.nfc"), "--config", str(tmp_path / "bad.json"),
                 "-o", str(tmp_path / "o.npz")]) == 2
    assert "not a codec configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["codec", "decode", str(tmp_path / "missing.nfc"), "--config", "c.json", "-o", "o.npz"])
    assert "no such file" in capsys.readouterr().err
    assert main(["demo", "--loss", "1.5"]) == 2
    assert "loss must be" in capsys.readouterr().err
    assert main(["demo", "--refine-pose", "--refine-every", "0"]) == 2
    assert "--refine-every must be 1..25" in capsys.readouterr().err


def test_bench_codec_json(tmp_path, capsys):
    synthetic_track(400, seed=6).save(tmp_path / "t.npz")
    assert main(["bench", "codec", "--track", str(tmp_path / "t.npz"), "--json", "--repeats", "1",
                 "--test-frames", "150"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"].startswith("synthetic") and len(result["results"]) == 12


@pytest.mark.parametrize(("device", "message"), [("mps", "cpu or cuda"), ("nonsense", "not a torch device")])
def test_enroll_refuses_an_unusable_device_before_any_work(device, message, tmp_path, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the device is checked first")
    assert main(["enroll", str(video), "-o", str(tmp_path / "a"), "--device", device]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("option", ["--expression-noise", "--neck-margin"])
def test_enroll_refuses_a_negative_noise_or_neck_margin(tmp_path, capsys, option):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the option is checked first")
    assert main(["enroll", str(video), "-o", str(tmp_path / "a"), option, "-1"]) == 2
    assert f"{option} -1.0: must lie in [0, 2]" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("option, bound", [("--mask-loss-until", "[0, 1]"), ("--distortion", "[0, 1]")])
def test_enroll_refuses_a_fraction_or_weight_out_of_range(tmp_path, capsys, option, bound):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the option is checked first")
    assert main(["enroll", str(video), "-o", str(tmp_path / "a"), option, "1.5"]) == 2
    assert f"{option} 1.5: must lie in {bound}" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_enroll_refuses_a_view_degree_above_four(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the option is checked first")
    with pytest.raises(SystemExit):
        main(["enroll", str(video), "-o", str(tmp_path / "a"), "--view-degree", "5"])
    assert "--view-degree" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("argv", [["demo"], ["call"], ["send"], ["eval", "quality"]])
def test_the_sender_side_commands_offer_pose_refinement(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert "--refine-pose" in out and "--no-refine-pose" in out


def test_the_clis_refinement_default_is_the_senders():
    from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY  # noqa: PLC0415
    from nerfconf.commands.common import REFINE_EVERY  # noqa: PLC0415
    from nerfconf.pipeline.demo import DemoSettings  # noqa: PLC0415

    assert REFINE_EVERY == DEFAULT_REFINE_EVERY
    assert DemoSettings().refine_pose and DemoSettings().refine_every == DEFAULT_REFINE_EVERY


def test_the_clis_held_out_split_is_the_librarys(tmp_path):
    from nerfconf.avatar.training.enroll import EnrollConfig  # noqa: PLC0415
    from nerfconf.cli import build_parser  # noqa: PLC0415
    from nerfconf.tracks import HELD_OUT_FRAMES  # noqa: PLC0415

    (tmp_path / "v.mp4").write_bytes(b"")
    args = build_parser().parse_args(["enroll", str(tmp_path / "v.mp4"), "-o", "out"])
    assert args.test_frames == HELD_OUT_FRAMES == EnrollConfig().test_frames


def test_commands_that_need_the_test_videos_name_where_they_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NERFCONF_DATA", str(tmp_path / "nowhere"))
    assert main(["bench", "train", "--iterations", "1"]) != 0
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "cnn2_25fps.mp4") in err and "NERFCONF_DATA" in err
    assert main(["bench", "train", "--data", str(tmp_path), "--iterations", "1"]) != 0
    assert str(tmp_path / "cnn2_25fps.mp4") in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["eval", "quality"], ["eval", "rd"], ["view"], ["bench", "render"]])
def test_scoring_commands_default_to_the_avatars_own_split(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    assert "the avatar's own split" in " ".join(capsys.readouterr().out.split())


def test_the_clis_distortion_default_is_enrollments():
    from nerfconf.avatar.training.enroll import EnrollConfig  # noqa: PLC0415
    from nerfconf.commands.avatar import DISTORTION  # noqa: PLC0415

    assert DISTORTION == EnrollConfig().distortion


def _finished_avatar(directory):
    directory.mkdir()
    for name in ("bundle.json", "avatar.safetensors", "heldout_track.npz", "eval_quality.json", "notes.txt"):
        (directory / name).write_text("x")
    (directory / ".work").mkdir()
    (directory / ".work" / "checkpoint.json").write_text("{}")


def test_enroll_will_not_replace_a_finished_avatar_without_force(tmp_path, capsys):
    out = tmp_path / "me"
    _finished_avatar(out)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not a video")
    assert main(["enroll", str(video), "-o", str(out)]) == 2
    assert "already holds an avatar; --force replaces it" in capsys.readouterr().err
    # --force, but the new video cannot be read: the old avatar stays as it was
    assert main(["enroll", str(video), "-o", str(out), "--force"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".work", "avatar.safetensors", "bundle.json", "eval_quality.json", "heldout_track.npz", "notes.txt"])


def test_replacing_an_avatar_removes_only_its_own_files(tmp_path):
    from nerfconf.avatar.bundle import remove_bundle  # noqa: PLC0415

    out = tmp_path / "me"
    _finished_avatar(out)
    remove_bundle(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_netem_refuses_a_delay_beyond_any_network(capsys):
    assert main(["netem", "--target", "127.0.0.1:9", "--delay-ms", "1e9"]) == 2
    err = capsys.readouterr().err
    assert err == "nerfconf: error: delay must be 0..10000 ms, got 1e+09\n"


@pytest.mark.parametrize(("flags", "message"), [
    (["--delay-ms", "nan"], "delay must be 0..10000 ms, got nan"),
    (["--jitter-ms", "inf"], "jitter must be 0..10000 ms, got inf"),
    (["--rate-kbps", "nan"], "rate must be finite and at least 0.001 kbps, got nan"),
    (["--rate-kbps", "inf"], "rate must be finite and at least 0.001 kbps, got inf"),
    (["--seconds", "nan"], "--seconds must be a finite number >= 0 (0: until Ctrl-C), got nan"),
    (["--seconds=-1"], "--seconds must be a finite number >= 0 (0: until Ctrl-C), got -1"),
])
def test_netem_refuses_settings_that_are_no_number(flags, message, capsys):
    assert main(["netem", "--target", "127.0.0.1:9", "--seconds", "0.1", *flags]) == 2
    assert capsys.readouterr().err == f"nerfconf: error: {message}\n"


def _alphartc(tmp_path, *segments):
    path = tmp_path / "pattern.json"
    path.write_text(json.dumps({"uplink": {"trace_pattern": list(segments)}}))
    return str(path)


@pytest.mark.parametrize(("segment", "message"), [
    ({"duration": 1000, "capacity": 0}, "every segment has capacity 0: the trace never delivers anything"),
    ({"duration": float("nan"), "capacity": 300},
     "trace_pattern[0]: duration must be finite and at least 1 ms, got nan"),
    ({"duration": 1000, "capacity": 300, "rtt": -5}, "trace_pattern[0]: rtt must be 0..20000 ms, got -5"),
    ({"duration": 1e-300, "capacity": 300},
     "trace_pattern[0]: duration must be finite and at least 1 ms, got 1e-300"),
])
def test_netem_refuses_nonsense_alphartc_patterns(tmp_path, segment, message, capsys):
    pattern = _alphartc(tmp_path, segment)
    assert main(["netem", "--target", "127.0.0.1:9", "--alphartc", pattern, "--seconds", "0.1"]) == 2
    assert capsys.readouterr().err == f"nerfconf: error: {pattern}: {message}\n"


def test_netem_seconds_ends_the_run_while_a_slow_pattern_is_fed(tmp_path):
    # 1 bit/s in 1 ms out of every 2: each packet leaves hours later; walking the pattern there held
    # the event loop past --seconds for as long as that took
    pattern = _alphartc(tmp_path, {"duration": 1, "capacity": 0.001}, {"duration": 1, "capacity": 0})
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # the relay takes this free port
    t0 = time.monotonic()
    relay = subprocess.Popen([sys.executable, "-m", "nerfconf", "netem", "--target", "127.0.0.1:9", "--listen",
                              f"127.0.0.1:{port}", "--alphartc", pattern, "--seconds", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        while relay.poll() is None and time.monotonic() - t0 < 20:
            sender.sendto(b"x" * 1000, ("127.0.0.1", port))
            time.sleep(0.01)
        out, err = relay.communicate(timeout=1)
    finally:
        sender.close()
        relay.kill()
    assert relay.returncode == 0, err
    assert time.monotonic() - t0 < 10
    stats = json.loads(out[out.index("{"):])
    assert stats["up"]["packets"] > 0 and stats["up"]["delivered"] >= 1


def _inputs(tmp_path):
    """Files and folders that pass the parser's existence checks; no command reads them before it
    has checked where it will write."""
    synthetic_track(50, seed=4).save(tmp_path / "t.npz")
    for name in ("v.mp4", "c.json", "s.nfc"):
        (tmp_path / name).write_bytes(b"not read: the output is checked first")
    (tmp_path / "dir").mkdir()
    return {"TRACK": "t.npz", "VIDEO": "v.mp4", "CONFIG": "c.json", "STREAM": "s.nfc", "DIR": "dir"}


#: every command that writes, with the option naming where, and whether that is a file or a directory
WRITERS = [
    (["codec", "fit", "TRACK", "--test-frames", "0"], "-o", "file"),
    (["codec", "encode", "TRACK", "--config", "CONFIG"], "-o", "file"),
    (["codec", "decode", "STREAM", "--config", "CONFIG"], "-o", "file"),
    (["face", "extract", "VIDEO", "--model", "DIR"], "-o", "file"),
    (["face", "segment", "VIDEO"], "-o", "file"),
    (["view", "--avatar", "DIR", "--headless"], "-o", "file"),
    (["view", "--avatar", "DIR"], "--strip", "file"),
    (["eval", "quality", "--avatar", "DIR", "--video", "VIDEO"], "--strip", "file"),
    (["receive", "--avatar-peer", "DIR", "--listen", "0"], "--save", "file"),
    (["receive", "--avatar-peer", "DIR", "--listen", "0"], "--stats", "file"),
    (["face", "fit", "VIDEO"], "-o", "dir"),
    (["enroll", "VIDEO"], "-o", "dir"),
    (["demo"], "--out", "dir"),
    (["eval", "latency", "--avatar", "DIR"], "--out", "dir"),
    (["eval", "rd", "--avatar", "DIR", "--video", "VIDEO"], "--out", "dir"),
]


@pytest.mark.parametrize(("argv", "flag", "kind"), WRITERS, ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_an_output_in_a_missing_directory_or_onto_the_wrong_kind_is_one_line(tmp_path, capsys, argv, flag, kind):
    names = _inputs(tmp_path)
    argv = [str(tmp_path / names[a]) if a in names else a for a in argv]
    missing = tmp_path / "no" / "out"
    assert main([*argv, flag, str(missing)]) == 2
    assert capsys.readouterr().err == f"nerfconf: error: {flag} {missing}: its directory {missing.parent} does not exist\n"
    wrong = tmp_path / ("dir" if kind == "file" else "t.npz")
    assert main([*argv, flag, str(wrong)]) == 2
    named = "is a directory; name a file" if kind == "file" else "is a file; name a directory"
    assert capsys.readouterr().err == f"nerfconf: error: {flag} {wrong} {named}\n"
    assert not (tmp_path / "no").exists()


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import errno  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    synthetic_track(300, seed=4).save(tmp_path / "t.npz")
    real_write_text = Path.write_text

    def full_after_ten_bytes(self, text, *args, **kwargs):  # a disk with room for ten bytes
        real_write_text(self, text[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_after_ten_bytes)
    out = tmp_path / "c.json"
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(out), "--test-frames", "0"]) == 2
    assert capsys.readouterr().err == (f"nerfconf: error: -o {out}: the disk is full; the partial file was removed. "
                                       "Free some space or write elsewhere\n")
    assert not out.exists()


def test_disk_full_is_recognised_through_a_librarys_own_error():
    from safetensors import SafetensorError  # noqa: PLC0415

    from nerfconf.commands.outputs import disk_full  # noqa: PLC0415

    # safetensors' error for ENOSPC, as it reads on a full tmpfs
    assert disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not disk_full(OSError(13, "Permission denied"))


def test_codec_fit_refuses_a_track_no_longer_than_the_held_out_split(tmp_path, capsys):
    from nerfconf.tracks import HELD_OUT_FRAMES  # noqa: PLC0415

    synthetic_track(135, seed=4).save(tmp_path / "t.npz")
    out = tmp_path / "c.json"
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"nerfconf: error: {tmp_path / 't.npz'}: 135 frames, not more than the {HELD_OUT_FRAMES} held out for "
        "testing; give "
        "--test-frames a smaller number (0 fits on every frame)\n")
    assert not out.exists()
    assert main(["codec", "fit", str(tmp_path / "t.npz"), "-o", str(out), "--test-frames", "35"]) == 0
    assert "fitted on 100 frames" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["receive", "--avatar-peer", "DIR", "--listen"], ["netem", "--target"]])
def test_a_port_out_of_range_is_one_line_not_an_overflow(tmp_path, capsys, argv):
    names = _inputs(tmp_path)
    argv = [str(tmp_path / names[a]) if a in names else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "127.0.0.1:80000"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected [HOST:]PORT with PORT 0..65535, got '127.0.0.1:80000'" in err and "Traceback" not in err


def test_listening_on_every_address_asks_for_advertise(tmp_path, capsys):
    (tmp_path / "peer").mkdir()
    assert main(["receive", "--avatar-peer", str(tmp_path / "peer"), "--listen", "0.0.0.0:5000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nerfconf: error: --listen 0.0.0.0:5000 takes calls on every address") and err.count("\n") == 1
    assert "add --advertise HOST" in err
    with pytest.raises(SystemExit):
        main(["receive", "--avatar-peer", str(tmp_path / "peer"), "--listen", "0.0.0.0:5000", "--advertise", "a b"])
    assert "not a host name or address: 'a b'" in capsys.readouterr().err


def test_an_image_that_cannot_be_written_is_named(tmp_path):
    from nerfconf.image_file import write_image  # noqa: PLC0415

    with pytest.raises(ValueError, match=r"strip\.nope: not an image file name OpenCV can write"):
        write_image(tmp_path / "strip.nope", np.zeros((8, 8, 3), np.uint8))
    assert not (tmp_path / "strip.nope").exists()
    write_image(tmp_path / "strip.png", np.zeros((8, 8, 3), np.uint8))
    assert (tmp_path / "strip.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["receive", "--listen", "0", "--video-kbps", "4"], "--video-kbps: video bitrate must be 8..20000 kbps, got 4"),
    (["receive", "--listen", "0", "--resolution", "4000"], "--resolution: video is shown at 16..1024 px, got 4000"),
])
def test_video_mode_settings_are_checked_in_one_line(argv, message, capsys):
    # receive without --avatar-peer is the video mode: its settings are checked before any call
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"nerfconf: error: {message}\n"

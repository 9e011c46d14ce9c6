import json
from pathlib import Path

import pytest

from nerfconf.cli import main

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


@pytest.mark.parametrize("argv", [["netem"], ["bench", "transport"]])
def test_commands_explain_themselves(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "loopback" in capsys.readouterr().out


def test_netem_refuses_a_real_network_in_one_line(capsys):
    assert main(["netem", "--target", "192.168.1.1:4433", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "Traceback" not in err


def test_bench_transport_json_short_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NERFCONF_CONFIG_DIR", str(tmp_path))
    assert main(["bench", "transport", "--json", "--seconds", "3", "--conditions", "clean", "--modes", "datagram",
                 "--traces", str(TRACES if TRACES.is_dir() else tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    (run,) = result["runs"]
    assert run["alive"] and run["condition"] == "clean" and run["mode"] == "datagram"
    for direction in ("client_to_server", "server_to_client"):
        d = run[direction]
        assert d["frames_sent"] == 60
        assert d["lost_after_redundancy"] == 0
        assert 10.0 <= d["latency_ms_p50"] < d["latency_ms_max"] < 1000  # 10 ms one-way emulated delay
        assert d["wire_kbps"] > d["payload_kbps"] > 1
        # without the handshake: ~100 B packets at 20 a second, each a frame with the QUIC ACK and the
        # peer's ack in it (no copies on a clean link); ACK-only packets and copies made it ~37 kbps
        assert d["payload_kbps"] < d["wire_kbps_steady"] < min(22.0, d["wire_kbps"])


def test_bench_transport_rejects_unknown_conditions(tmp_path, capsys):
    assert main(["bench", "transport", "--conditions", "moon", "--traces", str(tmp_path)]) == 2
    assert "unknown condition" in capsys.readouterr().err

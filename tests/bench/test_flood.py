import json
import random

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from nerfconf.bench.flood import PACKET_BYTES, fake_initial
from nerfconf.cli import main


@pytest.mark.parametrize("token", [b"", b"t" * 40, b"t" * 300])
def test_a_fake_initial_parses_as_a_quic_v1_initial(token):
    rng = random.Random(0)
    data = fake_initial(rng, token=token)
    header = pull_quic_header(Buffer(data=data), host_cid_length=8)
    assert len(data) == PACKET_BYTES
    assert header.packet_type == QuicPacketType.INITIAL and header.version == 1
    assert header.token == token and len(header.destination_cid) == 8
    assert fake_initial(rng)[6:14] != data[6:14]  # a fresh destination connection ID each time
    with pytest.raises(ValueError, match="no room for a payload"):
        fake_initial(rng, size=40)


def test_bench_flood_json_short_run(capsys):
    assert main(["bench", "flood", "--json", "--packets", "600", "--seconds", "1", "--quiet-seconds", "2.5",
                 "--after-seconds", "0.5", "--sources", "4"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["alive"] and r["packets_sent"] == 600
    assert r["packets_answered"] >= 300  # the server read the flood and answered it statelessly
    assert r["server_connections_peak"] == 1  # the legitimate peer only
    assert r["quiet"]["frames_acked"] == r["quiet"]["frames_sent"] > 20
    assert 19 <= r["flood"]["frames_sent"] <= 21 and r["flood"]["frames_acked"] >= r["flood"]["frames_sent"] - 2
    assert 0 < r["quiet"]["ack_ms_p50"] <= r["quiet"]["ack_ms_p95"] < 1000
    assert r["server_rss_mb_before"] > 0 and r["server_rss_growth_mb"] < 50


def test_bench_flood_refuses_bad_settings_in_one_line(capsys):
    assert main(["bench", "flood", "--sources", "0"]) == 2
    err = capsys.readouterr().err
    assert "sources must be 1..254" in err and "Traceback" not in err

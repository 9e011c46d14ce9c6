import asyncio
import itertools
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from nerfconf.net.errors import NetemError
from nerfconf.net.netem import (
    GilbertElliott,
    LinkModel,
    LinkSpec,
    NetemRelay,
    load_alphartc,
    load_mahimahi,
)
from nerfconf.net.netem.traces import AlphaRtcTrace, MahimahiTrace, TraceSegment

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


def _run(spec, n=2000, seed=3, size=100, interval=0.01):
    model = LinkModel(spec, seed=seed)
    return [model.submit(i * interval, size) for i in range(n)], model


def test_same_seed_same_decisions_other_seed_others():
    spec = LinkSpec(delay_ms=10, jitter_ms=5, reorder=True, loss=0.1)
    a, _ = _run(spec)
    b, _ = _run(spec)
    c, _ = _run(spec, seed=4)
    assert a == b
    assert a != c


def test_random_loss_rate():
    out, model = _run(LinkSpec(loss=0.1), n=20000)
    assert abs(sum(o is None for o in out) / len(out) - 0.1) < 0.01
    assert model.stats.lost == sum(o is None for o in out)


def test_gilbert_elliott_loses_in_bursts():
    ge = GilbertElliott(p_good_bad=0.02, p_bad_good=0.25)
    out, _ = _run(LinkSpec(gilbert=ge), n=50000)
    lost = np.array([o is None for o in out])
    assert abs(lost.mean() - ge.mean_loss) < 0.015
    # mean burst length 1 / p_bad_good = 4 packets, far above random loss's ~1.08
    edges = np.flatnonzero(np.diff(np.r_[0, lost.astype(int), 0]))
    bursts = edges[1::2] - edges[::2]
    assert 3.3 < bursts.mean() < 4.7


def test_delay_without_reordering_keeps_order():
    out, _ = _run(LinkSpec(delay_ms=20, jitter_ms=15))
    assert all(b >= a for a, b in itertools.pairwise(out))
    reordered, _ = _run(LinkSpec(delay_ms=20, jitter_ms=15, reorder=True))
    assert any(b < a for a, b in itertools.pairwise(reordered))
    assert all(d - i * 0.01 >= 0 for i, d in enumerate(reordered))


def test_rate_cap_serialises_and_tail_drops():
    # 100 B every 10 ms = 80 kbps into a 40 kbps link: the queue fills, then drops
    out, model = _run(LinkSpec(rate_kbps=40, queue_bytes=2000), n=1000)
    delivered = [o for o in out if o is not None]
    assert all(b - a >= 100 * 8 / 40000 - 1e-9 for a, b in itertools.pairwise(delivered))
    assert model.stats.queue_drops > 400
    assert model.stats.max_queue_bytes <= 2000


def test_mahimahi_delivers_on_opportunities():
    trace = MahimahiTrace(np.array([0.005, 0.005, 0.020]), 0.020)
    model = LinkModel(LinkSpec(mahimahi=trace))
    # two 1500 B packets at t=0 use both opportunities at 5 ms; a third waits for 20 ms
    assert [model.submit(0.0, 1500) for _ in range(3)] == [0.005, 0.005, 0.020]
    # small packets share an opportunity's 1500 bytes; the trace repeats every 20 ms
    assert model.submit(0.021, 700) == pytest.approx(0.025)
    assert model.submit(0.021, 700) == pytest.approx(0.025)
    assert model.submit(0.021, 700) == pytest.approx(0.025)  # 2nd opportunity at 25 ms


def test_alphartc_capacity_and_loss_segments():
    trace = AlphaRtcTrace((TraceSegment(1.0, 8.0, loss=0.0, rtt_ms=40), TraceSegment(1.0, 0.0, loss=1.0)))
    model = LinkModel(LinkSpec(alphartc=trace))
    # 500 B at 8 kbps take 0.5 s, then half the 40 ms RTT
    assert model.submit(0.2, 500) == pytest.approx(0.2 + 0.5 + 0.02)
    # 100 B fit before 1 s; the rest waits out the empty segment and resumes when the pattern repeats
    assert model.submit(0.9, 500) == pytest.approx(2.0 + 0.4 + 0.02)
    assert model.submit(1.5, 100) is None  # loss 1.0 in the second segment


@pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/traces not present")
def test_shared_traces_load():
    assert load_alphartc(TRACES / "alphartc/4G_500kbps.json").period_s > 100
    mm = load_mahimahi(TRACES / "mahimahi/TMobile-UMTS-driving.up")
    assert mm.period_s > 100 and len(mm.opportunities) > 1000


def test_bad_traces_and_settings_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"uplink": {"trace_pattern": [{"duration": -1, "capacity": 5}]}}))
    with pytest.raises(NetemError, match="not an AlphaRTC trace"):
        load_alphartc(bad)
    (tmp_path / "mm").write_text("5\n3\n")
    with pytest.raises(NetemError, match="non-decreasing"):
        load_mahimahi(tmp_path / "mm")
    with pytest.raises(NetemError):
        LinkSpec(loss=1.5)
    with pytest.raises(NetemError, match="one of"):
        LinkSpec(rate_kbps=50, mahimahi=MahimahiTrace(np.array([0.001]), 0.001))


@pytest.mark.parametrize("target", [("10.1.2.3", 9), ("8.8.8.8", 53), ("example.com", 1)])
def test_relay_refuses_non_loopback_targets(target):
    with pytest.raises(NetemError, match="loopback"):
        NetemRelay(target, LinkSpec(), LinkSpec())


def test_relay_refuses_non_loopback_listen_address():
    with pytest.raises(NetemError, match="loopback"):
        NetemRelay(("127.0.0.1", 9), LinkSpec(), LinkSpec(), listen=("0.0.0.0", 0))


def test_relay_forwards_both_ways_with_delay():
    async def main():
        loop = asyncio.get_running_loop()
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind(("127.0.0.1", 0))
        echo.setblocking(False)
        got = asyncio.Queue()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, t):
                self.t = t

            def datagram_received(self, data, addr):
                self.t.sendto(data.upper(), addr)

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.put_nowait((loop.time(), data))

        await loop.create_datagram_endpoint(Echo, sock=echo)
        spec = LinkSpec(delay_ms=30)
        async with NetemRelay(echo.getsockname(), spec, spec) as relay:
            transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=relay.address)
            t0 = loop.time()
            transport.sendto(b"ping")
            t, data = await asyncio.wait_for(got.get(), 2)
            transport.close()
            assert data == b"PING"
            assert t - t0 >= 0.058
            assert relay.stats().up.delivered == 1 and relay.stats().down.delivered == 1
        echo.close()

    asyncio.run(main())

import asyncio
import itertools
import json
import socket
import time
from fractions import Fraction
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
from nerfconf.net.netem.link import MAX_DELAY_MS, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_PACKETS
from nerfconf.net.netem.relay import MAX_CLIENTS
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


def _pattern(tmp_path, *segments):
    path = tmp_path / "pattern.json"
    path.write_text(json.dumps({"uplink": {"trace_pattern": list(segments)}}))  # NaN is written as NaN
    return path


def test_bad_traces_and_settings_are_named(tmp_path):
    (tmp_path / "bad.json").write_text("{\"uplink\": []}")
    with pytest.raises(NetemError, match="not an AlphaRTC trace"):
        load_alphartc(tmp_path / "bad.json")
    (tmp_path / "mm").write_text("5\n3\n")
    with pytest.raises(NetemError, match="non-decreasing"):
        load_mahimahi(tmp_path / "mm")
    with pytest.raises(NetemError):
        LinkSpec(loss=1.5)
    with pytest.raises(NetemError, match="one of"):
        LinkSpec(rate_kbps=50, mahimahi=MahimahiTrace(np.array([0.001]), 0.001))


@pytest.mark.parametrize(("segments", "message"), [
    # a pattern that never delivers would hold every packet forever
    ([{"duration": 100, "capacity": 0}, {"duration": 50, "capacity": 0.0}], r"every segment has capacity 0"),
    ([{"duration": 100, "capacity": 5}, {"duration": float("nan"), "capacity": 5}],
     r"trace_pattern\[1\]: duration must be finite and at least 1 ms, got nan"),
    ([{"duration": 100, "capacity": 5, "rtt": -20}], r"trace_pattern\[0\]: rtt must be 0\.\.20000 ms, got -20"),
    # a segment this short made the link walk 1e300 segments per packet, and --seconds never came
    ([{"duration": 1e-300, "capacity": 5}], r"duration must be finite and at least 1 ms, got 1e-300"),
    ([{"duration": 100, "capacity": float("inf")}], r"capacity must be finite and at least 0 kbps, got inf"),
    ([{"duration": 100, "capacity": 1e-9}], r"capacity must be 0 \(an outage\) or at least 0\.001 kbps"),
    ([{"duration": 100, "capacity": 5, "loss": float("nan")}], r"loss must be 0\.\.1, got nan"),
    ([{"duration": 100, "capacity": 5, "jitter": 1e6}], r"jitter must be 0\.\.10000 ms"),
    ([{"duration": "100", "capacity": 5}], r"duration must be a number, got '100'"),
    ([{"duration": 10**400, "capacity": 5}], r"duration must be finite and at least 1 ms, got inf"),
    ([{"capacity": 5}], r"trace_pattern\[0\]: duration and capacity are required"),
    ([], r"the trace_pattern is empty"),
])
def test_nonsense_alphartc_patterns_are_refused_by_field(tmp_path, segments, message):
    with pytest.raises(NetemError, match=message) as exc:
        load_alphartc(_pattern(tmp_path, *segments))
    assert str(exc.value).startswith(str(tmp_path / "pattern.json")) and "\n" not in str(exc.value)


@pytest.mark.parametrize(("field", "value"), [
    ("delay_ms", float("nan")), ("delay_ms", float("inf")), ("jitter_ms", float("inf")), ("jitter_ms", -1.0),
    ("rate_kbps", float("nan")), ("rate_kbps", float("inf")), ("rate_kbps", 0.0), ("rate_kbps", 1e-320),
    ("loss", float("nan")),
])
def test_non_finite_settings_are_refused_by_name(field, value):
    with pytest.raises(NetemError, match=f"^{field.removesuffix('_ms').removesuffix('_kbps')} must be"):
        LinkSpec(**{field: value})


def _walk(trace, start, bits):
    """Reference: the departure time found by walking the pattern segment by segment, in exact arithmetic."""
    durations = [Fraction(s.duration_s) for s in trace.segments]
    rates = [Fraction(s.capacity_kbps) * 1000 for s in trace.segments]
    t, bits, i = Fraction(0), Fraction(bits), 0
    while t + durations[i] <= start:  # to the segment in force at start
        t, i = t + durations[i], (i + 1) % len(durations)
    t_from = Fraction(start)
    while True:
        end = t + durations[i]
        if rates[i] > 0 and t_from + bits / rates[i] <= end:
            return float(t_from + bits / rates[i])
        bits -= rates[i] * (end - t_from)
        t = t_from = end
        i = (i + 1) % len(durations)


def test_pattern_departures_match_a_walk_through_the_segments():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        caps = rng.choice([0.0, 0.5, 8.0, 300.0], size=n)
        caps[rng.integers(n)] = 8.0
        trace = AlphaRtcTrace(tuple(TraceSegment(float(d), float(c)) for d, c in zip(rng.uniform(0.01, 0.5, n), caps)))
        start, bits = float(rng.uniform(0, 3)), float(rng.uniform(1, 12_000))
        assert trace.departure(start, bits) == pytest.approx(_walk(trace, start, bits), rel=1e-9, abs=1e-9)


def test_a_slow_pattern_costs_no_more_than_a_fast_one():
    # 1 bit/s in 1 ms out of every 2: a 1000-byte packet takes 16000 s, 8 million periods,
    # which a walk through the segments spent minutes of the event loop on
    trace = AlphaRtcTrace((TraceSegment(0.001, 0.001), TraceSegment(0.001, 0.0)))
    model = LinkModel(LinkSpec(alphartc=trace, queue_bytes=10_000))
    t0 = time.perf_counter()
    out = [model.submit(i * 0.01, 1000) for i in range(1000)]
    assert time.perf_counter() - t0 < 1.0
    assert out[0] == pytest.approx(16_000, rel=1e-6)
    assert out[1] == pytest.approx(32_000, rel=1e-6)
    assert model.stats.queue_drops == 1000 - 10  # the 10 kB queue holds ten of them


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


async def _echo_server():
    """A UDP server that answers every datagram with it in capitals; (its socket, address)."""
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t

        def datagram_received(self, data, addr):
            self.t.sendto(data.upper(), addr)

    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")


async def _ask(address, payload=b"ping", timeout=1.0):
    """Sends one datagram from a new client socket; the answer, or None if none came in time."""
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=address)
    transport.sendto(payload)
    try:
        return await asyncio.wait_for(got, timeout)
    except TimeoutError:
        return None
    finally:
        transport.close()


def test_a_new_clients_first_packet_is_delivered():
    async def main():
        echo, address = await _echo_server()
        async with NetemRelay(address, LinkSpec(), LinkSpec()) as relay:
            # no delay: the packet is due before the client's upstream socket has opened
            assert await _ask(relay.address) == b"PING"
            assert relay.stats().up.delivered == 1 and relay.stats().down.delivered == 1
        echo.close()

    asyncio.run(main())


@pytest.mark.parametrize("idle_s", [0.2, 30.0])
def test_idle_clients_make_room_for_new_ones(idle_s):
    async def main():
        echo, address = await _echo_server()
        async with NetemRelay(address, LinkSpec(), LinkSpec(), client_idle_s=idle_s) as relay:
            answers = await asyncio.gather(*(_ask(relay.address, b"c%d" % i) for i in range(MAX_CLIENTS)))
            assert answers == [b"C%d" % i for i in range(MAX_CLIENTS)]
            await asyncio.sleep(0.3)
            late = await _ask(relay.address, b"late", timeout=0.3)
            stats = relay.stats()
        echo.close()
        return late, stats

    late, stats = asyncio.run(main())
    if idle_s < 0.3:  # every client has been quiet for longer than that: their sockets give way
        assert late == b"LATE"
        assert stats.expired_clients == MAX_CLIENTS and stats.clients == 1 and stats.refused_clients == 0
    else:  # all still within their idle time: the table is full
        assert late is None
        assert stats.expired_clients == 0 and stats.clients == MAX_CLIENTS and stats.refused_clients == 1


def test_delay_is_bounded_and_what_a_link_holds_is_capped():
    with pytest.raises(NetemError, match=r"delay must be 0\.\.10000 ms, got 1e\+09"):
        LinkSpec(delay_ms=1e9)
    with pytest.raises(NetemError, match="jitter must be"):
        LinkSpec(jitter_ms=float("nan"))
    model = LinkModel(LinkSpec(delay_ms=MAX_DELAY_MS))
    out = [model.submit(i * 1e-6, 10) for i in range(MAX_IN_FLIGHT_PACKETS + 100)]
    assert sum(o is not None for o in out) == MAX_IN_FLIGHT_PACKETS
    assert model.stats.overflow_drops == 100
    # once the first packets have been delivered there is room again
    assert model.submit(MAX_DELAY_MS / 1000 + 0.01, 10) is not None
    big = LinkModel(LinkSpec(delay_ms=MAX_DELAY_MS))
    held = [big.submit(0.0, 1400) for _ in range(MAX_IN_FLIGHT_BYTES // 1400 + 10)]
    assert sum(h is not None for h in held) == MAX_IN_FLIGHT_BYTES // 1400

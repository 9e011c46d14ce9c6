"""``nerfconf bench flood``: a flood of fake QUIC Initials against a listening peer during a live call.

Three processes on loopback, so that neither the attacker nor the legitimate
peer shares an event loop (or the GIL) with the server under attack:

* the server: ``listen`` as ``nerfconf receive --listen`` does, acking every frame it receives;
* the legitimate peer (this process): joins, sends a coded face-parameter track at 20 fps
  and records when each frame's ack comes back;
* the flooder: after a quiet phase, sends ``packets`` UDP datagrams of 1200 B spread
  evenly over ``seconds``, each a QUIC v1 Initial with a random destination connection ID
  and a payload no key decrypts, from ``sources`` loopback addresses (127.0.1.x).

Measured: acks the legitimate peer receives per second and ack latency (frame sent to its
ack back) in the quiet phase and during the flood; the server's RSS (from /proc) before
the flood and at its peak; the most connection objects the server held at once.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import numpy as np

FPS = 20.0
PACKET_BYTES = 1200
QUIC_V1 = 0x00000001
#: the legitimate call's first second is not counted: the handshake and the first acks settle
WARMUP_S = 1.0
#: seconds the server, the flooder and the join may take to start
START_TIMEOUT = 60.0


def fake_initial(rng: random.Random, size: int = PACKET_BYTES, token: bytes = b"") -> bytes:
    """A QUIC v1 Initial of ``size`` bytes: random connection IDs, ``token``, and random bytes for a payload."""
    if len(token) > 16383:
        raise ValueError("a token of at most 16383 bytes (a two-byte length)")
    token_len = bytes((len(token),)) if len(token) < 64 else (0x4000 | len(token)).to_bytes(2, "big")
    # long header, fixed bit, type Initial, 4-byte packet number
    head = (bytes((0xC3,)) + QUIC_V1.to_bytes(4, "big") + bytes((8,)) + rng.randbytes(8) + bytes((8,))
            + rng.randbytes(8) + token_len + token)
    remaining = size - len(head) - 2
    if remaining < 20:
        raise ValueError(f"{size} B leaves no room for a payload after a {len(head)} B header")
    return head + (0x4000 | remaining).to_bytes(2, "big") + rng.randbytes(remaining)


def flood_sources(n: int) -> list[str]:
    """``n`` loopback addresses, 127.0.1.1 onwards: Linux answers for all of 127/8 without set-up."""
    if not 1 <= n <= 254:
        raise ValueError(f"sources must be 1..254, got {n}")
    return [f"127.0.1.{k}" for k in range(1, n + 1)]


@dataclass(frozen=True)
class FloodSent:
    packets_sent: int
    #: datagrams the server sent back to the flood's sources (stateless Retries and closes)
    replies: int
    #: time.monotonic() at the first and after the last packet
    t_start: float
    t_end: float


def send_flood(port: int, packets: int, seconds: float, sources: int, seed: int = 0, host: str = "127.0.0.1",
               tokens: bool = False) -> FloodSent:
    """Sends ``packets`` fake Initials to ``host:port`` evenly over ``seconds``, blocking.

    With ``tokens`` every other packet carries a random 32-byte token (one no server issued).
    """
    rng = random.Random(seed)
    socks: list[socket.socket] = []
    replies = 0

    def drain() -> None:
        nonlocal replies
        for s in socks:
            while True:
                try:
                    s.recv(2048)
                except BlockingIOError:
                    break
                replies += 1

    try:
        for address in flood_sources(sources):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((address, 0))
            s.setblocking(False)
        t0 = time.monotonic()
        sent = 0
        for i in range(packets):
            delay = t0 + i * seconds / packets - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            token = rng.randbytes(32) if tokens and i % 2 else b""
            try:
                socks[i % len(socks)].sendto(fake_initial(rng, token=token), (host, port))
                sent += 1
            except BlockingIOError:
                pass  # a full send buffer: the packet is lost, as it would be on a real link
            if i % 64 == 0:
                drain()
        t_end = time.monotonic()
        time.sleep(0.2)  # the server's last answers
        drain()
        return FloodSent(sent, replies, t0, t_end)
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class Phase:
    """The legitimate call in one phase (quiet, or under the flood); acks counted per 1 s bin."""

    seconds: float
    frames_sent: int
    frames_acked: int
    acks_per_second_min: int
    acks_per_second_mean: float
    ack_ms_p50: float
    ack_ms_p95: float


@dataclass(frozen=True)
class ServerReport:
    connections_peak: int
    connections_at_end: int
    refusals: list[str]


@dataclass(frozen=True)
class FloodBench:
    """``nerfconf bench flood``."""

    packets: int
    packets_sent: int
    #: stateless answers (Retries, closes) the flood's sources got back
    packets_answered: int
    packet_bytes: int
    flood_seconds: float
    sources: int
    fps: float
    quiet: Phase
    flood: Phase
    server_rss_mb_before: float
    server_rss_mb_peak: float
    server_rss_growth_mb: float
    server_rss_mb_at_end: float
    server_connections_peak: int
    #: the legitimate call stayed up throughout
    alive: bool
    error: str | None


# -- the server process ----------------------------------------------------------------


def _serve(pipe: Pipe, identity_dir: str) -> None:
    asyncio.run(_serve_async(pipe, Path(identity_dir)))


async def _serve_async(pipe: Pipe, identity_dir: Path) -> None:
    from nerfconf.net import ConnectionClosedError, Feedback, TransportConfig, listen  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(pipe.fileno(), stop.set)
    async with listen("127.0.0.1", 0, None, TransportConfig(identity_dir=identity_dir)) as server:
        pipe.send(str(server.join_info))
        peak = 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, server.connections)
                await asyncio.sleep(0.05)

        async def ack_every_frame() -> None:
            conn = await server.accept()
            try:
                while True:
                    received = await conn.recv_frame()
                    conn.send_feedback(Feedback(acks=(received.seq,)))
            except ConnectionClosedError:
                return

        tasks = [loop.create_task(sample()), loop.create_task(ack_every_frame())]
        await stop.wait()
        loop.remove_reader(pipe.fileno())
        pipe.recv()
        for task in tasks:
            task.cancel()
        pipe.send(ServerReport(peak, server.connections, list(server.refusals)))


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# -- the flooder process -----------------------------------------------------------------


def _flood(pipe: Pipe, port: int, packets: int, seconds: float, sources: int, seed: int) -> None:
    pipe.recv()  # go
    pipe.send(send_flood(port, packets, seconds, sources, seed))


# -- the legitimate peer ---------------------------------------------------------------------


def _phase(sent_at: dict[int, float], acked_at: dict[int, float], t0: float, t1: float) -> Phase:
    frames = [seq for seq, t in sent_at.items() if t0 <= t < t1]
    latencies = [acked_at[seq] - sent_at[seq] for seq in frames if seq in acked_at]
    arrivals = np.array([t for t in acked_at.values() if t0 <= t < t1])
    bins = max(1, math.floor(t1 - t0 + 0.01))  # whole seconds; a window a hair short of one still counts
    per_second = np.histogram(arrivals, bins=bins, range=(t0, t0 + bins))[0] if arrivals.size else np.zeros(bins)
    return Phase(
        seconds=t1 - t0,
        frames_sent=len(frames),
        frames_acked=len(latencies),
        acks_per_second_min=int(per_second.min()),
        acks_per_second_mean=float(per_second.mean()),
        ack_ms_p50=float(np.percentile(latencies, 50)) * 1000 if latencies else math.nan,
        ack_ms_p95=float(np.percentile(latencies, 95)) * 1000 if latencies else math.nan,
    )


async def _recv_pipe(pipe: Pipe, what: str) -> object:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, pipe.poll, START_TIMEOUT):
        raise RuntimeError(f"the {what} did not answer within {START_TIMEOUT:g} s")
    return pipe.recv()


async def _call_under_flood(*, packets: int, seconds: float, quiet_seconds: float, after_seconds: float,
                            sources: int, seed: int, identity_dir: Path) -> FloodBench:
    from nerfconf.bench.codec import make_config  # noqa: PLC0415
    from nerfconf.codec.config import CodecConfig, Reference  # noqa: PLC0415
    from nerfconf.codec.encoder import ParamEncoder  # noqa: PLC0415
    from nerfconf.codec.entropy import CoderId  # noqa: PLC0415
    from nerfconf.net import Feedback, JoinInfo, TransportConfig, TransportError, connect  # noqa: PLC0415
    from nerfconf.tracks import synthetic_track  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    frames = round((quiet_seconds + seconds + after_seconds) * FPS)
    full = synthetic_track(300 + frames, fps=FPS, seed=seed)
    train, track = full.slice(0, 300), full.slice(300)
    codec = make_config(train, 8, CoderId.ARITHMETIC, Reference.ANCHOR, CodecConfig.gop_from_seconds(1.0, FPS))
    encoder = ParamEncoder(codec)

    ctx = multiprocessing.get_context("spawn")
    server_pipe, server_end = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(server_end, str(identity_dir)), daemon=True)
    server.start()
    flooder: multiprocessing.process.BaseProcess | None = None
    try:
        join = str(await _recv_pipe(server_pipe, "server"))
        port = JoinInfo.parse(join).port
        flood_pipe, flood_end = ctx.Pipe()
        flooder = ctx.Process(target=_flood, args=(flood_end, port, packets, seconds, sources, seed), daemon=True)
        flooder.start()

        sent_at: dict[int, float] = {}
        acked_at: dict[int, float] = {}
        rss: list[tuple[float, float]] = []
        error: str | None = None

        def on_feedback(fb: Feedback) -> None:
            now = loop.time()
            for seq in fb.acks:
                acked_at.setdefault(seq, now)

        async def sample_rss() -> None:
            while True:
                rss.append((loop.time(), _rss_mb(server.pid)))
                await asyncio.sleep(0.1)

        sampler = loop.create_task(sample_rss())
        flood_started = False
        t0 = loop.time()
        try:
            async with connect(join, TransportConfig(identity_dir=identity_dir)) as conn:
                conn.attach_encoder(encoder)
                conn.on_feedback(on_feedback)
                t0 = loop.time()
                go_at = t0 + quiet_seconds
                for k in range(frames):
                    await asyncio.sleep(max(0.0, t0 + k / FPS - loop.time()))
                    if not flood_started and loop.time() >= go_at:
                        flood_pipe.send("go")
                        flood_started = True
                    params = track.params(k)
                    params.t_capture = k / FPS
                    frame = encoder.encode(params)
                    sent_at[frame.seq] = loop.time()
                    conn.send_frame(frame)
                await asyncio.sleep(1.0)  # the last acks
        except TransportError as exc:
            error = str(exc)
        if not flood_started:
            raise RuntimeError(f"the legitimate call failed before the flood began: {error}")
        flood = await _recv_pipe(flood_pipe, "flooder")
        assert isinstance(flood, FloodSent)
        sampler.cancel()
        server_pipe.send("stop")
        report = await _recv_pipe(server_pipe, "server")
        assert isinstance(report, ServerReport)
    finally:
        for proc in (server, flooder):
            if proc is not None and proc.is_alive():
                proc.terminate()
                proc.join(5)
    f0, f1 = flood.t_start, flood.t_end  # time.monotonic() in the flooder: the clock loop.time() reads here
    before = [m for t, m in rss if t < f0]
    peak = max((m for t, m in rss), default=math.nan)
    rss_before = before[-1] if before else math.nan
    return FloodBench(
        packets=packets,
        packets_sent=flood.packets_sent,
        packets_answered=flood.replies,
        packet_bytes=PACKET_BYTES,
        flood_seconds=seconds,
        sources=sources,
        fps=FPS,
        quiet=_phase(sent_at, acked_at, t0 + WARMUP_S, f0),
        flood=_phase(sent_at, acked_at, f0, f1),
        server_rss_mb_before=rss_before,
        server_rss_mb_peak=peak,
        server_rss_growth_mb=peak - rss_before,
        server_rss_mb_at_end=rss[-1][1] if rss else math.nan,
        server_connections_peak=report.connections_peak,
        alive=error is None,
        error=error,
    )


def bench_flood(*, packets: int = 20_000, seconds: float = 10.0, quiet_seconds: float = 10.0,
                after_seconds: float = 5.0, sources: int = 16, seed: int = 0) -> FloodBench:
    """A legitimate call through quiet, flood and after phases; see the module docstring."""
    if packets < 1 or seconds <= 0:
        raise ValueError("the flood needs at least one packet and a positive length")
    if quiet_seconds < WARMUP_S + 1 or after_seconds < 0:
        raise ValueError(f"the quiet phase needs at least {WARMUP_S + 1:g} s, and the after phase >= 0 s")
    flood_sources(sources)  # checks the count
    with tempfile.TemporaryDirectory(prefix="nerfconf-bench-") as identity_dir:
        return asyncio.run(_call_under_flood(packets=packets, seconds=seconds, quiet_seconds=quiet_seconds,
                                             after_seconds=after_seconds, sources=sources, seed=seed,
                                             identity_dir=Path(identity_dir)))

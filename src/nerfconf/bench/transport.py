"""``nerfconf bench transport``: a real two-way call over loopback QUIC through the network emulator.

Per condition and mode, two peers (a listening "server" and a joining
"client") each encode a face-parameter track at 20 fps with the anchor
codec, send it with :mod:`nerfconf.net`, decode what arrives, ack decoded
frames and ask for I-frames when a reference is missing. A
:class:`~nerfconf.net.netem.NetemRelay` between them applies the condition
in both directions. Everything runs in one event loop, so sender and
receiver read the same clock:

* one-way transport latency: ``recv_frame`` return time minus ``send_frame`` time;
* frames lost after redundancy: sent, never delivered (the last second is not counted);
* playout: the arrival log is replayed through :class:`~nerfconf.playout.PlayoutBuffer`
  (pure), slot by slot, giving concealed frames and the longest stall;
* bytes: coded payload, and UDP packets with IP/UDP headers as each peer sent them, over
  the whole run (the handshake included) and from ``WARMUP_S`` into the call to its last frame
  (what each further second of a call costs).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.bench.codec import make_config
from nerfconf.codec.config import CodecConfig, Reference
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.errors import BitstreamError, MissingReferenceError
from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net import Connection, Feedback, JoinInfo, TransportConfig, connect, listen
from nerfconf.net.errors import ConnectionClosedError, TransportError
from nerfconf.net.netem import CONDITIONS, NetemRelay
from nerfconf.playout import PlayoutBuffer, PlayoutConfig
from nerfconf.tracks import ParamTrack, synthetic_track
from nerfconf.types import FaceParams

FPS = 20.0
MODES = ("datagram", "stream")
#: frames sent in the last DRAIN_S are not counted as lost: they may still be in flight
DRAIN_S = 1.0
#: I-frame requests are rate-limited to one per this many seconds
IFRAME_REQUEST_INTERVAL = 0.1
#: the steady wire rate is counted from this far into the call (at most half the run)
WARMUP_S = 5.0


@dataclass(frozen=True)
class DirectionResult:
    frames_sent: int
    #: frames that arrived and decoded
    frames_decoded: int
    lost_after_redundancy: int
    lost_fraction: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    #: longest time between two new frames arriving
    max_arrival_gap_ms: float
    undecodable: int
    iframe_requests: int
    playout_shown: int
    playout_concealed: int
    playout_late: int
    #: longest run of concealed frames at playout
    longest_stall_ms: float
    playout_delay_ms: float
    #: what the sending peer put on the wire: coded frames, and every UDP packet (ACKs included)
    payload_kbps: float
    wire_kbps: float
    #: every UDP packet from WARMUP_S into the call to its last frame: the rate without the handshake
    wire_kbps_steady: float
    retransmissions: int
    stale_datagrams_dropped: int


@dataclass(frozen=True)
class RunResult:
    condition: str
    description: str
    mode: str
    seconds: float
    #: None when the call never came up
    client_to_server: DirectionResult | None
    server_to_client: DirectionResult | None
    #: the call stayed up for the whole run in both directions
    alive: bool
    error: str | None


@dataclass(frozen=True)
class TransportBench:
    """``nerfconf bench transport``: every condition in every mode."""

    fps: float
    seconds: float
    seed: int
    track: str
    codec: str
    transport: TransportConfig
    runs: list[RunResult]


@dataclass
class _Peer:
    name: str
    encoder: ParamEncoder
    decoder: ParamDecoder
    sent_at: dict[int, float]
    arrivals: list[tuple[float, FaceParams]]
    latencies: list[float]
    arrival_times: list[float]
    #: sequence numbers the transport delivered, decodable or not
    received_seqs: set[int]
    undecodable: int = 0
    iframe_requests: int = 0
    last_iframe_request: float = -math.inf


def _make_peer(name: str, config: CodecConfig) -> _Peer:
    return _Peer(name, ParamEncoder(config), ParamDecoder(config), {}, [], [], [], set())


async def _send_loop(conn: Connection, peer: _Peer, track: ParamTrack, t0: float, frames: int) -> None:
    loop = asyncio.get_running_loop()
    for k in range(frames):
        await asyncio.sleep(max(0.0, t0 + k / FPS - loop.time()))
        params = track.params(k % len(track))
        params.t_capture = k / FPS
        frame = peer.encoder.encode(params)
        peer.sent_at[k] = loop.time()
        conn.send_frame(frame, deadline=loop.time() + conn.config.max_age)


async def _recv_loop(conn: Connection, sender: _Peer, receiver: _Peer) -> None:
    while True:
        try:
            received = await conn.recv_frame()
        except ConnectionClosedError:
            return
        receiver.received_seqs.add(received.seq)
        try:
            decoded = receiver.decoder.decode(received.data)
        except MissingReferenceError:
            receiver.undecodable += 1
            if received.t_arrival - receiver.last_iframe_request >= IFRAME_REQUEST_INTERVAL:
                receiver.last_iframe_request = received.t_arrival
                receiver.iframe_requests += 1
                conn.send_feedback(Feedback(iframe_request=True))
            continue
        except BitstreamError:
            receiver.undecodable += 1
            continue
        index = decoded.params.index
        sent = sender.sent_at.get(index)
        if sent is not None:
            receiver.latencies.append(received.t_arrival - sent)
        receiver.arrival_times.append(received.t_arrival)
        receiver.arrivals.append((received.t_arrival, decoded.params))
        conn.send_feedback(Feedback(acks=(decoded.seq,)))


def replay_playout(arrivals: list[tuple[float, FaceParams]], last_index: int) -> PlayoutBuffer:
    """Feeds an arrival log through a playout buffer, popping every slot up to ``last_index`` at its due time."""
    buffer = PlayoutBuffer(PlayoutConfig(fps=FPS))
    events = sorted(arrivals, key=lambda a: a[0])
    i = 0
    while True:
        due = buffer.next_due()
        t_next_arrival = events[i][0] if i < len(events) else math.inf
        if due is not None and due <= t_next_arrival:
            frame = buffer.pop(due)
            if frame is not None and frame.index >= last_index:
                break
        elif i < len(events):
            buffer.push(events[i][1], events[i][0])
            i += 1
        else:
            break
    return buffer


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else math.nan


@dataclass(frozen=True)
class _WireMark:
    t: float
    client_bytes: int
    server_bytes: int


def _mark(t: float, client: Connection, server: Connection) -> _WireMark:
    return _WireMark(t, client.stats().wire_bytes_sent, server.stats().wire_bytes_sent)


def _steady_kbps(start: _WireMark | None, end: _WireMark, side: str) -> float:
    if start is None or end.t <= start.t:
        return math.nan
    sent = getattr(end, f"{side}_bytes") - getattr(start, f"{side}_bytes")
    return sent * 8 / (end.t - start.t) / 1000


def _direction(sender: _Peer, receiver: _Peer, conn_sender: Connection, seconds: float,
               t_last_counted: float, wire_kbps_steady: float) -> DirectionResult:
    counted = {k % SEQ_MODULO for k, t in sender.sent_at.items() if t <= t_last_counted}
    delivered = {p.index for _, p in receiver.arrivals}
    # frames that arrived but could not be decoded (reference lost) were not lost by the transport
    lost = len(counted - receiver.received_seqs)
    gaps = np.diff(sorted(receiver.arrival_times)) if len(receiver.arrival_times) > 1 else np.array([math.nan])
    playout = replay_playout(receiver.arrivals, len(sender.sent_at) - 1)
    stats = conn_sender.stats()
    return DirectionResult(
        frames_sent=len(sender.sent_at),
        frames_decoded=len(delivered),
        lost_after_redundancy=lost,
        lost_fraction=lost / len(counted) if counted else math.nan,
        latency_ms_p50=_percentile(receiver.latencies, 50),
        latency_ms_p95=_percentile(receiver.latencies, 95),
        latency_ms_p99=_percentile(receiver.latencies, 99),
        latency_ms_max=max(receiver.latencies) * 1000 if receiver.latencies else math.nan,
        max_arrival_gap_ms=float(np.max(gaps)) * 1000,
        undecodable=receiver.undecodable,
        iframe_requests=receiver.iframe_requests,
        playout_shown=playout.stats.shown,
        playout_concealed=playout.stats.concealed,
        playout_late=playout.stats.late,
        longest_stall_ms=playout.stats.longest_concealed_run / FPS * 1000,
        playout_delay_ms=playout.stats.delay * 1000,
        payload_kbps=stats.payload_bytes_sent * 8 / seconds / 1000,
        wire_kbps=stats.wire_bytes_sent * 8 / seconds / 1000,
        wire_kbps_steady=wire_kbps_steady,
        retransmissions=stats.retransmissions,
        stale_datagrams_dropped=stats.stale_datagrams_dropped,
    )


async def run_condition(condition: str, mode: str, *, seconds: float, traces: Path, codec: CodecConfig,
                        track: ParamTrack, seed: int = 0, identity_dir: Path | None = None) -> RunResult:
    cond = CONDITIONS[condition]
    up, down = cond.make(traces)
    config = TransportConfig(mode=mode, identity_dir=identity_dir)  # type: ignore[arg-type]
    frames = round(seconds * FPS)
    client, server = _make_peer("client", codec), _make_peer("server", codec)
    loop = asyncio.get_running_loop()
    error: str | None = None
    alive = True
    async with listen("127.0.0.1", 0, None, config) as srv:
        async with NetemRelay(("127.0.0.1", srv.join_info.port), up, down, seed=seed) as relay:
            host, port = relay.address
            join = JoinInfo(host, port, srv.join_info.fingerprint, srv.join_info.token)
            async with connect(join, config) as c_conn:
                s_conn = await asyncio.wait_for(srv.accept(), 10)
                c_conn.attach_encoder(client.encoder)
                s_conn.attach_encoder(server.encoder)
                t0 = loop.time() + 0.05
                receivers = [loop.create_task(_recv_loop(s_conn, client, server)),
                             loop.create_task(_recv_loop(c_conn, server, client))]
                marks: list[_WireMark] = []
                warmup = min(WARMUP_S, seconds / 2)
                loop.call_at(t0 + warmup, lambda: marks.append(_mark(loop.time(), c_conn, s_conn)))
                try:
                    # the peers' cameras are not in step: the server ticks half a frame after the client
                    await asyncio.gather(_send_loop(c_conn, client, track, t0, frames),
                                         _send_loop(s_conn, server, track, t0 + 0.5 / FPS, frames))
                except (ConnectionClosedError, TransportError) as exc:
                    alive, error = False, str(exc)
                end = _mark(loop.time(), c_conn, s_conn)
                t_last_counted = loop.time() - DRAIN_S
                await asyncio.sleep(DRAIN_S)
                alive = alive and c_conn.is_open and s_conn.is_open
                if not alive and error is None:
                    error = c_conn.close_reason or s_conn.close_reason
                for task in receivers:
                    task.cancel()
                start = marks[0] if marks else None
                up_result = _direction(client, server, c_conn, seconds, t_last_counted,
                                       _steady_kbps(start, end, "client"))
                down_result = _direction(server, client, s_conn, seconds, t_last_counted,
                                         _steady_kbps(start, end, "server"))
                await s_conn.close()
    return RunResult(condition, cond.description, mode, seconds, up_result, down_result, alive, error)


def bench_transport(
    *,
    seconds: float = 30.0,
    conditions: list[str] | None = None,
    modes: list[str] | None = None,
    traces: Path = Path("../shared/traces"),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TransportBench:
    """Runs every condition in every mode, one after another; ``progress`` is told after each run."""
    conditions = conditions or list(CONDITIONS)
    modes = modes or list(MODES)
    unknown = [c for c in conditions if c not in CONDITIONS] + [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown condition or mode: {', '.join(unknown)} "
                         f"(conditions: {', '.join(CONDITIONS)}; modes: {', '.join(MODES)})")
    if seconds < 2 * DRAIN_S:
        raise ValueError(f"a run needs at least {2 * DRAIN_S:g} s")
    full = synthetic_track(1500 + int(seconds * FPS), fps=FPS, seed=seed)
    train, call = full.slice(0, 1500), full.slice(1500)
    codec = make_config(train, 8, CoderId.ARITHMETIC, Reference.ANCHOR, CodecConfig.gop_from_seconds(1.0, FPS))
    results = []
    with tempfile.TemporaryDirectory(prefix="nerfconf-bench-") as identity_dir:
        for condition in conditions:
            for mode in modes:
                try:
                    result = asyncio.run(run_condition(
                        condition, mode, seconds=seconds, traces=traces, codec=codec, track=call, seed=seed,
                        identity_dir=Path(identity_dir)))
                except TransportError as exc:  # the call never came up: a result, not a crash
                    result = RunResult(condition, CONDITIONS[condition].description, mode, seconds, None, None,
                                       False, str(exc))
                results.append(result)
                if progress is not None:
                    progress(f"{condition} / {mode}")
    return TransportBench(FPS, seconds, seed, call.source,
                          "8-bit equal-step, arithmetic coder, anchor prediction with acks, GOP 1 s",
                          TransportConfig(), results)

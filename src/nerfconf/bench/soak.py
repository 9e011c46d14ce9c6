"""``nerfconf bench soak``: a long two-way call on loopback QUIC through the network emulator.

Peer A listens and peer B joins, each in its own process
(:mod:`nerfconf.bench.soak_peer`), and each sends a real coded parameter track
(the sample avatar's ``demo_track.npz``, looped) and decodes and plays out the
other's. This process runs the :class:`~nerfconf.net.netem.NetemRelay` between
them (random loss and delay both ways) and, every ``every`` seconds, samples
the resident memory and open file descriptors of all three processes and what
each peer has received. Rendering is left out (see ``soak_peer``).

At the end it judges:

* memory: each process's RSS at the end within 10 % of its value at the
  reference time (2 minutes, or half the run for runs shorter than 4 minutes);
* playout delay: no drift, i.e. the least-squares trend of the per-sample
  median delay from the reference time on changes it by less than one frame
  interval over that span;
* loss: frames lost after redundancy no more than a frame loses when all
  ``copies`` datagrams carrying it are lost independently, ``frames * loss **
  copies``, plus three standard deviations and one frame (NACKed
  retransmission only lowers it further). A reliable stream loses none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import multiprocessing as mp
import os
import queue
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.bench.process_usage import ProcessUsage, process_usage
from nerfconf.bench.soak_peer import LINGER_S, PeerSpec, ReceiveSample, peer_main
from nerfconf.net import JoinInfo, TransportConfig, TransportStats
from nerfconf.net.netem import LinkSpec, LinkStats, NetemRelay

#: a process's RSS at the end may differ from its reference value by this share
MEMORY_TOLERANCE = 0.10
#: the reference sample's time, and the shortest run where it is used rather than half the run
REFERENCE_S = 120.0
PEERS = ("a", "b")
#: the demo's sample avatar (``pipeline.demo.SAMPLE``, named here so that the monitor does not import torch)
SAMPLE = Path(__file__).resolve().parents[3] / "avatars" / "sample"
#: the relay and this monitor share a process
MONITOR = "relay"


class SoakError(RuntimeError):
    """A peer process failed or stopped answering."""


@dataclass(frozen=True)
class SoakSettings:
    seconds: float = 1800.0
    #: seconds between samples
    every: float = 60.0
    loss: float = 0.05
    rtt_ms: float = 20.0
    mode: str = "datagram"
    fps: float = 20.0
    #: the bundle whose codec both peers use
    avatar: Path = SAMPLE
    #: the parameter track each peer loops (None: the bundle's demo_track.npz)
    track: Path | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if self.every <= 0 or self.seconds < 2 * self.every:
            raise ValueError(f"a soak of {self.seconds:g} s cannot take two samples {self.every:g} s apart: "
                             "run longer or sample more often")
        if not 0 <= self.loss < 1 or self.rtt_ms < 0:
            raise ValueError("loss must be in 0..1 and the RTT non-negative")
        TransportConfig(mode=self.mode)  # type: ignore[arg-type]  # checks the mode

    @property
    def track_path(self) -> Path:
        return self.track or self.avatar / "demo_track.npz"

    def check_inputs(self) -> str:
        """The codec's JSON, once the track is known to fit it; ValueError in one line if not."""
        from nerfconf.codec.config import CodecConfig  # noqa: PLC0415
        from nerfconf.tracks import ParamTrack  # noqa: PLC0415

        codec_path = self.avatar / "codec.json"
        if not codec_path.is_file():
            raise ValueError(f"{self.avatar} has no codec.json: --avatar takes an avatar bundle directory")
        if not self.track_path.is_file():
            raise ValueError(f"{self.track_path} not found: give --track")
        text = codec_path.read_text()
        ParamTrack.load(self.track_path).with_layout(CodecConfig.from_json(text).layout)
        return text


@dataclass(frozen=True)
class DirectionSample:
    """One direction of the call at a sample: see :class:`~nerfconf.bench.soak_peer.ReceiveSample`."""

    frames_sent: int
    frames_received: int
    frames_lost: int
    frames_decoded: int
    undecodable: int
    iframe_requests: int
    playout_concealed: int
    playout_late: int
    playout_delay_ms: float
    jitter_buffer_ms: float


@dataclass(frozen=True)
class SoakSample:
    minute: float
    #: "relay" (the emulator and this monitor), "a" (listens), "b" (joins)
    processes: dict[str, ProcessUsage]
    #: "a_to_b" and "b_to_a"
    directions: dict[str, DirectionSample]


@dataclass(frozen=True)
class MemoryCheck:
    reference_rss_mb: float
    end_rss_mb: float
    change: float
    ok: bool


@dataclass(frozen=True)
class DelayCheck:
    reference_ms: float
    end_ms: float
    trend_ms_per_minute: float
    #: the trend times the span it was fitted on
    drift_ms: float
    ok: bool


@dataclass(frozen=True)
class LossCheck:
    frames_sent: int
    frames_lost: int
    expected_lost: float
    allowed_lost: int
    #: slots concealed at playout by the last sample: lost frames, and those that came too late
    playout_concealed: int
    #: datagrams the sending peer dropped unsent because it was already past their deadline: a
    #: sender starved of CPU, not the network (each such datagram may have cost its new frame)
    dropped_late_at_sender: int
    ok: bool


@dataclass(frozen=True)
class SoakBench:
    """``nerfconf bench soak``: the samples and the judgement."""

    minutes: float
    every_s: float
    fps: float
    loss: float
    rtt_ms: float
    mode: str
    copies: int
    track: str
    rendering: str
    #: the call stayed up to the end
    alive: bool
    error: str | None
    reference_minute: float
    samples: list[SoakSample]
    memory: dict[str, MemoryCheck]
    playout_delay: dict[str, DelayCheck]
    frames_lost: dict[str, LossCheck]
    #: both links as the emulator saw them ("a_to_b" is the relay's down link)
    links: dict[str, LinkStats]
    transport: dict[str, TransportStats]
    passed: bool


def _direction(receiving: ReceiveSample, sending: ReceiveSample) -> DirectionSample:
    return DirectionSample(sending.frames_sent, receiving.frames_received, receiving.frames_lost,
                           receiving.frames_decoded, receiving.undecodable, receiving.iframe_requests,
                           receiving.playout_concealed, receiving.playout_late, receiving.playout_delay_ms,
                           receiving.jitter_buffer_ms)


def _directions(got: dict[str, ReceiveSample]) -> dict[str, DirectionSample]:
    return {"a_to_b": _direction(got["b"], got["a"]), "b_to_a": _direction(got["a"], got["b"])}


def reference_index(samples: list[SoakSample], seconds: float) -> int:
    """The sample the end is compared with: the first at or after 2 minutes (half the run if shorter)."""
    t_ref = REFERENCE_S if seconds >= 2 * REFERENCE_S else seconds / 2
    return next(i for i, s in enumerate(samples) if s.minute * 60 >= t_ref - 1e-9)


def judge_memory(samples: list[SoakSample], ref: int) -> dict[str, MemoryCheck]:
    out = {}
    for name, first in samples[ref].processes.items():
        end = samples[-1].processes[name].rss_mb
        change = end / first.rss_mb - 1
        out[name] = MemoryCheck(first.rss_mb, end, change, abs(change) <= MEMORY_TOLERANCE)
    return out


def judge_delay(samples: list[SoakSample], ref: int, fps: float) -> dict[str, DelayCheck]:
    out = {}
    for name in samples[ref].directions:
        points = [(s.minute, s.directions[name].playout_delay_ms) for s in samples[ref:]]
        points = [(m, d) for m, d in points if math.isfinite(d)]
        if len(points) < 2:
            out[name] = DelayCheck(math.nan, math.nan, math.nan, math.nan, False)
            continue
        minutes, delays = np.array(points).T
        slope = float(np.polyfit(minutes, delays, 1)[0])
        drift = slope * float(minutes[-1] - minutes[0])
        out[name] = DelayCheck(float(delays[0]), float(delays[-1]), slope, drift, abs(drift) < 1000 / fps)
    return out


def allowed_loss(frames: int, loss: float, copies: int, mode: str) -> tuple[float, int]:
    """Frames redundancy should leave lost (each in ``copies`` datagrams, lost independently), and
    the most a run may lose: that plus three standard deviations and one frame."""
    if mode == "stream":
        return 0.0, 0
    expected = frames * loss**copies
    return expected, math.floor(expected + 3 * math.sqrt(expected) + 1)


def judge_loss(final: dict[str, DirectionSample], last: SoakSample, senders: dict[str, TransportStats],
               settings: SoakSettings, copies: int) -> dict[str, LossCheck]:
    """``final``: after every frame had time to arrive. Concealment is taken from the ``last``
    sample, before the receivers play on into the silence after the last frame; ``senders`` are
    the sending peers' transport counters by direction."""
    out = {}
    for name, d in final.items():
        expected, allowed = allowed_loss(d.frames_sent, settings.loss, copies, settings.mode)
        out[name] = LossCheck(d.frames_sent, d.frames_lost, expected, allowed,
                              last.directions[name].playout_concealed,
                              senders[name].stale_datagrams_dropped, d.frames_lost <= allowed)
    return out


class _Inbox:
    """Messages from the peer processes, by kind and peer, in the order each peer sent them."""

    def __init__(self, reports, processes: dict[str, mp.Process]) -> None:
        self._reports = reports
        self._processes = processes
        self._waiting: list[tuple[str, str, object]] = []

    async def get(self, kind: str, name: str, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while True:
            for i, (k, n, payload) in enumerate(self._waiting):
                if k == "error":
                    raise SoakError(f"peer {n} failed: {payload}")
                if (k, n) == (kind, name):
                    del self._waiting[i]
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                dead = [f"{n} (exit code {p.exitcode})" for n, p in self._processes.items() if not p.is_alive()]
                raise SoakError(f"no {kind} from peer {name} within {timeout:g} s"
                                + (f"; exited: {', '.join(dead)}" if dead else ""))
            try:
                self._waiting.append(await asyncio.to_thread(self._reports.get, True, min(left, 1.0)))
            except queue.Empty:
                pass

    def has(self, kind: str, name: str) -> bool:
        return any((k, n) == (kind, name) for k, n, _ in self._waiting)


async def _soak(settings: SoakSettings, codec_json: str, identity_dir: str,
                progress: Callable[[SoakSample], None] | None) -> SoakBench:
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    half_frame = 0.5 / settings.fps  # the peers' cameras are not in step

    def spec(name: str, join: str | None) -> PeerSpec:
        phase = half_frame if name == "a" else 0.0
        return PeerSpec(name, codec_json, str(settings.track_path), settings.seconds, settings.every,
                        settings.fps, settings.mode, identity_dir, join, phase, half_frame - phase)

    processes: dict[str, mp.Process] = {}
    inbox = _Inbox(reports, processes)

    def start(name: str, join: str | None) -> None:
        processes[name] = ctx.Process(target=peer_main, args=(spec(name, join), reports, go, start_at),
                                      name=f"nerfconf-soak-{name}", daemon=True)
        processes[name].start()

    link = LinkSpec(delay_ms=settings.rtt_ms / 2, loss=settings.loss)
    samples: list[SoakSample] = []
    alive, error = True, None
    try:
        start("a", None)
        join = JoinInfo.parse(str(await inbox.get("join", "a", 120)))
        async with NetemRelay(("127.0.0.1", join.port), link, link, seed=settings.seed) as relay:
            start("b", str(dataclasses.replace(join, port=relay.address[1])))
            for name in PEERS:
                await inbox.get("connected", name, 120)
            t0 = time.monotonic() + 0.5
            start_at.value = t0
            go.set()
            pids = {MONITOR: os.getpid(), **{n: p.pid for n, p in processes.items()}}
            n = 1
            while n * settings.every <= settings.seconds + 1e-9:
                # the peers sample on the shared clock; take the processes' usage at the same moment
                await asyncio.sleep(max(0.0, t0 + n * settings.every - time.monotonic()))
                usage = {name: process_usage(pid) for name, pid in pids.items()}
                if any(inbox.has("done", name) for name in PEERS):
                    alive, error = False, "a peer ended the call early"
                    break
                got = {name: await inbox.get("sample", name, 30) for name in PEERS}
                samples.append(SoakSample(n * settings.every / 60, usage, _directions(got)))  # type: ignore[arg-type]
                if progress is not None:
                    progress(samples[-1])
                n += 1
            ends = {name: await inbox.get("done", name, settings.every + LINGER_S + 60) for name in PEERS}
            links = {"a_to_b": relay.stats().down, "b_to_a": relay.stats().up}
    finally:
        for p in processes.values():
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    final = _directions({name: end[0] for name, end in ends.items()})  # type: ignore[index]
    transport = {name: end[1] for name, end in ends.items()}  # type: ignore[index]
    if len(samples) < 2:
        raise SoakError(f"the call ended after {len(samples)} sample(s): {error}")
    ref = reference_index(samples, settings.seconds)
    memory = judge_memory(samples, ref)
    delay = judge_delay(samples, ref, settings.fps)
    senders = {"a_to_b": transport["a"], "b_to_a": transport["b"]}
    lost = judge_loss(final, samples[-1], senders, settings, TransportConfig().copies)
    checks = [*memory.values(), *delay.values(), *lost.values()]
    return SoakBench(
        minutes=settings.seconds / 60, every_s=settings.every, fps=settings.fps, loss=settings.loss,
        rtt_ms=settings.rtt_ms, mode=settings.mode, copies=TransportConfig().copies, track=str(settings.track_path),
        rendering="none: decode and playout only", alive=alive, error=error,
        reference_minute=samples[ref].minute, samples=samples, memory=memory, playout_delay=delay,
        frames_lost=lost, links=links, transport=transport,
        passed=alive and all(c.ok for c in checks))


def run_soak(settings: SoakSettings, progress: Callable[[SoakSample], None] | None = None) -> SoakBench:
    """Runs the soak; ``progress`` is told each sample as it is taken. Raises ValueError for
    inputs that do not fit, SoakError when a peer process fails."""
    codec_json = settings.check_inputs()
    with tempfile.TemporaryDirectory(prefix="nerfconf-soak-") as identity_dir:
        return asyncio.run(_soak(settings, codec_json, identity_dir, progress))

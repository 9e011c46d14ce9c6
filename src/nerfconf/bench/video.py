"""The video mode, one direction over real loopback QUIC through the network emulator.

A send session codes the sample's demo clip (the held-out end of ``obama.mp4``, a
256 px head crop, looped) at 20 fps into video datagrams; a receive session on
the other peer reassembles and decodes them, NACKs missing packets, reports
losses and asks for keyframes, all through :mod:`nerfconf.net` as in a call.
Both run in one event loop, so capture-to-decode latency is read off one clock.
Per condition and codec it reports the rate coded against the target, the wire
rate, the picture sizes the ladder chose, frames shown and lost, keyframe
requests, the longest gap between two pictures, PSNR of each shown picture
against the frame it shows (at 256 px), and what encoding and decoding cost.

    python -m nerfconf.bench.video --conditions clean,loss10,cap50k --codecs h264,av1 --kbps 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from nerfconf.capture.video import read_frames
from nerfconf.evaluate.metrics import psnr
from nerfconf.net import Feedback, JoinInfo, TransportConfig, connect, listen
from nerfconf.net.messages import VideoCodec
from nerfconf.net.netem import CONDITIONS, NetemRelay
from nerfconf.video.receive import VideoReceiveSession
from nerfconf.video.send import VideoSendSession

CLIP = Path(__file__).resolve().parents[3] / "avatars" / "sample" / "demo_clip.mp4"
FPS = 20.0
#: the first seconds hold the first keyframe and the rate controller's start: not counted in the rates
WARMUP_S = 2.0


@dataclass(frozen=True)
class VideoRun:
    condition: str
    codec: str
    target_kbps: int
    seconds: float
    #: the coded video rate after the warm-up, and the UDP rate the sender put on the wire (headers, QUIC
    #: ACKs and resends included) over the whole run
    coded_kbps: float
    wire_kbps: float
    final_target_kbps: float
    #: frames coded at each picture side
    sizes: dict
    frames_coded: int
    frames_shown: int
    frames_lost: int
    keyframes: int
    keyframe_requests: int
    nacks: int
    retransmissions: int
    longest_gap_ms: float
    psnr_db_mean: float
    latency_ms_p50: float
    latency_ms_p95: float
    encode_ms_p50: float
    encode_ms_p95: float
    decode_ms_p50: float
    decode_ms_p95: float


async def run_video(condition: str, codec: VideoCodec, kbps: int, *, seconds: float, traces: Path,
                    pictures: list[np.ndarray], seed: int = 0, identity_dir: Path | None = None) -> VideoRun:
    up, down = CONDITIONS[condition].make(traces)
    config = TransportConfig(identity_dir=identity_dir)
    sender = VideoSendSession(codec, max_kbps=kbps)
    receiver = VideoReceiveSession()
    sent_at: dict[int, tuple[int, float]] = {}  # frame number -> (source picture, capture time)
    shown: list[tuple[int, np.ndarray, float]] = []
    loop = asyncio.get_running_loop()
    async with listen("127.0.0.1", 0, None, config) as srv:
        async with NetemRelay(("127.0.0.1", srv.join_info.port), up, down, seed=seed) as relay:
            host, port = relay.address
            async with connect(JoinInfo(host, port, srv.join_info.fingerprint, srv.join_info.token),
                               config) as client:
                peer = await asyncio.wait_for(srv.accept(), 10)
                client.attach_encoder(sender)
                client.on_media_message(lambda msg: sender.on_report(msg.report, loop.time())
                                        if getattr(msg, "report", None) is not None else None)

                def take(pictures_out) -> None:
                    shown.extend((p.frame_no, p.image, p.t_decoded) for p in pictures_out)

                async def receive() -> None:
                    while True:
                        packet = await peer.recv_video()
                        take(receiver.on_packet(packet.seq, packet.payload, packet.t_arrival))

                async def poll() -> None:
                    while True:
                        await asyncio.sleep(0.01)
                        take(receiver.poll(loop.time()))
                        fb = receiver.feedback(loop.time())
                        if fb.video is not None:
                            peer.send_media_message(fb.video)
                        if fb.keyframe_request:
                            peer.send_feedback(Feedback(iframe_request=True))

                tasks = [loop.create_task(receive()), loop.create_task(poll())]
                t0 = loop.time() + 0.05
                coded_after_warmup = 0
                for i in range(round(seconds * FPS)):
                    await asyncio.sleep(max(0.0, t0 + i / FPS - loop.time()))
                    t = loop.time()
                    out = sender.encode(pictures[i % len(pictures)], t, t)
                    if out is None:
                        continue
                    sent_at[out.frame.frame_no] = (i % len(pictures), t)
                    if t - t0 >= WARMUP_S:
                        coded_after_warmup += len(out.frame.data)
                    for payload in out.payloads:
                        client.send_video(payload, t + 0.3)
                await asyncio.sleep(1.0)
                for task in tasks:
                    task.cancel()
                stats = client.stats()
    sender.close()
    s, r = sender.stats, receiver.stats
    scores, latency, times = [], [], []
    for frame_no, image, t_decoded in shown:
        index, t_capture = sent_at[frame_no % 65536]  # the receiver extends frame numbers past 2**16
        big = cv2.resize(image, (256, 256), interpolation=cv2.INTER_LINEAR) if image.shape[0] != 256 else image
        scores.append(psnr(big, pictures[index]))
        latency.append(1e3 * (t_decoded - t_capture))
        times.append(t_decoded)
    gaps = np.diff(times) * 1e3 if len(times) > 1 else np.array([0.0])
    enc = np.percentile(s.encode_ms, [50, 95]) if s.encode_ms else [0.0, 0.0]
    dec = np.percentile(r.decode_ms, [50, 95]) if r.decode_ms else [0.0, 0.0]
    lat = np.percentile(latency, [50, 95]) if latency else [float("nan")] * 2
    return VideoRun(
        condition, codec.name.lower(), kbps, seconds,
        coded_kbps=round(8 * coded_after_warmup / (seconds - WARMUP_S) / 1e3, 2),
        wire_kbps=round(8 * stats.wire_bytes_sent / seconds / 1e3, 2),
        final_target_kbps=round(sender.target_kbps, 1), sizes=dict(sorted(s.sizes.items())),
        frames_coded=s.frames, frames_shown=len(shown), frames_lost=r.lost, keyframes=s.keyframes,
        keyframe_requests=r.keyframe_requests, nacks=r.nacks, retransmissions=stats.video_retransmissions,
        longest_gap_ms=round(float(gaps.max()), 1), psnr_db_mean=round(float(np.mean(scores)), 2) if scores else 0.0,
        latency_ms_p50=round(float(lat[0]), 1), latency_ms_p95=round(float(lat[1]), 1),
        encode_ms_p50=round(float(enc[0]), 2), encode_ms_p95=round(float(enc[1]), 2),
        decode_ms_p50=round(float(dec[0]), 3), decode_ms_p95=round(float(dec[1]), 3))


HEADER = ("| condition | codec | target kbps | coded kbps | wire kbps | final target | sizes (px: frames) | shown / "
          "coded | lost | keyframe requests | NACKs / resent | longest gap (ms) | PSNR (dB) | latency p50 / p95 (ms) | "
          "encode ms p50 / p95 | decode ms p50 / p95 |\n" + "| --- " * 16 + "|")


def row(r: VideoRun) -> str:
    sizes = ", ".join(f"{k}: {v}" for k, v in r.sizes.items())
    return (f"| {r.condition} | {r.codec} | {r.target_kbps} | {r.coded_kbps} | {r.wire_kbps} | {r.final_target_kbps} | "
            f"{sizes} | {r.frames_shown} / {r.frames_coded} | {r.frames_lost} | {r.keyframe_requests} | "
            f"{r.nacks} / {r.retransmissions} | {r.longest_gap_ms:.0f} | {r.psnr_db_mean} | "
            f"{r.latency_ms_p50} / {r.latency_ms_p95} | {r.encode_ms_p50} / {r.encode_ms_p95} | "
            f"{r.decode_ms_p50} / {r.decode_ms_p95} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nerfconf.bench.video", description=__doc__.split("\n\n")[0])
    p.add_argument("--conditions", default="clean,loss10,cap50k", help=f"of: {', '.join(CONDITIONS)}")
    p.add_argument("--codecs", default="h264,av1")
    p.add_argument("--kbps", default="32", help="targets, comma-separated")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--traces", type=Path, default=Path("../shared/traces"))
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    args = p.parse_args(argv)
    conditions = args.conditions.split(",")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        p.error(f"unknown condition(s) {', '.join(unknown)}")
    try:
        codecs = [VideoCodec[c.upper()] for c in args.codecs.split(",")]
        rates = [int(k) for k in args.kbps.split(",")]
    except (KeyError, ValueError) as exc:
        p.error(f"--codecs is h264 and/or av1, --kbps whole numbers: {exc}")
    if args.seconds <= WARMUP_S:
        p.error(f"--seconds must exceed the {WARMUP_S:g} s warm-up")
    pictures = [f.image for f in read_frames(CLIP)]
    if not args.json:
        print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as identity:
        for condition in conditions:
            for codec in codecs:
                for kbps in rates:
                    result = asyncio.run(run_video(condition, codec, kbps, seconds=args.seconds, traces=args.traces,
                                                   pictures=pictures, seed=args.seed, identity_dir=Path(identity)))
                    print(json.dumps(asdict(result)) if args.json else row(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

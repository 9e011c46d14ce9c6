"""``nerfconf bench``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nerfconf.commands.common import (
    ANCHOR_CLIP,
    MLP_PRECISIONS,
    UserError,
    add_avatar_option,
    add_data_option,
    add_json_option,
    add_test_frames_option,
    add_training_options,
    add_video_option,
    apply_training_options,
    data_file,
    existing_file,
    load_track,
    sent_layout,
)
from nerfconf.report import to_json
from nerfconf.tracks import HELD_OUT_FRAMES  # numpy only: cheap enough for building the parser


def codec(args: argparse.Namespace) -> int:
    from nerfconf.bench.codec import bench_codec

    if args.track is not None or args.synthetic:
        track = load_track(args.track)
    else:
        from nerfconf.bench.codec import extracted_track  # noqa: PLC0415

        video = data_file(args, ANCHOR_CLIP)
        track = extracted_track(video, progress=not args.json)
    track = sent_layout(track, args.translation)
    try:
        result = bench_codec(
            track,
            test_frames=args.test_frames,
            bits=args.bits,
            gop_seconds=args.gop_seconds,
            rtt_ms=args.rtt_ms,
            repeats=args.repeats,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(to_json(result))
        return 0
    from rich.table import Table

    from nerfconf.ui import console as make_console

    table = Table(title=f"codec at {result.fps:g} fps, {result.dims} dims, {result.bits} bits, "
                  f"GOP {result.gop_frames} frames")
    for col in ("allocation", "coder", "reference", "acks", "payload kbps", "body kbps", "B/I-frame", "B/P-frame",
                "enc µs", "dec µs"):
        table.add_column(col, justify="right")
    for mode in result.results:
        r = mode.run
        acks = "none" if r.ack_delay_frames is None else f"after {r.ack_delay_frames} fr"
        if r.reference == "prev":
            acks = "-"
        table.add_row(mode.allocation, r.coder, r.reference, acks,
                      f"{r.payload_kbps:.2f}", f"{r.body_kbps:.2f}",
                      f"{r.bytes_per_i_frame:.1f}", f"{r.bytes_per_p_frame:.1f}",
                      f"{r.encode_us_median:.0f}", f"{r.decode_us_median:.0f}")
    console = make_console()
    console.print(table)
    console.print(f"source: {result.source}; bounds fitted on {result.train_frames} frames, "
                  f"measured on {result.test_frames} held-out frames "
                  f"({100 * result.clamped_fraction:.2f} % of values clamped)")
    for name, a in result.allocations.items():
        err = a.quantization_error
        console.print(f"{name}: bits {a.bits}; quantization error: expression {err.expression_l2_mean:.3f} mm "
                      f"(L2 over all landmarks), rotation at most {err.rotation_deg_max:.3f}°")
    return 0


def extract(args: argparse.Namespace) -> int:
    from nerfconf.bench.extract import MAIN_VIDEO, bench_extract  # noqa: PLC0415

    result = bench_extract(data_file(args, MAIN_VIDEO).parent, test_frames=args.test_frames, pose_trials=args.pose_trials,
                           progress=not args.json)
    if args.json:
        print(to_json(result))
        return 0
    from nerfconf.ui import console as make_console  # noqa: PLC0415

    make_console().print_json(to_json(result))
    return 0


def train(args: argparse.Namespace) -> int:
    from nerfconf.bench.train import bench_train  # noqa: PLC0415

    video = data_file(args, ANCHOR_CLIP)
    apply_training_options(args)
    result = bench_train(video, resolution=args.resolution, iterations=args.iterations, repeats=args.repeats,
                         device=args.device,
                         bf16_mlp=MLP_PRECISIONS[args.mlp_precision])
    print(to_json(result))
    return 0


def channel(args: argparse.Namespace) -> int:
    from nerfconf.bench.channel import run_channel_sim  # noqa: PLC0415

    try:
        run_channel_sim(loss=args.loss, seconds=args.seconds, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return 0


def transport(args: argparse.Namespace) -> int:
    from nerfconf.bench.transport import bench_transport  # noqa: PLC0415

    if not args.traces.is_dir():
        raise UserError(f"{args.traces} not found: point --traces at the shared network traces")
    conditions = args.conditions.split(",") if args.conditions else None
    modes = args.modes.split(",") if args.modes else None
    from tqdm import tqdm  # noqa: PLC0415

    from nerfconf.bench.transport import MODES  # noqa: PLC0415
    from nerfconf.net.netem.conditions import CONDITIONS  # noqa: PLC0415

    n = len(conditions or CONDITIONS) * len(modes or MODES)
    with tqdm(total=n, disable=args.json, unit="run") as bar:
        def progress(label: str) -> None:
            bar.set_description(f"done: {label}")
            bar.update(1)

        try:
            result = bench_transport(seconds=args.seconds, conditions=conditions, modes=modes, traces=args.traces,
                                     seed=args.seed, progress=progress)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    if args.json:
        print(to_json(result))
        return 0
    from rich.table import Table  # noqa: PLC0415

    from nerfconf.ui import console as make_console  # noqa: PLC0415

    table = Table(title=f"transport at {result.fps:g} fps, {result.seconds:g} s per run, both directions "
                  "(client->server / server->client)")
    for col in ("condition", "mode", "p50 ms", "p95 ms", "p99 ms", "max ms", "lost", "concealed", "stall ms",
                "payload kbps", "wire kbps", "steady wire kbps", "alive"):
        table.add_column(col, justify="left" if col in ("condition", "mode") else "right")

    for r in result.runs:
        up, down = r.client_to_server, r.server_to_client
        if up is None or down is None:
            table.add_row(r.condition, r.mode, *["-"] * 10, f"NO: {r.error}")
            continue

        def both(key: str, fmt: str, up=up, down=down) -> str:
            return f"{format(getattr(up, key), fmt)} / {format(getattr(down, key), fmt)}"

        lost = f"{100 * up.lost_fraction:.2f} / {100 * down.lost_fraction:.2f} %"
        table.add_row(r.condition, r.mode, both("latency_ms_p50", ".1f"), both("latency_ms_p95", ".1f"),
                      both("latency_ms_p99", ".1f"), both("latency_ms_max", ".0f"), lost,
                      both("playout_concealed", "d"), both("longest_stall_ms", ".0f"),
                      both("payload_kbps", ".2f"), both("wire_kbps", ".1f"), both("wire_kbps_steady", ".1f"),
                      "yes" if r.alive else f"NO: {r.error}")
    make_console().print(table)
    return 0


def flood(args: argparse.Namespace) -> int:
    from nerfconf.bench.flood import bench_flood  # noqa: PLC0415

    try:
        result = bench_flood(packets=args.packets, seconds=args.seconds, quiet_seconds=args.quiet_seconds,
                             after_seconds=args.after_seconds, sources=args.sources, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(to_json(result))
        return 0
    r = result
    print(f"{r.packets_sent} fake Initials of {r.packet_bytes} B in {r.flood_seconds:g} s from {r.sources} "
          f"loopback addresses, during a call at {r.fps:g} fps; {r.packets_answered} answers came back")
    for name, p in (("quiet", r.quiet), ("flood", r.flood)):
        print(f"{name}: acks a second min {p.acks_per_second_min} mean {p.acks_per_second_mean:.1f}; "
              f"ack latency p50 {p.ack_ms_p50:.0f} ms p95 {p.ack_ms_p95:.0f} ms; "
              f"{p.frames_acked} of {p.frames_sent} frames acked")
    print(f"server RSS {r.server_rss_mb_before:.0f} MB before, {r.server_rss_mb_peak:.0f} MB at peak "
          f"(+{r.server_rss_growth_mb:.0f} MB), {r.server_rss_mb_at_end:.0f} MB at the end; "
          f"at most {r.server_connections_peak} connection objects")
    print("the call stayed up" if r.alive else f"the call died: {r.error}")
    return 0


def soak(args: argparse.Namespace) -> int:
    from nerfconf.bench.soak import SAMPLE, SoakError, SoakSettings, run_soak  # noqa: PLC0415

    try:
        settings = SoakSettings(seconds=args.minutes * 60, every=args.every, loss=args.loss, rtt_ms=args.rtt_ms,
                                mode=args.mode, avatar=args.avatar or SAMPLE, track=args.track, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc

    def progress(sample) -> None:
        # every sample as it is taken, on stderr under --json, so that a long run shows how it goes
        rss = " / ".join(f"{name} {u.rss_mb:.1f} MB, {u.open_fds} fds" for name, u in sample.processes.items())
        flows = "; ".join(f"{name.replace('_to_', '->')}: lost {d.frames_lost}, concealed {d.playout_concealed}, "
                          f"playout delay {d.playout_delay_ms:.0f} ms" for name, d in sample.directions.items())
        print(f"minute {sample.minute:6.2f}: {rss}; {flows}", file=sys.stderr if args.json else sys.stdout,
              flush=True)

    try:
        result = run_soak(settings, progress)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    except SoakError as exc:
        print(f"nerfconf: soak failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(to_json(result))
        return 0 if result.passed else 1
    for name, m in result.memory.items():
        print(f"memory {name}: {m.reference_rss_mb:.1f} MB at minute {result.reference_minute:g}, "
              f"{m.end_rss_mb:.1f} MB at the end ({100 * m.change:+.1f} %): {'ok' if m.ok else 'GREW'}")
    for name, d in result.playout_delay.items():
        print(f"playout delay {name}: {d.reference_ms:.0f} -> {d.end_ms:.0f} ms, trend {d.drift_ms:+.1f} ms over "
              f"the run: {'ok' if d.ok else 'DRIFTS'}")
    for name, c in result.frames_lost.items():
        late = f"; the sender dropped {c.dropped_late_at_sender} datagrams it was too late to send" \
            if c.dropped_late_at_sender else ""
        print(f"frames lost {name}: {c.frames_lost} of {c.frames_sent} (redundancy should leave "
              f"{c.expected_lost:.1f}, at most {c.allowed_lost}{late}): {'ok' if c.ok else 'TOO MANY'}")
    print("soak passed" if result.passed else f"soak FAILED{': ' + result.error if result.error else ''}")
    return 0 if result.passed else 1


def render(args: argparse.Namespace) -> int:
    from nerfconf.avatar.rendering.fast import RenderError, RenderSettings  # noqa: PLC0415
    from nerfconf.bench.render import bench_render  # noqa: PLC0415
    from nerfconf.commands.view import avatar_track, load_renderer  # noqa: PLC0415

    if args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    try:
        settings = RenderSettings.parse(args.setting)
    except RenderError as exc:
        raise UserError(str(exc)) from exc
    bundle, _ = load_renderer(args.avatar, args.resolution, args.device)
    track = avatar_track(args.avatar, args.track, args.video, args.test_frames, bundle, required=True,
                         progress=not args.json)
    try:
        result = bench_render(bundle, track, resolution=args.resolution, frames=args.frames, device=args.device,
                              threads=args.threads, quality_frames=args.quality_frames, settings=settings,
                              progress=not args.json)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    result = dataclasses.replace(result, avatar=str(args.avatar))
    if args.json:
        print(to_json(result))
        return 0
    ms = result.ms_per_frame
    print(f"{result.resolution}x{result.resolution} on {result.device}, threads {result.threads}: "
          f"median {ms.median:.1f} ms, p95 {ms.p95:.1f} ms, min {ms.min:.1f} ms over {result.frames} "
          f"frames ({result.fps_median:.1f} fps)")
    if result.gmac_equivalents_median is not None:
        print(f"cost {result.gmac_equivalents_median:.2f} GMAC-equivalents a frame (median ms x this host's "
              f"{result.sgemm_gmacs_per_core:.1f} GMAC/s single-core sgemm x {result.threads['numba']} threads)")
    q = result.quality
    if q:
        print(f"against the reference renderer on {q.frames} frames: PSNR min {q.psnr_min:.2f} dB, "
              f"mean {q.psnr_mean:.2f} dB")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="measure speed and bitrate of a module")
    bench_sub = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    bc = bench_sub.add_parser("codec", help="bitrate and speed of every coder and prediction mode",
                              description="Fits bounds and priors on the training frames of a track and "
                              "codes its held-out frames with each entropy coder and reference mode. "
                              "By default the track is extracted from the shared cnn2_25fps.mp4 at 20 fps; the output's "
                              "source field says which track was used.")
    bc.add_argument("--track", type=existing_file, help="parameter track (.npz) from `nerfconf face extract`")
    bc.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in track")
    add_data_option(bc, f"{ANCHOR_CLIP}, whose real track is extracted without --track")
    bc.add_argument("--translation", action="store_true", help="send head translation too (52 dims)")
    add_json_option(bc, "print one JSON object instead of a table")
    bc.add_argument("--bits", type=int, default=8, help="quantization depth, 4..10 (default 8)")
    bc.add_argument("--gop-seconds", type=float, default=1.0, help="GOP length in seconds (default 1)")
    bc.add_argument("--rtt-ms", type=float, default=20.0, help="round trip that delays acks (default 20)")
    bc.add_argument("--repeats", type=int, default=5, help="runs per mode; speeds are medians (default 5)")
    bc.add_argument("--test-frames", type=int, default=HELD_OUT_FRAMES,
                    help=f"held-out frames at the end (default {HELD_OUT_FRAMES})")
    bc.set_defaults(func=codec)

    be = bench_sub.add_parser("extract", help="speed, fidelity, pose accuracy and robustness of face extraction",
                              description="Runs face extraction over the shared test videos: ms per frame, "
                              "landmark error of the fitted model on held-out frames for K = 8..46, pose "
                              "error on synthetic rotations, pose jitter, and robustness on other clips.")
    add_data_option(be, f"{ANCHOR_CLIP} and the other test clips")
    add_json_option(be)
    be.add_argument("--test-frames", type=int, default=HELD_OUT_FRAMES,
                    help=f"held-out frames at the end (default {HELD_OUT_FRAMES})")
    be.add_argument("--pose-trials", type=int, default=500, help="synthetic rotations to solve (default 500)")
    be.set_defaults(func=extract)

    bn = bench_sub.add_parser(
        "transport", help="a real two-way call over loopback QUIC through the network emulator",
        description="Runs a listening and a joining peer on loopback, each sending a coded face-parameter track at 20 fps, "
        "through the user-space network emulator, for each network condition and transport mode. Reports "
        "one-way transport latency (p50/p95/p99/max), frames lost after redundancy, frames concealed at "
        "playout and the longest stall, and payload and wire kbps in both directions (wire: every UDP packet "
        "with IP/UDP headers, QUIC ACKs and feedback included; over the whole run, handshake included, and "
        "steady: from 5 s into the call to its last frame).")
    bn.add_argument("--seconds", type=float, default=30.0, help="length of each run (default 30)")
    from nerfconf.net.netem.conditions import CONDITIONS  # noqa: PLC0415  (numpy only)

    bn.add_argument("--conditions", help=f"comma-separated subset of: {', '.join(CONDITIONS)} (default: all)")
    bn.add_argument("--modes", help="comma-separated subset of: datagram, stream (default: both)")
    bn.add_argument("--traces", type=Path, default=Path("../shared/traces"),
                    help="directory with the alphartc/ and mahimahi/ traces (default ../shared/traces)")
    bn.add_argument("--seed", type=int, default=0, help="seed of the emulator and the synthetic track")
    add_json_option(bn, "print one JSON object instead of a table")
    bn.set_defaults(func=transport)

    bf = bench_sub.add_parser(
        "flood", help="a flood of fake QUIC Initials against a listening peer during a live loopback call",
        description="Runs a listening peer (its own process, acking every frame) and a joining peer sending a "
        "coded track at 20 fps on loopback; after a quiet phase a third process sends fake QUIC Initials "
        "(random connection IDs, undecryptable payloads) at the listener. Reports the acks the joining peer "
        "gets a second and its ack latency, quiet and under the flood, and the listener's RSS growth and "
        "connection objects.")
    bf.add_argument("--packets", type=int, default=20_000, help="fake Initials to send (default 20000)")
    bf.add_argument("--seconds", type=float, default=10.0, help="length of the flood (default 10)")
    bf.add_argument("--quiet-seconds", type=float, default=10.0, help="call before the flood (default 10)")
    bf.add_argument("--after-seconds", type=float, default=5.0, help="call after the flood (default 5)")
    bf.add_argument("--sources", type=int, default=16, help="loopback source addresses, 1..254 (default 16)")
    bf.add_argument("--seed", type=int, default=0, help="seed of the packets and the track")
    add_json_option(bf, "print one JSON object instead of lines")
    bf.set_defaults(func=flood)

    bt = bench_sub.add_parser("train", help="avatar training speed: iterations and samples per second",
                              description="Trains the default avatar configuration on the first 200 frames of "
                              "cnn2_25fps.mp4 and reports medians over repeated timed runs after a warm-up.")
    add_data_option(bt, ANCHOR_CLIP)
    bt.add_argument("--resolution", type=int, default=256)
    bt.add_argument("--iterations", type=int, default=200, help="iterations per timed run (default 200)")
    bt.add_argument("--repeats", type=int, default=3)
    add_training_options(bt)
    bt.add_argument("--json", action="store_true", help="(the output is always JSON)")
    bt.set_defaults(func=train)
    bch = bench_sub.add_parser(
        "channel", help="the codec over a simulated lossy channel, in each transport mode",
        description="Codes a face-parameter track and sends it over a simulated lossy datagram channel "
        "(no sockets) three ways: the paper's previous-frame prediction, anchor prediction with acks, and "
        "anchor prediction with copies of the last frames in every datagram.")
    bch.add_argument("--loss", type=float, default=0.10, help="random packet loss, 0..1 (default 0.10)")
    bch.add_argument("--seconds", type=float, default=30.0, help="length of the call (default 30)")
    bch.add_argument("--seed", type=int, default=1, help="seed of the loss pattern")
    bch.set_defaults(func=channel)

    bs = bench_sub.add_parser(
        "soak", help="a long two-way call on loopback: memory, descriptors, playout delay and loss over time",
        description="Runs a two-way call for --minutes on loopback QUIC through the user-space network "
        "emulator (random loss both ways), each peer in its own process sending the avatar's coded demo track, "
        "looped, at 20 fps. Rendering is left out: each peer decodes and plays out what it receives (acks, "
        "I-frame requests, adaptive playout buffer, concealment) but draws nothing. Every --every seconds it "
        "prints the RSS and open file descriptors of each process (the relay and monitor, peer A, peer B), "
        "the frames lost and concealed and the playout delay (from capture at the sender to the playout slot) "
        "each way. At the end it judges: RSS within 10 %% of its 2-minute value, no drift in the playout "
        "delay (its trend under one frame interval over the run), and frames lost no more than the "
        "redundancy leaves (frames x loss^copies, plus 3 sigma and one). Exits 1 if a check fails.")
    bs.add_argument("--minutes", type=float, default=30.0, help="length of the call (default 30)")
    bs.add_argument("--every", type=float, default=60.0, help="seconds between samples (default 60)")
    bs.add_argument("--loss", type=float, default=0.05, help="random packet loss each way, 0..1 (default 0.05)")
    bs.add_argument("--rtt-ms", type=float, default=20.0, help="round trip of the emulated link (default 20)")
    bs.add_argument("--mode", choices=("datagram", "stream"), default="datagram",
                    help="transport mode (default datagram)")
    bs.add_argument("--avatar", type=Path, default=None,
                    help="avatar bundle whose codec the peers use (default: the sample avatar)")
    bs.add_argument("--track", type=existing_file, default=None,
                    help="parameter track each peer loops (default: the bundle's demo_track.npz)")
    bs.add_argument("--seed", type=int, default=1, help="seed of the loss pattern")
    add_json_option(bs, "print one JSON object (samples and checks) at the end")
    bs.set_defaults(func=soak)

    br = bench_sub.add_parser(
        "render", help="avatar rendering speed (ms per frame) and fidelity to the reference renderer",
        description="Pre-warms the fast renderer, then renders --frames frames of a real parameter track (--track, "
        "else the bundle's heldout_track.npz, else the held-out frames of --video) and reports median, p95 and "
        "min ms per frame; then PSNR against the reference volume renderer on --quality-frames of them.")
    add_avatar_option(br)
    br.add_argument("--resolution", type=int, default=None, help="output side in pixels (default: the bundle's)")
    br.add_argument("--frames", type=int, default=100, help="timed frames (default 100; the track loops)")
    br.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    br.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    br.add_argument("--track", type=existing_file, help="parameter track (.npz)")
    add_video_option(br, help="the avatar's video, to extract its held-out frames")
    add_test_frames_option(br)
    br.add_argument("--quality-frames", type=int, default=3,
                    help="frames also rendered by the reference renderer for PSNR (default 3, 0 skips)")
    br.add_argument("--set", dest="setting", action="append", default=[], metavar="NAME=VALUE",
                    help="change one fast-path setting (repeatable), e.g. --set upsample_tolerance=0; names: "
                    "t_min, colour_weight_min, guide_margin, probe_alpha, probe_factor, probe_radius, "
                    "upsample_tolerance, upsample_levels (see nerfconf.avatar.rendering.fast.RenderSettings)")
    add_json_option(br)
    br.set_defaults(func=render)

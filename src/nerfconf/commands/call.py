"""``nerfconf call``, ``send`` and ``receive``: a real call between two machines or processes."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from nerfconf.commands.common import (
    ADAPTIVE_HELP,
    REFINE_EVERY,
    REFINE_EVERY_HELP,
    REFINE_HELP,
    RENDER_THREADS_HELP,
    UserError,
    existing_dir,
    existing_file,
    host_port,
    refine_every,
)
from nerfconf.commands.outputs import output_file, writing


def _advertised_host(text: str) -> str:
    from nerfconf.net.join import JoinStringError, join_host  # noqa: PLC0415

    try:
        join_host(text)
    except JoinStringError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip("[]")  # bare, as listen() takes it: it brackets an IPv6 address itself


def _view(text: str):
    from nerfconf.avatar.view import View  # noqa: PLC0415

    try:
        yaw, pitch, roll = (float(v) for v in text.split(","))
        return View(yaw, pitch, roll)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YAW,PITCH,ROLL in degrees within ±45, got {text!r} "
                                         f"({exc})") from None


def run(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.capture.source import CameraError  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.codec.errors import IncompatibleStreamError  # noqa: PLC0415
    from nerfconf.net.errors import TransportError  # noqa: PLC0415
    from nerfconf.pipeline.call import CallSettings, call  # noqa: PLC0415
    from nerfconf.pipeline.render_worker import RenderWorkerError  # noqa: PLC0415

    save = getattr(args, "save", None)
    for path, flag in ((save, "--save"), (args.stats, "--stats")):
        if path is not None:
            output_file(path, flag=flag)
    try:
        settings = CallSettings(own=getattr(args, "avatar_self", None), peer=getattr(args, "avatar_peer", None),
                                receive_video=args.receives, video_kbps=args.video_kbps, video_codec=args.video_codec,
                                listen=args.listen, advertise=args.advertise, join=args.connect, token=args.token,
                                video=getattr(args, "video", None), camera=getattr(args, "camera", None),
                                loop_video=getattr(args, "loop", False),
                                paced=not getattr(args, "as_fast_as_possible", False), seconds=args.seconds,
                                save=getattr(args, "save", None), window=not getattr(args, "no_window", True),
                                view=getattr(args, "view", None), resolution=getattr(args, "resolution", None),
                                adaptive_resolution=getattr(args, "adaptive_resolution", True),
                                render_threads=getattr(args, "render_threads", None),
                                mode=args.mode, refine_pose=getattr(args, "refine_pose", True),
                                refine_every=refine_every(getattr(args, "refine_every", REFINE_EVERY)))
    except ValueError as exc:
        raise UserError(str(exc)) from exc

    if settings.receive_video and settings.peer is None:
        # the codec is the sender's choice; the rate cap is ours
        print(f"no --avatar-peer: you will see the other peer as video of at most {settings.video_kbps} kbps, "
              "not as an avatar", flush=True)

    def show_join(join: str) -> None:
        print(f"waiting for the other peer; give them this join string:\n  {join}", flush=True)

    try:
        with writing(save, "--save") if save is not None else contextlib.nullcontext():
            result = call(settings, on_join=show_join)
    except (BundleError, VideoError, CameraError, RenderWorkerError, IncompatibleStreamError, TransportError,
            OSError) as exc:
        raise UserError(str(exc)) from exc
    summary = {"sender": result.sender.to_dict() if result.sender else None,
               "receiver": result.receiver.to_dict() if result.receiver else None,
               "video_receiver": result.video_receiver.to_dict() if result.video_receiver else None,
               "transport": result.transport}
    if args.stats is not None:
        with writing(args.stats, "--stats"):
            args.stats.write_text(json.dumps(summary, indent=1, default=float))
    if result.receiver:
        from nerfconf.pipeline.report import call_summary  # noqa: PLC0415

        for line in call_summary(summary["sender"] or {}, summary["receiver"], []):
            print(line)
    video = result.video_receiver
    if video is not None and video.displayed:
        s = video.session
        print(f"video: {video.displayed} pictures shown, {s['lost']} frames lost, {s['keyframe_requests']} keyframe "
              f"requests, longest freeze {video.longest_freeze_ms:.0f} ms, {8 * s['bytes'] / 1e3:.0f} kbit received")
    print(json.dumps({k: v for k, v in summary.items() if v}, default=float)[:2000])
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", type=host_port, metavar="[HOST:]PORT",
                       help="wait for the other peer on this UDP port (host default 127.0.0.1; give your LAN address "
                       "to take calls from other machines, or 0.0.0.0 with --advertise) and print the join string "
                       "to give them")
    where.add_argument("--connect", metavar="JOIN", help="join string printed by the listening peer "
                       "(nerfconf://HOST:PORT#sha256=...&token=...)")
    p.add_argument("--advertise", type=_advertised_host, default=None, metavar="HOST",
                   help="with --listen: the address the join string names, the one the other peer dials (default: "
                   "the --listen host; needed when that is 0.0.0.0 or ::, every address of this machine)")
    p.add_argument("--token", default=None, help="room token to require when listening (default: a new random one)")
    p.add_argument("--mode", choices=("datagram", "stream"), default="datagram",
                   help="datagrams with copies of the last frames (default), or the paper's reliable stream")
    p.add_argument("--seconds", type=float, default=None, help="hang up after this many seconds")
    p.add_argument("--video-kbps", type=int, default=32, metavar="KBPS",
                   help="video mode (a receiver without --avatar-peer): the most this peer sends, and asks to be "
                   "sent (default 32; the sender adapts below it to the link's losses)")
    p.add_argument("--video-codec", choices=("h264", "av1"), default="h264",
                   help="video mode: the codec this peer sends in, if the receiver decodes it (default h264)")
    p.add_argument("--stats", type=Path, default=None, help="write the call's stats as JSON here")


def _sending(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar-self", type=existing_dir, required=True, metavar="MINE",
                   help="your avatar bundle: its face model and codec settings code your face")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="capture from camera N (OpenCV index)")
    src.add_argument("--video", type=existing_file, help="send this video file as if it were a camera")
    p.add_argument("--loop", action="store_true", help="loop the video file")
    p.add_argument("--as-fast-as-possible", action="store_true",
                   help="feed the video as fast as extraction takes it, not at its frame rate (for evaluation)")
    p.add_argument("--refine-pose", action=argparse.BooleanOptionalAction, default=True, help=REFINE_HELP)
    p.add_argument("--refine-every", type=int, default=REFINE_EVERY, metavar="N", help=REFINE_EVERY_HELP)


def _receiving(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar-peer", type=existing_dir, default=None, metavar="THEIRS",
                   help="the other peer's avatar bundle, rendered from the parameters they send; without it the "
                   "other peer sends video of their face instead")
    p.add_argument("--save", type=Path, default=None, help="also write the received video to this mp4")
    p.add_argument("--no-window", action="store_true", help="do not open a window even if there is a display")
    p.add_argument("--view", type=_view, default=None, metavar="YAW,PITCH,ROLL",
                   help="watch from this offset in degrees (each within ±45) instead of the sender's view")
    p.add_argument("--resolution", type=int, default=None,
                   help="render resolution (default: the avatar's; video is shown at 256 px unless this is given)")
    p.add_argument("--adaptive-resolution", action=argparse.BooleanOptionalAction, default=True, help=ADAPTIVE_HELP)
    p.add_argument("--render-threads", type=int, default=None, help=RENDER_THREADS_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("call", help="a two-way 3D video call with another peer",
                       description="Sends your face as ~50 parameters per frame and renders the other peer's "
                       "avatar from theirs (without --avatar-peer, the other peer sends video of their face). "
                       "One peer runs with --listen and prints a join string; the other passes it to --connect.")
    _common(p)
    _sending(p)
    _receiving(p)
    p.set_defaults(func=run, receives=True)
    p = sub.add_parser("send", help="send your face to a peer (one direction)",
                       description="The sender half of a call: capture, extract, encode and send.")
    _common(p)
    _sending(p)
    p.set_defaults(func=run, receives=False)
    p = sub.add_parser("receive", help="receive and render a peer (one direction)",
                       description="The receiver half of a call: receive, decode, buffer, render and display "
                       "(a window if there is a display, and/or --save FILE). Without --avatar-peer the sender "
                       "sends video of their face, which is decoded and displayed.")
    _common(p)
    _receiving(p)
    p.set_defaults(func=run, receives=True)

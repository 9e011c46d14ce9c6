"""``nerfconf demo``."""

from __future__ import annotations

import argparse

from nerfconf.commands.common import UserError


def run(args: argparse.Namespace) -> int:
    from nerfconf.demo import run_codec_demo  # noqa: PLC0415

    try:
        run_codec_demo(loss=args.loss, seconds=args.seconds, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo (for now: the parameter codec over a lossy channel)",
                       description="Codes a face-parameter track, sends it over a simulated lossy "
                       "channel in each transport mode, and reports what arrived.")
    p.add_argument("--loss", type=float, default=0.10, help="random packet loss, 0..1 (default 0.10)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the call (default 30)")
    p.add_argument("--seed", type=int, default=1, help="seed of the loss pattern")
    p.set_defaults(func=run)

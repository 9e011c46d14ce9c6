"""The ``nerfconf`` command: one entry point for every user-facing job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from nerfconf import __version__
from nerfconf.commands import avatar, bench, call, codec, demo, evaluate, face, net, view
from nerfconf.commands.common import UserError
from nerfconf.commands.outputs import disk_full


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nerfconf",
        description="3D video calls at ultra-low bitrate: send ~50 face parameters per frame, "
        "render them with the peer's NeRF head avatar.",
    )
    parser.add_argument("--version", action="version", version=f"nerfconf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (demo, call, avatar, face, codec, evaluate, net, bench, view):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="nerfconf: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"nerfconf: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # where a command did not name the output it was writing (outputs.writing), still one line
        if not disk_full(exc):
            raise
        print(f"nerfconf: error: the disk is full ({exc}); free some space or write elsewhere", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nerfconf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

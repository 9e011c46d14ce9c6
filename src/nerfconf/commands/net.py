"""``nerfconf netem``: the user-space network emulator as a standalone relay."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from dataclasses import asdict

from nerfconf.commands.common import UserError, existing_file, host_port


def _link_specs(args: argparse.Namespace):
    from nerfconf.net.netem import GilbertElliott, LinkSpec, load_alphartc, load_mahimahi

    gilbert = None
    if args.gilbert:
        try:
            values = [float(v) for v in args.gilbert.split(",")]
        except ValueError:
            raise UserError(f"--gilbert expects P_GB,P_BG[,LOSS_GOOD,LOSS_BAD], got {args.gilbert!r}") from None
        if len(values) not in (2, 4):
            raise UserError("--gilbert expects 2 or 4 comma-separated probabilities")
        gilbert = GilbertElliott(*values)
    common = {"delay_ms": args.delay_ms, "jitter_ms": args.jitter_ms, "reorder": args.reorder, "loss": args.loss,
                  "gilbert": gilbert, "rate_kbps": args.rate_kbps, "queue_bytes": args.queue_bytes}
    up = down = LinkSpec(**common)
    if args.alphartc:
        trace = load_alphartc(args.alphartc)
        up = down = LinkSpec(**common, alphartc=trace)
    if args.mahimahi_up or args.mahimahi_down:
        mm_up = load_mahimahi(args.mahimahi_up or args.mahimahi_down)
        mm_down = load_mahimahi(args.mahimahi_down or args.mahimahi_up)
        up, down = LinkSpec(**common, mahimahi=mm_up), LinkSpec(**common, mahimahi=mm_down)
    return up, down


async def _relay(args: argparse.Namespace, up, down) -> dict:
    from nerfconf.net.netem import NetemRelay

    async with NetemRelay(args.target, up, down, listen=args.listen, seed=args.seed) as relay:
        host, port = relay.address
        print(f"netem: relaying {host}:{port} -> {args.target[0]}:{args.target[1]} "
              f"(seed {args.seed}); Ctrl-C to stop", flush=True)
        try:
            if args.seconds:
                await asyncio.sleep(args.seconds)
            else:
                await asyncio.Event().wait()
        finally:
            stats = relay.stats()
        return asdict(stats)


def run(args: argparse.Namespace) -> int:
    from nerfconf.net.errors import NetemError

    if not (math.isfinite(args.seconds) and args.seconds >= 0):
        raise UserError(f"--seconds must be a finite number >= 0 (0: until Ctrl-C), got {args.seconds:g}")
    try:
        up, down = _link_specs(args)
        stats = asyncio.run(_relay(args, up, down))
    except NetemError as exc:
        raise UserError(str(exc)) from exc
    print(json.dumps(stats, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "netem", help="user-space network emulator: a loopback UDP relay that delays, drops and shapes",
        description="Relays UDP between peers on loopback, applying the same impairments in both directions "
        "(client->server is 'up', server->client 'down'): delay and jitter, random or Gilbert-Elliott loss, a "
        "rate cap with a drop-tail queue, or replay of an AlphaRTC or Mahimahi trace. Point the client at the "
        "--listen address instead of the server. Only loopback addresses are accepted. Prints per-direction "
        "counters as JSON when it stops.")
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 0),
                   help="HOST:PORT the relay listens on (default 127.0.0.1:0, a free port, printed at start)")
    p.add_argument("--target", type=host_port, required=True, help="HOST:PORT of the server to relay to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay each direction (default 0)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="standard deviation of added delay (default 0)")
    p.add_argument("--reorder", action="store_true", help="let jitter reorder packets (default: keep order)")
    p.add_argument("--loss", type=float, default=0.0, help="random loss probability per packet, 0..1")
    p.add_argument("--gilbert", metavar="P_GB,P_BG[,LOSS_GOOD,LOSS_BAD]",
                   help="Gilbert-Elliott burst loss: transition probabilities per packet, then loss in each state "
                   "(default 0,1)")
    p.add_argument("--rate-kbps", type=float, help="bandwidth cap each direction")
    p.add_argument("--queue-bytes", type=int, default=64_000,
                   help="bottleneck queue limit; packets beyond it are dropped (default 64000)")
    p.add_argument("--alphartc", type=existing_file, help="replay an AlphaRTC JSON trace (both directions)")
    p.add_argument("--mahimahi-up", type=existing_file, help="Mahimahi trace for client->server")
    p.add_argument("--mahimahi-down", type=existing_file,
                   help="Mahimahi trace for server->client (default: the --mahimahi-up trace)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random decision (default 0)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: run until Ctrl-C)")
    p.set_defaults(func=run)

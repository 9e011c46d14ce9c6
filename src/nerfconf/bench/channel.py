"""``nerfconf bench channel``: the codec over a simulated lossy datagram channel.

It codes a parameter track and carries it in the three ways the transport
offers, showing why datagrams with copies of earlier frames and anchor
prediction are the default: one lost packet costs nothing, where the paper's
scheme loses the rest of the GOP. No sockets: the loss is drawn per datagram.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from nerfconf.bench.codec import make_config
from nerfconf.codec.config import Reference
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.errors import DuplicateFrameError, MissingReferenceError
from nerfconf.codec.frame import pack_datagram, unpack_datagram
from nerfconf.tracks import ParamTrack, synthetic_track
from nerfconf.ui import console as make_console


@dataclass(frozen=True)
class ChannelResult:
    label: str
    frames: int
    decoded: int
    recovered_from_copies: int
    missing_reference: int
    kbps: float
    max_error_steps: float


def simulate(
    track: ParamTrack,
    train: ParamTrack,
    *,
    reference: Reference,
    copies: int,
    loss: float,
    seed: int,
    label: str,
) -> ChannelResult:
    """Sends one datagram per frame (carrying ``copies`` frames); acks return one frame later."""
    config = make_config(train, 8, CoderId.ARITHMETIC, reference, 20)
    enc, dec = ParamEncoder(config), ParamDecoder(config)
    rng = random.Random(seed)
    window: deque[bytes] = deque(maxlen=copies)
    decoded: dict[int, np.ndarray] = {}
    recovered = missing = wire_bytes = 0
    pending_acks: list[int] = []
    for i in range(len(track)):
        for seq in pending_acks:
            enc.acknowledge(seq)
        pending_acks = []
        frame = enc.encode(track.params(i))
        window.appendleft(frame.data)
        datagram = pack_datagram(window)
        wire_bytes += len(datagram)
        if rng.random() < loss:
            continue
        for data in unpack_datagram(datagram):
            try:
                out = dec.decode(data)
            except DuplicateFrameError:
                continue
            except MissingReferenceError:
                missing += 1
                enc.request_iframe()
                continue
            if out.seq != frame.seq:
                recovered += 1
            decoded[out.params.index] = out.levels
            pending_acks.append(out.seq)
    quantizer = config.make_quantizer()
    lo, hi = config.bounds.lo, config.bounds.hi
    errors = [
        np.max(np.abs(quantizer.dequantize(levels) - np.clip(track.values[i], lo, hi)) / quantizer.step)
        for i, levels in decoded.items()
    ]
    return ChannelResult(
        label=label,
        frames=len(track),
        decoded=len(decoded),
        recovered_from_copies=recovered,
        missing_reference=missing,
        kbps=wire_bytes * 8 / (len(track) / track.fps) / 1000,
        max_error_steps=float(max(errors)) if errors else float("nan"),
    )


def run_channel_sim(loss: float = 0.10, seconds: float = 30.0, seed: int = 1) -> list[ChannelResult]:
    if not 0 <= loss < 1:
        raise ValueError(f"loss must be in 0..1, got {loss}")
    fps = 20.0
    frames = max(40, int(seconds * fps))
    full = synthetic_track(frames + 1500, fps=fps, seed=seed)
    train, call = full.slice(0, 1500), full.slice(1500)
    console = make_console()
    console.print(
        f"[bold]codec over a lossy channel[/]: {seconds:g} s of face parameters at {fps:g} fps "
        f"({call.layout.dims} values per frame), {100 * loss:.0f} % random datagram loss.\n"
        f"The parameter track is synthetic ({call.source})."
    )
    results = [
        simulate(call, train, reference=Reference.PREV, copies=1, loss=loss, seed=seed,
                 label="prev ref, 1 frame/datagram (paper)"),
        simulate(call, train, reference=Reference.ANCHOR, copies=1, loss=loss, seed=seed,
                 label="anchor ref + acks, 1 frame/datagram"),
        simulate(call, train, reference=Reference.ANCHOR, copies=3, loss=loss, seed=seed,
                 label="anchor ref + acks, 3 frames/datagram"),
    ]
    table = Table(title="what the receiver could decode")
    for col in ("scheme", "decoded", "from copies", "lost refs", "kbps", "max error"):
        table.add_column(col, justify="right" if col != "scheme" else "left")
    for r in results:
        table.add_row(
            r.label,
            f"{r.decoded}/{r.frames} ({100 * r.decoded / r.frames:.1f} %)",
            str(r.recovered_from_copies),
            str(r.missing_reference),
            f"{r.kbps:.2f}",
            f"{r.max_error_steps:.2f} steps",
        )
    console.print(table)
    console.print("max error: decoded minus sent (clamped to the trained bounds), in quantization steps;"
                  " 0.5 means only rounding was lost.")
    return results

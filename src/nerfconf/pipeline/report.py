"""What a call leaves behind: the side-by-side video, the stats file and Table 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerfconf.pipeline.probe import PAPER_MS, ModuleLatency


def side_by_side(inputs: dict[int, np.ndarray], shown: list, rows: dict[int, dict[str, float]],
                 path: Path, *, fps: float, size: int) -> int:
    """Input on the left, the receiver's output on the right, with a kbps / latency overlay.

    ``inputs`` maps the sender's sequence number to its camera frame; ``shown``
    lists the receiver's displayed frames (``key`` is the sequence number, -1
    for faded frames). Returns the number of frames written.
    """
    import cv2  # noqa: PLC0415

    from nerfconf.playout.sinks import VideoFileSink  # noqa: PLC0415

    sent = sorted((r["encode_out"], r.get("bytes", 0.0)) for r in rows.values() if "encode_out" in r)
    t_sent = np.array([t for t, _ in sent])
    cum_bytes = np.cumsum([b for _, b in sent])
    last_input = None
    written = 0
    with VideoFileSink(path, fps=fps, size=(2 * size, size), quality="high") as sink:
        for item in shown:
            row = rows.get(item.key, {}) if item.key >= 0 else {}
            left = inputs.get(item.key, last_input)
            if left is None:
                continue
            last_input = left
            canvas = np.concatenate([_fit(left, size), _fit(item.image, size)], axis=1)
            # payload kbps over the second before this frame was displayed
            t = item.t_display
            lo, hi = np.searchsorted(t_sent, [t - 1.0, t])
            kbps = 8 * (cum_bytes[hi - 1] - (cum_bytes[lo - 1] if lo > 0 else 0)) / 1e3 if hi > lo else 0.0
            latency = f"{1e3 * (row['display'] - row['capture']):.0f} ms" if "capture" in row and "display" in row \
                else "held"
            for text, y in ((f"{kbps:.1f} kbps", 16), (f"latency {latency}", 34)):
                cv2.putText(canvas, text, (size + 6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(canvas, "sender camera", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            sink.write(canvas)
            written += 1
    return written


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    import cv2  # noqa: PLC0415

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def latency_table(in_system: list[ModuleLatency], alone: dict[str, float] | None = None, title: str = ""):
    """Table 1 as a rich table: ours alone and in the running system, next to the paper's."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title or "Latency per module (ms, medians)")
    for col in ("module", "ours alone", "ours in system (p95)", "paper alone", "paper in system"):
        table.add_column(col, justify="left" if col == "module" else "right")
    alone = alone or {}
    for m in in_system:
        paper = PAPER_MS.get(m.module, (None, None))
        table.add_row(m.module, _ms(alone.get(m.module)), f"{m.median_ms:.1f} ({m.p95_ms:.1f})",
                      _ms(paper[0]), _ms(paper[1]))
    return table


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}" if v < 1 else f"{v:.1f}"


def call_summary(sender: dict, receiver: dict, latencies: list[ModuleLatency]) -> list[str]:
    """What a user wants to know after a call, one line each: frames through each stage, how many
    slots showed a fresh frame, the longest freeze, render and end-to-end times."""
    playout = receiver.get("playout", {})
    slots = receiver.get("slots", 0)
    fresh = receiver.get("fresh_displayed", 0)
    share = f" ({100 * fresh / slots:.0f} % of {slots} slots)" if slots else ""
    lines = [f"frames: captured {sender.get('captured', 0)}, sent {sender.get('sent', 0)}, received "
             f"{receiver.get('decoded', 0)}, rendered {receiver.get('rendered', 0)}, displayed "
             f"{receiver.get('displayed', 0)}",
             f"fresh frames on screen {fresh}{share}; slots concealed {playout.get('concealed', 0)}, "
             f"faded {receiver.get('faded', 0)}; longest freeze {receiver.get('longest_freeze_ms', 0.0):.0f} ms"]
    sizes = receiver.get("resolutions") or {}
    size_note = ", ".join(f"{n} at {r} px" for r, n in sorted(sizes.items(), key=lambda kv: -int(kv[0])))
    changes = receiver.get("resolution_changes", 0)
    lines.append(f"render p50 {receiver.get('render_ms_p50', 0.0):.0f} ms, p95 {receiver.get('render_ms_p95', 0.0):.0f}"
                 f" ms; {size_note or 'nothing rendered'}" + (f" ({changes} size changes)" if changes else ""))
    end = next((m for m in latencies if m.module == "end to end"), None)
    if end is not None:
        lines.append(f"end to end p50 {end.median_ms:.0f} ms, p95 {end.p95_ms:.0f} ms over {end.frames} frames")
    return lines


def write_stats(path: Path, stats: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stats, indent=1, default=float))

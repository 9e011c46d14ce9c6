"""Figures of the rate-distortion evaluation (matplotlib, Agg backend, PNG).

* :func:`plot_rd`: one metric against measured kbps, full frame and inside the head side by
  side, every codec as a curve and our streams as stars (the paper's Figure 4);
* :func:`plot_frame_grid`: the same frames from the reference, the avatar and each codec at
  its lowest rates (the paper's Figure 5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_frame_grid", "plot_rd"]

_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS (AlexNet), lower is better", "vmaf": "VMAF"}
_CODEC_STYLE = {"x265": ("tab:orange", "o"), "vvc": ("tab:purple", "s"), "x264": ("tab:brown", "^"),
                "av1": ("tab:cyan", "D")}
_CODEC_LABEL = {"x265": "x265 (paper's command)", "vvc": "VVC (vvenc)", "x264": "x264", "av1": "AV1 (SVT-AV1)"}
# the paper's colours: blue star unquantized, red star quantized + Exp-Golomb
_OURS_STYLE = {"float32": ("tab:blue", "ours, float32 (unquantized)"),
               "exp-golomb": ("tab:red", "ours, quantized + Exp-Golomb"),
               "arithmetic": ("tab:green", "ours, quantized + arithmetic")}


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _minor_label(v: float, _pos: int) -> str:
    """Labels 2, 3 and 5 of each decade; the other minor ticks stay unlabelled."""
    lead = f"{v:.0e}"[0]
    return f"{v:g}" if lead in "235" else ""


def plot_rd(points: list, metric: str, path: Path, title: str = "") -> Path:
    """``points``: :class:`nerfconf.evaluate.rd.RDPoint`; ``metric``: psnr, ssim, lpips or vmaf."""
    plt = _pyplot()
    from matplotlib import ticker  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, suffix, where in zip(axes, ("", "_head"), ("full frame", "inside the head mask")):
        m = metric + suffix
        codecs = sorted({p.codec for p in points if p.codec != "ours"}, key=list(_CODEC_STYLE).index)
        for c in codecs:
            pts = sorted((p for p in points if p.codec == c), key=lambda p: p.kbps)
            colour, marker = _CODEC_STYLE[c]
            ax.plot([p.kbps for p in pts], [p.mean(m) for p in pts], marker=marker, color=colour,
                    label=_CODEC_LABEL[c], lw=1.5, ms=5)
        for p in points:
            if p.codec == "ours" and p.label in _OURS_STYLE:
                colour, label = _OURS_STYLE[p.label]
                ax.plot([p.kbps], [p.mean(m)], marker="*", ms=16, color=colour, ls="none", label=label,
                        markeredgecolor="black", markeredgewidth=0.6)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # 10, not 10^1
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(_minor_label))
        ax.set_xlabel("measured bitrate (kbps, log scale)")
        ax.set_ylabel(_NAMES[metric])
        ax.set_title(where)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_frame_grid(columns: list[tuple[str, np.ndarray]], rows: list[tuple[int, str]], path: Path) -> Path:
    """``columns``: (label, frames (N, H, W, 3) uint8); ``rows``: (frame number, row label)."""
    plt = _pyplot()
    nr, nc = len(rows), len(columns)
    fig, axes = plt.subplots(nr, nc, figsize=(1.9 * nc, 1.95 * nr + 0.3), squeeze=False, constrained_layout=True)
    for j, (label, frames) in enumerate(columns):
        for i, (index, row_label) in enumerate(rows):
            ax = axes[i][j]
            ax.imshow(frames[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(row_label, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Conventional codecs as baselines: x265 (the paper's), VVC, x264 and SVT-AV1 through ffmpeg.

Each encode reads the lossless reference clip and writes a raw elementary stream (Annex B
for HEVC, AVC and VVC, low-overhead OBUs for AV1), so the stream holds exactly the bytes a
receiver needs, parameter sets included. The rate reported is the one *measured* from the
stream's packets over the clip's duration at the call frame rate, never the one requested:
at these rates encoders overshoot (x265 cannot go below about 11 kbps at 20 fps).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nerfconf.evaluate.ffmpeg import FFmpegError, encoders, packet_sizes, run_ffmpeg

__all__ = ["BASELINES", "DEFAULT_OTHER_KBPS", "DEFAULT_X265_KBPS", "Baseline", "EncodeResult", "encode"]

#: requested rates (kbps): x265 from below its floor (1k gives the floor) up past where it beats
#: the avatar, densest where the curves cross at a few kbps
DEFAULT_X265_KBPS = (1.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 25.0, 32.0, 40.0, 50.0, 64.0, 80.0, 100.0, 128.0)
#: the other codecs at their lowest rates
DEFAULT_OTHER_KBPS = (1.0, 5.0, 10.0, 20.0)


@dataclass(frozen=True)
class Baseline:
    name: str
    #: ffmpeg encoder
    encoder: str
    #: raw-stream muxer and file suffix
    muxer: str
    suffix: str
    #: encoder options after ``-c:v ENCODER`` (the rate is added as ``-b:v``)
    options: tuple[str, ...] = ()

    def command(self, source: Path, kbps: float, out: Path, fps: float) -> list[str]:
        """ffmpeg arguments; for x265 exactly the paper's ``-x265-params bframes=0 -b:v RATE -r 20``."""
        return ["-y", "-i", str(source), "-pix_fmt", "yuv420p", "-c:v", self.encoder, *self.options,
                "-b:v", f"{kbps:g}k", "-r", f"{fps:g}", "-f", self.muxer, str(out)]


BASELINES = {
    b.name: b
    for b in (
        Baseline("x265", "libx265", "hevc", "hevc", ("-x265-params", "bframes=0:log-level=error")),
        Baseline("vvc", "libvvenc", "vvc", "266"),
        Baseline("x264", "libx264", "h264", "h264"),
        Baseline("av1", "libsvtav1", "obu", "obu", ("-svtav1-params", "svt-log-level=1")),
    )
}


@dataclass(frozen=True)
class EncodeResult:
    codec: str
    requested_kbps: float
    #: measured: all packet bytes x 8 / (frames / fps)
    kbps: float
    bytes: int
    frames: int
    stream: Path


def encode(baseline: Baseline, source: Path, kbps: float, out: Path, *, frames: int, fps: float) -> EncodeResult:
    """Encodes the lossless ``source`` clip (``frames`` frames at ``fps``) at ``kbps`` requested."""
    if kbps <= 0:
        raise ValueError(f"requested rate must be positive, got {kbps}")
    if baseline.encoder not in encoders():
        raise FFmpegError(f"this ffmpeg has no {baseline.encoder} encoder (needed for {baseline.name})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    run_ffmpeg(baseline.command(source, kbps, tmp, fps))
    tmp.replace(out)
    sizes = packet_sizes(out)
    total = int(sizes.sum())
    return EncodeResult(baseline.name, float(kbps), total * 8 * fps / frames / 1000, total, frames, out)

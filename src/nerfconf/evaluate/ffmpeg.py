"""The ffmpeg of the pinned ``imageio-ffmpeg`` wheel: lossless clips, decoding, packet sizes, VMAF.

That one static build has libx265, libvvenc, libx264, libsvtav1 and libvmaf and needs no
system package, so every baseline and VMAF score comes from the same binary on every machine.
Frames cross the process boundary as raw ``rgb24`` (uint8, H x W x 3), never as images on disk.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "FFmpegError",
    "decode_rgb",
    "encoders",
    "ffmpeg_exe",
    "packet_sizes",
    "run_ffmpeg",
    "vmaf_scores",
    "write_lossless",
]


class FFmpegError(RuntimeError):
    """ffmpeg is missing, lacks a needed component, or failed on a file."""


@functools.cache
def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg  # noqa: PLC0415
    except ImportError as exc:
        raise FFmpegError("the codec baselines need the imageio-ffmpeg package (pip install imageio-ffmpeg)") from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FFmpegError(f"imageio-ffmpeg has no ffmpeg binary for this platform: {exc}") from exc


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None) -> bytes:
    """Runs ffmpeg quietly; returns stdout, raises FFmpegError with the tail of stderr."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
    cmd += ["-nostdin", *args] if stdin is None else args
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise FFmpegError(f"ffmpeg failed ({proc.returncode}): {' '.join(args[:12])} ...\n" + "\n".join(tail))
    return proc.stdout


@functools.cache
def encoders() -> frozenset[str]:
    """Names of the video encoders this ffmpeg has (``ffmpeg -encoders``)."""
    out = run_ffmpeg(["-encoders"]).decode(errors="replace")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "V":
            names.add(parts[1])
    return frozenset(names)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames")
    return np.ascontiguousarray(frames)


def _raw_input(frames: np.ndarray, fps: float) -> list[str]:
    h, w = frames.shape[1:3]
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0"]


def write_lossless(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Writes frames as FFV1 in Matroska, RGB kept exactly (the common input of every codec)."""
    frames = _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mkv")
    run_ffmpeg(["-y", *_raw_input(frames, fps), "-c:v", "ffv1", "-level", "3", "-pix_fmt", "bgr0", str(tmp)],
               stdin=frames.tobytes())
    tmp.replace(path)
    return path


def decode_rgb(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """All frames of a video or raw bitstream as uint8 RGB (N, H, W, 3); ``size`` is (W, H)."""
    w, h = size
    raw = run_ffmpeg(["-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "pipe:1"])
    frame_bytes = w * h * 3
    if len(raw) == 0 or len(raw) % frame_bytes:
        raise FFmpegError(f"{path}: decoded {len(raw)} bytes, not a whole number of {w}x{h} frames")
    return np.frombuffer(bytearray(raw), np.uint8).reshape(-1, h, w, 3)  # writable, as torch wants


def packet_sizes(path: str | Path) -> np.ndarray:
    """Byte size of every packet of a stream, as ffmpeg's parser splits it (``-f framecrc``).

    For a raw elementary stream (Annex B, OBU) the packets hold every byte of the file that a
    decoder needs, parameter sets included.
    """
    out = run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "pipe:1"])
    sizes = []
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 5:
            sizes.append(int(fields[4]))
    if not sizes:
        raise FFmpegError(f"{path}: no video packets")
    return np.array(sizes, dtype=np.int64)


def vmaf_scores(reference: str | Path, distorted: np.ndarray, fps: float, *, threads: int = 2) -> np.ndarray:
    """Per-frame VMAF (libvmaf's built-in default model) of RGB frames against a reference video.

    Both sides are converted to 8-bit 4:4:4 YUV (BT.601) the same way before scoring; VMAF
    itself looks at luma only.
    """
    distorted = _check_frames(distorted)
    with tempfile.TemporaryDirectory(prefix="nerfconf-vmaf-") as tmp:
        log = Path(tmp) / "vmaf.json"
        graph = ("[0:v]format=yuv444p,setpts=PTS-STARTPTS[d];[1:v]format=yuv444p,setpts=PTS-STARTPTS[r];"
                 f"[d][r]libvmaf=log_fmt=json:log_path={log}:n_threads={threads}")
        run_ffmpeg([*_raw_input(distorted, fps), "-r", f"{fps:g}", "-i", str(reference),
                    "-lavfi", graph, "-f", "null", "-"], stdin=distorted.tobytes())
        try:
            frames = json.loads(log.read_text())["frames"]
            scores = np.array([f["metrics"]["vmaf"] for f in frames], dtype=np.float64)
        except (OSError, KeyError, ValueError) as exc:
            raise FFmpegError(f"libvmaf wrote no readable log: {exc}") from exc
    if len(scores) != len(distorted):
        raise FFmpegError(f"libvmaf scored {len(scores)} frames, expected {len(distorted)}")
    return scores

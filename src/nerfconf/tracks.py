"""Parameter tracks: a sequence of per-frame face parameters, as stored in ``track.npz``.

A track is what extraction writes and what the codec, benchmarks and the
avatar trainer read. Files load with ``allow_pickle=False``: a track may come
from anyone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.types import FaceParams, ParamLayout

TRACK_FORMAT = 1
#: The held-out split: the last frames of an enrollment video that fitting and training never
#: see, scored afterwards (the paper's 500). An avatar records its own (``AvatarBundle.test_frames``).
HELD_OUT_FRAMES = 500


@dataclass
class ParamTrack:
    layout: ParamLayout
    #: (frames, layout.dims) float64, rows of frames without a face are undefined
    values: np.ndarray
    face_found: np.ndarray
    #: capture time of each frame in seconds
    t: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.values)
        if self.values.shape != (n, self.layout.dims):
            raise ValueError(f"track values have shape {self.values.shape}, layout needs (N, {self.layout.dims})")
        if self.face_found.shape != (n,) or self.t.shape != (n,):
            raise ValueError("track face_found and t must have one entry per frame")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def fps(self) -> float:
        if len(self.t) < 2:
            return 0.0
        return float((len(self.t) - 1) / (self.t[-1] - self.t[0]))

    def params(self, i: int) -> FaceParams:
        return FaceParams.from_vector(
            self.values[i], self.layout, face_found=bool(self.face_found[i]), t_capture=float(self.t[i]), index=i
        )

    def with_layout(self, layout: ParamLayout) -> ParamTrack:
        """The same frames with translation dropped (or kept); expression counts must match."""
        if layout.n_expression != self.layout.n_expression or (layout.translation and not self.layout.translation):
            raise ValueError(f"cannot turn a track of layout {self.layout} into {layout}")
        return ParamTrack(layout, self.values[:, : layout.dims], self.face_found, self.t, self.source)

    def slice(self, start: int, stop: int | None = None) -> ParamTrack:
        s = slice(start, stop)
        return ParamTrack(self.layout, self.values[s], self.face_found[s], self.t[s], self.source)

    def save(self, path: str | Path, extras: dict[str, np.ndarray] | None = None) -> None:
        """Writes the track to ``path`` (as named: no ``.npz`` is added); ``extras`` (per-frame landmarks,
        timings) are stored beside it as ``x_*``."""
        # Built in memory and written in one go: numpy's zip writer, stopped by a full disk, raises
        # again from its finaliser, and a track is small.
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            **{f"x_{k}": v for k, v in (extras or {}).items()},
            format=np.int64(TRACK_FORMAT),
            n_expression=np.int64(self.layout.n_expression),
            translation=np.bool_(self.layout.translation),
            values=self.values.astype(np.float64),
            face_found=self.face_found.astype(bool),
            t=self.t.astype(np.float64),
            source=np.str_(self.source),
        )
        Path(path).write_bytes(buffer.getvalue())

    @staticmethod
    def load_extras(path: str | Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as z:
            return {k[2:]: z[k] for k in z.files if k.startswith("x_")}

    @classmethod
    def load(cls, path: str | Path) -> ParamTrack:
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt != TRACK_FORMAT:
                    raise ValueError(f"{path}: track format {fmt}, this version reads {TRACK_FORMAT}")
                layout = ParamLayout(int(z["n_expression"]), bool(z["translation"]))
                return cls(
                    layout,
                    np.asarray(z["values"], np.float64),
                    np.asarray(z["face_found"], bool),
                    np.asarray(z["t"], np.float64),
                    str(z["source"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable parameter track: {exc}") from exc


def _lowpass(x: np.ndarray, cutoff_hz: np.ndarray, fps: float) -> np.ndarray:
    """Two cascaded one-pole filters per column: smooth like muscle motion, not a random walk."""
    a = np.exp(-2 * np.pi * cutoff_hz / fps)
    y = np.empty_like(x)
    for _ in range(2):
        acc = x[0].copy()
        for i in range(len(x)):
            acc = a * acc + (1 - a) * x[i]
            y[i] = acc
        x = y.copy()
    return y


def synthetic_track(
    frames: int = 2000,
    fps: float = 20.0,
    layout: ParamLayout | None = None,
    seed: int = 0,
) -> ParamTrack:
    """A stand-in for a real tracked talking head, until extraction provides one.

    Modelled on PCA coefficients of face landmarks during speech:
    * leading expression components (jaw, lips) move at syllable rate (~3 Hz
      bandwidth) with large variance; later components are slower and smaller;
    * two components blink (150 ms closures every 2-6 s);
    * the head turns slowly (0.3 Hz bandwidth, about ±8° yaw, ±5° pitch, ±3° roll);
    * every dimension carries tracker jitter of 3 % of its own standard deviation.
    """
    layout = layout or ParamLayout()
    rng = np.random.default_rng(seed)
    k = layout.n_expression
    ranks = np.arange(k)
    cutoff = 3.0 * np.exp(-ranks / 12.0) + 0.4
    scale = 1.0 / np.sqrt(1.0 + ranks)
    expr = _lowpass(rng.standard_normal((frames, k)), cutoff, fps)
    expr = expr / expr.std(axis=0) * scale
    if k >= 4:
        t_next = rng.uniform(1, 3)
        blink_len = max(1, round(0.15 * fps))
        for i in range(frames):
            if i / fps >= t_next:
                expr[i : i + blink_len, 2:4] += 2.5 * scale[2:4]
                t_next += rng.uniform(2, 6)
    expr += rng.standard_normal(expr.shape) * 0.03 * scale
    rot = _lowpass(rng.standard_normal((frames, 3)), np.full(3, 0.3), fps)
    rot = rot / rot.std(axis=0) * np.radians([4.0, 2.5, 1.5])
    rot += rng.standard_normal(rot.shape) * np.radians(0.1)
    parts = [expr, rot]
    if layout.translation:
        trans = _lowpass(rng.standard_normal((frames, 3)), np.full(3, 0.3), fps)
        trans = trans / trans.std(axis=0) * np.array([0.01, 0.01, 0.02]) + np.array([0.0, 0.0, 0.5])
        trans += rng.standard_normal(trans.shape) * 0.0005
        parts.append(trans)
    values = np.concatenate(parts, axis=1)
    t = np.arange(frames) / fps
    return ParamTrack(layout, values, np.ones(frames, bool), t, f"synthetic(seed={seed}, fps={fps:g})")

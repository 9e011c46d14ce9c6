"""``nerfconf eval rd``: quality against bitrate, the avatar next to x265, VVC, x264 and SVT-AV1.

Protocol (the paper's Figure 4, made explicit):

1. The reference is the held-out end of the enrollment video, head on white at the avatar's
   resolution, built by the avatar's own crop / tracker / mask code and played at 20 fps
   (:mod:`nerfconf.evaluate.reference`). It is written once, losslessly, as the input of
   every codec.
2. Each baseline codec encodes it at a ladder of requested rates; the rate reported is the
   one measured from its stream. The x265 ladder stops once x265 clearly beats the avatar:
   two ladder points in a row better on every metric (``stop_x265_when_better``).
3. The avatar is driven with the parameters the sender transmits, in three forms
   (:mod:`nerfconf.evaluate.ours`), and rendered.
4. Every frame of every point is scored (:mod:`nerfconf.evaluate.scoring`).

Everything expensive is cached in ``<out>/cache`` under a key of its inputs and settings, so
a rerun with more rates or new plots costs only what changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY
from nerfconf.evaluate.baselines import BASELINES, DEFAULT_OTHER_KBPS, DEFAULT_X265_KBPS, encode
from nerfconf.evaluate.ffmpeg import decode_rgb, ffmpeg_exe, packet_sizes, write_lossless
from nerfconf.evaluate.ours import OurStream, avatar_renderer, our_streams
from nerfconf.evaluate.quality import PoseRefinement, refine_poses
from nerfconf.evaluate.rdmath import bd_rate, match_rate
from nerfconf.evaluate.reference import CALL_FPS, ReferenceClip, reference_clip
from nerfconf.evaluate.scoring import HIGHER_IS_BETTER, METRICS, score_clip
from nerfconf.report import INLINE, jsonable, to_json

__all__ = ["RDInfo", "RDOutput", "RDPoint", "RDResult", "RDSettings", "RDSummary", "run_rd", "summarize",
           "write_csv"]

#: bump when a metric's definition changes, so cached scores are recomputed
_SCORES_VERSION = 1
#: the stream we send in a call, the one the codecs are matched against
SENT = "arithmetic"


@dataclass(frozen=True)
class RDSettings:
    #: frames rendered and scored, spread over the held-out clip (all are encoded); None: all
    frames: int | None = None
    #: held-out frames at the end of the video; None: the avatar's own split
    test_frames: int | None = None
    fps: float = CALL_FPS
    codecs: tuple[str, ...] = ("x265", "vvc", "x264", "av1")
    #: requested rates, kbps; x265 climbs until it beats the avatar on every metric
    x265_kbps: tuple[float, ...] = DEFAULT_X265_KBPS
    other_kbps: tuple[float, ...] = DEFAULT_OTHER_KBPS
    stop_x265_when_better: bool = True
    samples: int = 48
    vmaf: bool = True
    #: correct each held-out pose through the avatar before coding it, as a default sender does
    #: (``avatar.pose_fit``, every ``refine_every``th frame); False: the tracker's poses
    refine_pose: bool = True
    refine_every: int = DEFAULT_REFINE_EVERY


@dataclass
class RDPoint:
    #: "ours" or a baseline's name
    codec: str
    #: "float32" / "exp-golomb" / "arithmetic" for ours; "<rate>k requested" for a codec
    label: str
    kbps: float
    requested_kbps: float | None = None
    rotation_only_kbps: float | None = None
    #: per-frame scores for every name in METRICS
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    #: where its frames come from: an elementary stream or a render cache
    source: str = ""

    def mean(self, metric: str) -> float:
        v = self.scores[metric]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan

    def row(self) -> dict:
        return {"codec": self.codec, "label": self.label,
                "requested_kbps": "" if self.requested_kbps is None else f"{self.requested_kbps:g}",
                "kbps": f"{self.kbps:.3f}",
                "rotation_only_kbps": "" if self.rotation_only_kbps is None else f"{self.rotation_only_kbps:.3f}",
                **{m: f"{self.mean(m):.5f}" for m in METRICS}}


@dataclass(frozen=True)
class RDInfo:
    """What a run measured on, with what, and how long it took."""

    avatar: str
    video: str
    resolution: int
    #: held-out frames in the clip (all of them encoded)
    frames: int
    scored_frames: int
    first_frame: int
    last_frame: int
    fps: float
    renderer: str
    ffmpeg: str
    machine: str
    seconds: float
    settings: RDSettings
    #: None when the tracker's poses were coded as they are
    pose_refinement: PoseRefinement | None


@dataclass
class RDResult:
    points: list[RDPoint]
    clip: ReferenceClip
    #: indices into the clip of the frames every point was scored on
    scored: np.ndarray
    #: the lossless file of the scored reference frames
    reference_video: Path
    renderer: str
    settings: RDSettings
    info: RDInfo

    def ours(self, name: str = SENT) -> RDPoint:
        return next(p for p in self.points if p.codec == "ours" and p.label == name)

    def codec_points(self, codec: str) -> list[RDPoint]:
        return sorted((p for p in self.points if p.codec == codec), key=lambda p: p.kbps)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_scores(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return {m: np.array(raw[m], dtype=np.float64) for m in METRICS}
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is recomputed


def _save_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(obj, allow_nan=True))
    tmp.replace(path)


class _Scorer:
    """Scores the picked frames of a point against the same frames of the reference (cached)."""

    def __init__(self, clip: ReferenceClip, scored: np.ndarray, reference_video: Path, cache: Path,
                 vmaf: bool) -> None:
        self.clip, self.scored, self.video, self.cache, self.vmaf = clip, scored, reference_video, cache, vmaf
        self.key = _key(clip.key, scored.tolist(), vmaf, _SCORES_VERSION)

    def __call__(self, key: str, frames_fn) -> dict[str, np.ndarray]:
        path = self.cache / f"scores-{_key(key, self.key)}.json"
        cached = _load_scores(path)
        if cached is not None:
            return cached
        frames = frames_fn()
        if len(frames) != len(self.scored):
            raise ValueError(f"{key}: {len(frames)} frames to score, expected {len(self.scored)}")
        scores = score_clip(self.clip.frames[self.scored], self.clip.masks[self.scored], frames, self.video,
                            self.clip.fps, vmaf=self.vmaf)
        _save_json(path, {m: [float(x) for x in v] for m, v in scores.items()})
        return scores


def _render_path(cache: Path, avatar: Path, renderer: str, rows: np.ndarray) -> Path:
    """The render cache file of these parameter rows with this avatar's weights and renderer."""
    weights = hashlib.sha256((avatar / "avatar.safetensors").read_bytes()).hexdigest()
    digest = hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()
    return cache / f"render-{_key(weights, renderer, digest, rows.shape)}.npz"


def _render_all(stream: OurStream, rows: np.ndarray, render, path: Path, progress: bool) -> tuple[np.ndarray, Path]:
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["frames"], path
    items = range(len(rows))
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, unit="frame", desc=f"rendering ours ({stream.render_key})")
    frames = np.stack([render(rows[i]) for i in items])
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, frames=frames)
    tmp.replace(path)
    return frames, path


def _beats(point: RDPoint, target: RDPoint) -> bool:
    """Whether ``point`` is at least as good as ``target`` on every metric both have."""
    for m in METRICS:
        a, b = point.mean(m), target.mean(m)
        if math.isnan(a) or math.isnan(b):
            continue
        if (a < b) if HIGHER_IS_BETTER[m.removesuffix("_head")] else (a > b):
            return False
    return True


def run_rd(avatar: str | Path, video: str | Path, out: str | Path, settings: RDSettings = RDSettings(),
           *, progress: bool = False) -> RDResult:
    out = Path(out)
    cache = out / "cache"
    unknown = [c for c in settings.codecs if c not in BASELINES]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {sorted(BASELINES)}")
    started = time.time()
    bundle = AvatarBundle.load(avatar)
    clip = reference_clip(avatar, video, test_frames=settings.test_frames, fps=settings.fps, cache_dir=cache,
                          bundle=bundle, progress=progress)
    source_video = cache / f"reference-{clip.key}.mkv"  # every frame: what the codecs encode
    if not source_video.is_file():
        write_lossless(clip.frames, source_video, clip.fps)
    scored = clip.scored_frames(settings.frames)
    reference_video = source_video
    if len(scored) < len(clip.frames):
        reference_video = cache / f"reference-{clip.key}-scored-{_key(scored.tolist())}.mkv"
        if not reference_video.is_file():
            write_lossless(clip.frames[scored], reference_video, clip.fps)
    score = _Scorer(clip, scored, reference_video, cache, settings.vmaf)
    points: list[RDPoint] = []

    # -- ours ------------------------------------------------------------------------------
    renderer, render = avatar_renderer(bundle, settings.samples)
    params, refinement = clip.params.copy(), None
    if settings.refine_pose:
        refinement = refine_poses(bundle, params, clip.frames, clip.indices, every=settings.refine_every,
                                  progress=progress)
    streams = our_streams(bundle, params, clip.train_params, clip.fps)
    rendered: dict[str, tuple[np.ndarray, Path]] = {}
    for s in streams:
        if s.render_key not in rendered:
            rows = s.params[scored]
            path = _render_path(cache, Path(avatar), renderer, rows)
            rendered[s.render_key] = _render_all(s, rows, render, path, progress)
        frames, path = rendered[s.render_key]
        scores = score(f"ours/{renderer}/{path.name}", lambda f=frames: f)
        points.append(RDPoint("ours", s.name, s.kbps, None, s.rotation_only_kbps, scores, str(path)))
    sent = next(p for p in points if p.label == SENT)

    # -- baselines -------------------------------------------------------------------------
    size = (clip.resolution, clip.resolution)
    jobs = [(c, r) for c in settings.codecs for r in (settings.x265_kbps if c == "x265" else settings.other_kbps)]
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), unit="encode", desc="codec baselines")
    x265_better_in_a_row = 0
    for codec, rate in jobs:
        if bar is not None:
            bar.set_postfix_str(f"{codec} {rate:g}k")
        if codec == "x265" and x265_better_in_a_row >= 2:
            if bar is not None:
                bar.update()
            continue
        b = BASELINES[codec]
        stream = cache / "streams" / f"{codec}-{rate:g}k-{_key(clip.key, b.command(Path('in'), rate, Path('o'), clip.fps))}.{b.suffix}"
        if stream.is_file():
            total = int(packet_sizes(stream).sum())
            kbps = total * 8 * clip.fps / len(clip.frames) / 1000
        else:
            kbps = encode(b, source_video, rate, stream, frames=len(clip.frames), fps=clip.fps).kbps
        scores = score(f"{codec}/{stream.name}", lambda s=stream: decode_rgb(s, size)[scored])
        point = RDPoint(codec, f"{rate:g}k requested", kbps, rate, None, scores, str(stream))
        points.append(point)
        if codec == "x265" and settings.stop_x265_when_better:
            x265_better_in_a_row = x265_better_in_a_row + 1 if _beats(point, sent) else 0
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    info = RDInfo(
        avatar=str(avatar),
        video=Path(video).name,
        resolution=clip.resolution,
        frames=len(clip.frames),
        scored_frames=len(scored),
        first_frame=int(clip.indices[0]),
        last_frame=int(clip.indices[-1]),
        fps=clip.fps,
        renderer=renderer,
        ffmpeg=Path(ffmpeg_exe()).name,
        machine=f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        seconds=round(time.time() - started, 1),
        settings=settings,
        pose_refinement=refinement,
    )
    return RDResult(points, clip, scored, reference_video, renderer, settings, info)


def write_csv(result: RDResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [p.row() for p in result.points]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@dataclass(frozen=True)
class OurRate:
    kbps: float
    #: the same stream without head translation (49 dims)
    rotation_only_kbps: float | None


@dataclass(frozen=True)
class CodecMatch:
    """The rate at which a codec reaches our quality on one metric (see :class:`~nerfconf.evaluate.rdmath.Match`)."""

    kbps: float
    how: str
    #: as the Markdown table prints it: "10.9", "<= 7.0", "> 128.0"
    text: str


@dataclass(frozen=True)
class MetricSummary:
    #: our sent stream's mean
    ours: float
    match_kbps: dict[str, CodecMatch]
    #: per codec other than x265; None where the curves do not overlap
    bd_rate_vs_x265_percent: dict[str, float | None]


@dataclass(frozen=True)
class RDSummary:
    """What ``nerfconf eval rd`` found: per metric, our quality, the rate at which each codec
    matches it and BD-rates against x265; then what it measured on (one flat JSON object)."""

    #: per stream of ours: "float32", "exp-golomb", "arithmetic"
    ours: dict[str, OurRate]
    #: the stream a call sends, the one the codecs are matched against
    sent: str
    metrics: dict[str, MetricSummary]
    #: each codec's lowest measured rate
    floors_kbps: dict[str, float]
    info: RDInfo = field(metadata=INLINE)


@dataclass(frozen=True)
class RDOutput:
    """What ``nerfconf eval rd --json`` prints: the summary and the files it wrote."""

    summary: RDSummary = field(metadata=INLINE)
    outputs: dict[str, Path]


def summarize(result: RDResult) -> RDSummary:
    """Per metric: our quality, the rate at which each codec matches it, and BD-rates against x265."""
    sent = result.ours(SENT)
    codecs = [c for c in result.settings.codecs if result.codec_points(c)]
    table = {}
    for m in METRICS:
        hib = HIGHER_IS_BETTER[m.removesuffix("_head")]
        target = sent.mean(m)
        if math.isnan(target):
            continue
        matches, bd_rates = {}, {}
        for c in codecs:
            pts = [(p.kbps, p.mean(m)) for p in result.codec_points(c)]
            match = match_rate(pts, target, hib)
            matches[c] = CodecMatch(match.kbps, match.how, str(match))
            if c != "x265" and "x265" in codecs:
                anchor = [(p.kbps, p.mean(m)) for p in result.codec_points("x265")]
                bd_rates[c] = bd_rate(anchor, pts, hib)
        table[m] = MetricSummary(target, matches, bd_rates)
    return RDSummary(
        ours={p.label: OurRate(p.kbps, p.rotation_only_kbps) for p in result.points if p.codec == "ours"},
        sent=SENT,
        metrics=table,
        floors_kbps={c: result.codec_points(c)[0].kbps for c in codecs},
        info=result.info,
    )


def summary_markdown(summary: RDSummary) -> str:
    """The summary as Markdown tables (what RESULTS.md quotes)."""
    ours = summary.ours
    lines = ["| our stream | kbps (rotation + translation, rendered) | kbps (rotation only, 49 dims) |",
             "| --- | --- | --- |"]
    for name, o in ours.items():
        lines.append(f"| {name} | {o.kbps:.2f} | {o.rotation_only_kbps:.2f} |")
    codecs = list(summary.floors_kbps)
    lines += ["", (f"Rate (kbps) at which each codec matches our {summary.sent} stream "
              f"({ours[summary.sent].kbps:.2f} kbps); `<=` means its lowest reachable rate already does:"),
              "", "| metric | ours | " + " | ".join(codecs) + " |", "| --- | --- |" + " --- |" * len(codecs)]
    for m, e in summary.metrics.items():
        cells = [e.match_kbps[c].text for c in codecs]
        lines.append(f"| {m} | {e.ours:.4g} | " + " | ".join(cells) + " |")
    others = [c for c in codecs if c != "x265"]
    if "x265" in codecs and others:
        lines += ["", ("BD-rate against x265 (%, negative = fewer bits for the same quality; "
                  "blank where the curves do not overlap):"), "",
                  "| metric | " + " | ".join(others) + " |", "| --- |" + " --- |" * len(others)]
        for m, e in summary.metrics.items():
            cells = ["" if e.bd_rate_vs_x265_percent.get(c) is None else f"{e.bd_rate_vs_x265_percent[c]:+.1f}"
                     for c in others]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    floors = ", ".join(f"{c} {v:.1f}" for c, v in summary.floors_kbps.items())
    lines += ["", f"Lowest measured rates (kbps): {floors}."]
    return "\n".join(lines) + "\n"


def _frames_of(point: RDPoint, result: RDResult) -> np.ndarray:
    """The scored frames of a point: our render cache holds only those, a stream holds all."""
    if point.codec == "ours":
        with np.load(point.source, allow_pickle=False) as z:
            return z["frames"]
    size = (result.clip.resolution, result.clip.resolution)
    return decode_rgb(point.source, size)[result.scored]


def grid_columns(result: RDResult) -> list[RDPoint]:
    """For the frame grid: our sent stream, then each codec at the rate nearest a common one.

    The common rate is the highest of the codecs' floors, so every codec can be shown at
    (about) the same rate: the lowest that all of them reach.
    """
    codecs = [c for c in result.settings.codecs if result.codec_points(c)]
    cols = [result.ours(SENT)]
    if codecs:
        common = max(result.codec_points(c)[0].kbps for c in codecs)
        for c in codecs:
            cols.append(min(result.codec_points(c), key=lambda p: abs(math.log(p.kbps / common))))
    return cols


def grid_rows(clip: ReferenceClip, scored: np.ndarray) -> list[tuple[int, str]]:
    """Three scored frames (positions in ``scored``): the first, the middle, the fastest head rotation."""
    speed = clip.rotation_speed()[scored]
    n = len(scored)
    fast = int(np.argmax(speed))
    rows = [(0, f"frame {clip.indices[scored[0]]}"), (n // 2, f"frame {clip.indices[scored[n // 2]]}")]
    rows.append((fast, f"frame {clip.indices[scored[fast]]}\nfast motion\n{speed[fast]:.0f} deg/s"))
    return rows


def write_report(result: RDResult, out: Path, *, grid: bool = True) -> dict[str, Path]:
    """CSV, per-frame JSON, summary (JSON and Markdown), one RD plot per metric, the frame grid."""
    from nerfconf.evaluate.plots import plot_frame_grid, plot_rd  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "rd_points.csv", "frames_json": out / "rd_per_frame.json",
             "summary_json": out / "rd_summary.json", "summary_md": out / "rd_summary.md"}
    write_csv(result, paths["csv"])
    _save_json(paths["frames_json"], {
        "info": jsonable(result.info), "frame_indices": result.clip.indices[result.scored].tolist(),
        "points": [{**p.row(), "per_frame": {m: [float(x) for x in v] for m, v in p.scores.items()}}
                   for p in result.points]})
    summary = summarize(result)
    paths["summary_json"].write_text(to_json(summary, indent=1))
    paths["summary_md"].write_text(summary_markdown(summary))
    title = (f"{result.info.video}: {len(result.clip.frames)} held-out frames at {result.clip.fps:g} fps "
             f"({len(result.scored)} scored), {result.clip.resolution} px")
    for metric in HIGHER_IS_BETTER:
        paths[f"plot_{metric}"] = plot_rd(result.points, metric, out / f"rd_{metric}.png", title)
    if grid:
        cols = [("reference (head on white)", result.clip.frames[result.scored])]
        for p in grid_columns(result):
            name = f"ours ({p.label})" if p.codec == "ours" else p.codec
            cols.append((f"{name}\n{p.kbps:.1f} kbps", _frames_of(p, result)))
        paths["grid"] = plot_frame_grid(cols, grid_rows(result.clip, result.scored), out / "frame_grid.png")
    return paths

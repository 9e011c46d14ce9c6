"""``nerfconf eval quality``: how close an avatar renders held-out frames of its video.

The reference is exactly what the avatar trains on: the head on white, at the
bundle's resolution, through the bundle's crop. The avatar is driven by the
parameters the sender would transmit for those frames (the bundle's face
model, with smoothing), and rendered with the reference volume renderer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.camera import Camera, HeadPose
from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY
from nerfconf.avatar.rendering.renderer import FixedOccupancy, render_image
from nerfconf.capture.video import probe
from nerfconf.evaluate.metrics import FullFrameScores, HeadScores, score_frames
from nerfconf.face.extract import FaceTracker
from nerfconf.face.segment import head_frames
from nerfconf.image_file import write_image
from nerfconf.tracks import ParamTrack
from nerfconf.types import ParamLayout


@dataclass
class HeldOut:
    references: np.ndarray  # (N, R, R, 3) uint8
    masks: np.ndarray  # (N, R, R) float32
    expressions: np.ndarray  # (N, K)
    cameras: list[Camera]
    indices: np.ndarray
    #: (N, K + 6) the sender's smoothed parameters (expression unclipped, angles, translation)
    params: np.ndarray
    #: (M, K + 6) the same for the training frames with a face; empty unless asked for
    train_params: np.ndarray


    def track(self, fps: float, source: str) -> ParamTrack:
        """The parameters a receiver renders these frames from (expressions clipped to the
        avatar's bounds, the poses as sent or as refined) as a track, timed at ``fps``."""
        k = self.expressions.shape[1]
        rows = np.concatenate([self.expressions, self.params[:, k : k + 6]], axis=1)
        layout = ParamLayout(k, translation=True)
        return ParamTrack(layout, rows, np.ones(len(rows), bool), self.indices / fps, source)


@dataclass(frozen=True)
class PoseRefinement:
    """What the sender-side pose refinement cost and how far it moved the poses."""

    resolution: int
    iterations: int
    every: int
    #: per fitted frame
    ms_median: float
    rotation_deg_median: float
    translation_mm_median: float


@dataclass(frozen=True)
class QualityResult:
    """``nerfconf eval quality``: the avatar's renders of held-out frames, scored."""

    avatar: str
    video: str
    resolution: int
    frames: int
    first_frame: int
    render_ms_median: float
    renderer: str
    #: None when the tracker's poses were rendered as they are
    pose_refinement: PoseRefinement | None
    full: FullFrameScores
    head: HeadScores | None
    #: the ground-truth-above-avatar image, where one was written
    strip: Path | None


def pose_camera(bundle: AvatarBundle, pose_params: np.ndarray) -> Camera:
    """The avatar's camera for a transmitted (yaw, pitch, roll, tx, ty, tz)."""
    return bundle.camera(HeadPose.from_vector(pose_params))


def heldout_track(bundle: AvatarBundle, video: str | Path, test_frames: int | None = None,
                  progress: bool = False) -> ParamTrack:
    """The parameters of the last ``test_frames`` frames of the avatar's video, as a default
    sender's tracker derives them (the inputs ``eval quality`` and ``bench render`` use)."""
    held = held_out_frames(bundle, video, test_frames, progress)
    return held.track(probe(video).fps or 25.0,
                      f"{Path(video).name}: held-out frames {held.indices[0]}..{held.indices[-1]}")


def held_out_frames(bundle: AvatarBundle, video: str | Path, test_frames: int | None = None, progress: bool = False,
                    *, with_training: bool = False) -> HeldOut:
    """Head-on-white references, mattes and transmitted parameters of the last ``test_frames``.

    With ``with_training`` the tracker also runs over the training frames before them (as a
    sender would, the smoothing filter running on), and their parameters are returned too. The
    held-out frames' landmarks are the same either way: the tracker starts afresh at them.
    """
    if test_frames is None:
        test_frames = bundle.test_frames
    info = probe(video)
    start = max(0, info.frames - test_frames)
    model, r = bundle.face_model, bundle.resolution
    k = model.n_expression
    tracker = FaceTracker(model)
    train = _tracked_params(video, tracker, stop=start, size=r, progress=progress) if with_training else []
    # Exactly as the avatar's training frames were made: its crop, and its head mask's neck.
    frames = head_frames(video, start=start, size=r, crop=model.crop, neck_margin=model.neck_margin)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        frames = tqdm(frames, total=info.frames - start, unit="frame", desc="tracking and masking")
    refs, masks, params, idx = [], [], [], []
    for white, alpha, lm in frames:
        vector = tracker.update(lm, white.t_capture)
        if vector is None:
            continue
        refs.append(white.image)
        masks.append(alpha)
        params.append(vector)
        idx.append(white.index)
    if not refs:
        raise ValueError(f"{video}: no face in its last {test_frames} frames")
    p_arr = np.stack(params)
    return HeldOut(
        references=np.stack(refs),
        masks=np.stack(masks).astype(np.float32),
        expressions=np.clip(p_arr[:, :k], model.bounds_lo[:k], model.bounds_hi[:k]),
        cameras=[pose_camera(bundle, p[k : k + 6]) for p in p_arr],
        indices=np.array(idx),
        params=p_arr,
        train_params=np.stack(train) if train else np.zeros((0, p_arr.shape[1])),
    )


def _tracked_params(video: str | Path, tracker: FaceTracker, *, stop: int, size: int,
                    progress: bool) -> list[np.ndarray]:
    """The sender's smoothed parameters of the frames before ``stop`` (the tracker runs on into
    the held-out frames, as a sender's would), from landmarks alone: none is scored, so none
    is segmented."""
    from nerfconf.capture.video import read_frames  # noqa: PLC0415
    from nerfconf.face.landmarks import FaceMeshDetector  # noqa: PLC0415

    out = []
    with FaceMeshDetector(stream=True) as detector:
        frames = read_frames(video, stop=stop, size=size, crop=tracker.model.crop)
        if progress:
            from tqdm import tqdm  # noqa: PLC0415

            frames = tqdm(frames, total=stop, unit="frame", desc="tracking the training frames")
        for frame in frames:
            vector = tracker.update(detector.detect(frame.image), frame.t_capture)
            if vector is not None:
                out.append(vector)
    return out


def evaluate_quality(
    avatar: str | Path,
    video: str | Path,
    *,
    test_frames: int | None = None,
    samples: int = 48,
    strip: Path | None = None,
    fast: bool = False,
    render_resolution: int | None = None,
    refine_pose: bool = True,
    refine_every: int = DEFAULT_REFINE_EVERY,
    progress: bool = False,
) -> QualityResult:
    """Scores the avatar on the held-out frames of its video.

    By default frames come from the reference volume renderer (about a second a frame
    on this CPU). ``fast`` renders them with the receiver's renderer instead, which
    stays within 40 dB PSNR of the reference and is about 10x faster: for quick comparisons.
    ``refine_pose`` corrects each frame's head pose through the avatar first, as a default
    sender does (``avatar.pose_fit``), from the same head-on-white frame; without it the
    score is that of a sender with ``--no-refine-pose``. ``render_resolution`` (fast renderer only)
    renders smaller and scales up, as a receiver on a slow host does (``pipeline.render_budget``).
    """
    if render_resolution is not None and not fast:
        raise ValueError("a render resolution other than the avatar's needs the fast renderer")
    bundle = AvatarBundle.load(avatar)
    held = held_out_frames(bundle, video, test_frames, progress)
    refinement = refine_held_out(bundle, held, every=refine_every, progress=progress) if refine_pose else None
    render = (_fast_frames(bundle, held, probe(video).fps or 25.0, render_resolution) if fast
              else _reference_frames(bundle, held, samples))
    rendered, ms = [], []
    items = range(len(held.cameras))
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, unit="frame", desc="rendering")
    for i in items:
        t0 = time.perf_counter()
        rendered.append(render(i))
        ms.append((time.perf_counter() - t0) * 1e3)
    rendered_arr = np.stack(rendered)
    scores = score_frames(held.references, rendered_arr, held.masks)
    if strip is not None:
        write_strip(strip, held.references, rendered_arr)
    return QualityResult(
        avatar=str(avatar),
        video=Path(video).name,
        resolution=bundle.resolution,
        frames=scores.frames,
        first_frame=int(held.indices[0]),
        render_ms_median=float(np.median(ms)),
        renderer=(f"fast renderer (the receiver's) at {render_resolution} px, scaled up" if render_resolution
                  else "fast renderer (the receiver's)") if fast
        else f"reference volume renderer, {samples} samples per ray, occupancy grid",
        pose_refinement=refinement,
        full=scores.full,
        head=scores.head,
        strip=strip,
    )


def refine_held_out(bundle: AvatarBundle, held: HeldOut, *, every: int = 1,
                    progress: bool = False) -> PoseRefinement:
    """Replaces ``held``'s cameras (and pose parameters) by the sender-side refined ones, frame by frame
    in order, and says what it cost."""
    info = refine_poses(bundle, held.params, held.references, held.indices, every=every, progress=progress)
    k = bundle.face_model.n_expression
    held.cameras[:] = [pose_camera(bundle, p[k : k + 6]) for p in held.params]
    return info


def refine_poses(bundle: AvatarBundle, params: np.ndarray, targets: np.ndarray, indices: np.ndarray, *,
                 every: int = DEFAULT_REFINE_EVERY, progress: bool = False) -> PoseRefinement:
    """Corrects the poses in ``params`` (N, K + 6; in place) through the avatar, frame by frame in
    order, as a default sender does before it codes them (``avatar.pose_fit``), against the
    head-on-white frames ``targets``; returns what it cost and how far it moved them."""
    from nerfconf.avatar.pose_fit import PoseRefiner, RefineSettings  # noqa: PLC0415
    from nerfconf.types import FaceParams  # noqa: PLC0415

    refiner = PoseRefiner(bundle, RefineSettings(every=every))
    refiner.prewarm()
    model = bundle.face_model
    k = model.n_expression
    items = range(len(params))
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, unit="frame", desc="refining poses")
    ms, moved = [], []
    for i in items:
        if i and indices[i] != indices[i - 1] + 1:
            refiner.reset()  # frames without a face in between: the sender's filter restarted too
        p = params[i]
        expression = np.clip(p[:k], model.bounds_lo[:k], model.bounds_hi[:k])
        fit = refiner.refine(FaceParams(expression, p[k : k + 3], p[k + 3 : k + 6], True, 0.0, int(indices[i])),
                             targets[i])
        params[i, k : k + 3], params[i, k + 3 : k + 6] = fit.params.rotation, fit.params.translation
        if fit.fitted:
            ms.append(fit.ms)
        moved.append(fit.correction)
    c = np.abs(np.array(moved))
    s = refiner.settings
    return PoseRefinement(resolution=s.resolution, iterations=s.iterations, every=s.every,
                          ms_median=float(np.median(ms)),
                          rotation_deg_median=float(np.degrees(np.median(c[:, :3]))),
                          translation_mm_median=float(1e3 * np.median(c[:, 3:])))


def _reference_frames(bundle: AvatarBundle, held: HeldOut, samples: int):
    occupancy = FixedOccupancy(bundle.field, bundle.occupancy)

    def render(i: int) -> np.ndarray:
        expression = torch.from_numpy(held.expressions[i].astype(np.float32))
        return render_image(bundle.field, held.cameras[i], expression, samples=samples, occupancy=occupancy)[0]

    return render


def _fast_frames(bundle: AvatarBundle, held: HeldOut, fps: float, resolution: int | None = None):
    from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
    from nerfconf.pipeline.render_budget import to_full_size  # noqa: PLC0415

    track = held.track(fps, "held out")
    renderer = Renderer(bundle, resolution)
    renderer.prewarm()
    return lambda i: to_full_size(renderer.render(track.params(i)).image, bundle.resolution)


def write_strip(path: Path, references: np.ndarray, rendered: np.ndarray, columns: int = 6) -> None:
    """Ground truth above, avatar below, for a few evenly spaced frames."""
    pick = np.linspace(0, len(references) - 1, min(columns, len(references))).astype(int)
    top = np.concatenate([references[i] for i in pick], axis=1)
    bottom = np.concatenate([rendered[i] for i in pick], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.concatenate([top, bottom], axis=0))

"""The reference clip every codec and the avatar are scored against, built once and cached.

The held-out frames (the last ``test_frames`` of the enrollment video) go through the same
crop, tracker, head segmenter and white compositing as the avatar's training frames
(:func:`nerfconf.evaluate.quality.held_out_frames`). The evaluation plays them back at a
fixed call frame rate (20 fps, the paper's): every codec sees the same frames at the same
rate, so bits per second compare directly.

The cache (``reference-<key>.npz``, lossless, no pickles) is keyed by the video's identity,
the bundle's face model and the split, so another avatar or video never reuses it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle

__all__ = ["CALL_FPS", "ReferenceClip", "reference_clip"]

#: the frame rate of the call, as in the paper's rates
CALL_FPS = 20.0
_CACHE_FORMAT = 2  # 2: held-out landmarks tracked afresh from the first held-out frame


@dataclass(frozen=True, eq=False)
class ReferenceClip:
    #: (N, R, R, 3) uint8, the head on white
    frames: np.ndarray
    #: (N, R, R) float32 alpha matte in [0, 1]
    masks: np.ndarray
    #: (N, K + 6) the sender's parameters (expression, yaw/pitch/roll, translation)
    params: np.ndarray
    #: (M, K + 6) the training frames' parameters, for the codec's bounds and priors
    train_params: np.ndarray
    #: source frame index of each frame
    indices: np.ndarray
    fps: float
    key: str

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[1])

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def rotation_speed(self) -> np.ndarray:
        """(N,) head rotation speed arriving at each frame, degrees per second (0 for the first)."""
        k = self.params.shape[1] - 6
        step = np.linalg.norm(np.diff(self.params[:, k : k + 3], axis=0), axis=1)
        return np.concatenate([[0.0], np.degrees(step) * self.fps])

    def scored_frames(self, n: int | None) -> np.ndarray:
        """Indices of ``n`` frames spread evenly over the clip, plus the fastest head motion.

        Every frame is encoded (so a codec's rate is what the whole clip costs); only these are
        rendered and scored, which is what makes the slow reference renderer affordable.
        """
        total = len(self.frames)
        if n is None or n >= total:
            return np.arange(total)
        if n < 1:
            raise ValueError(f"need at least one scored frame, asked for {n}")
        even = np.round(np.linspace(0, total - 1, n)).astype(int)
        return np.union1d(even, [int(np.argmax(self.rotation_speed()))])


def _cache_key(bundle_dir: Path, video: Path, test_frames: int) -> str:
    h = hashlib.sha256()
    st = video.stat()
    h.update(json.dumps([str(video.resolve()), st.st_size, int(st.st_mtime), test_frames, _CACHE_FORMAT]).encode())
    for name in ("bundle.json", "face_model.json", "face_model.safetensors"):
        path = bundle_dir / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def reference_clip(
    avatar: str | Path,
    video: str | Path,
    *,
    test_frames: int | None = None,
    fps: float = CALL_FPS,
    cache_dir: str | Path | None = None,
    bundle: AvatarBundle | None = None,
    progress: bool = False,
) -> ReferenceClip:
    """The held-out reference clip of ``video`` for the avatar in ``avatar`` (cached in ``cache_dir``).

    ``test_frames`` defaults to the avatar's own split (``AvatarBundle.test_frames``).
    """
    from nerfconf.evaluate.quality import held_out_frames  # noqa: PLC0415

    avatar, video = Path(avatar), Path(video)
    if test_frames is None:
        bundle = bundle or AvatarBundle.load(avatar)
        test_frames = bundle.test_frames
    key = _cache_key(avatar, video, test_frames)
    path = Path(cache_dir) / f"reference-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) == _CACHE_FORMAT:
                    return ReferenceClip(z["frames"], z["masks"], z["params"], z["train_params"], z["indices"],
                                         fps, key)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # a damaged or partial cache file is rebuilt
    bundle = bundle or AvatarBundle.load(avatar)
    held = held_out_frames(bundle, video, test_frames, progress, with_training=True)
    if len(held.train_params) < 2:
        raise ValueError(f"{video}: fewer than two training frames with a face before the held-out ones")
    clip = ReferenceClip(held.references, held.masks, held.params, held.train_params, held.indices, fps, key)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, format=np.int64(_CACHE_FORMAT), frames=clip.frames, masks=clip.masks, params=clip.params,
                 train_params=clip.train_params, indices=clip.indices)
        tmp.replace(path)
    return clip

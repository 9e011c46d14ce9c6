"""Training data for a head avatar, made from one monocular video.

Per frame: the head on a white background, its alpha matte, the expression
coefficients and the head pose as the sender will transmit them, at the
avatar's render resolution. The camera is the face model's pinhole, so the
head pose turns into a camera pose in head space, as in NeRFBlendShape.

Preparation is three passes over the video:

1. landmarks on the source frames, to choose one fixed crop around the head;
2. landmarks, head mask and composite on the cropped frames at the render resolution;
3. the face model fitted on the training frames, and every frame's parameters.

The face model is fitted on the cropped, resized frames, so its camera is the
avatar's camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.avatar.camera import HeadPose
from nerfconf.capture.video import CropBox, probe, read_frames
from nerfconf.face.crop import head_crop
from nerfconf.face.enroll import fit_from_landmarks, smoothed_params, zero_phase_params
from nerfconf.face.extract import detect_all
from nerfconf.face.landmarks import N_LANDMARKS
from nerfconf.face.model import DEFAULT_HFOV_DEG, FaceModel
from nerfconf.face.pose import angles_to_rotation, rotation_to_angles
from nerfconf.face.segment import NECK_MARGIN, head_frames
from nerfconf.tracks import HELD_OUT_FRAMES

DATASET_FORMAT = 1


@dataclass
class AvatarData:
    #: (N, R, R, 3) uint8, the head on white
    images: np.ndarray
    #: (N, R, R) uint8, alpha x 255
    alphas: np.ndarray
    #: (N, K) float32, smoothed as the extractor sends them
    expressions: np.ndarray
    #: (N, 3, 3) float32, head frame to camera frame
    rotations: np.ndarray
    #: (N, 3) float32, head origin in camera space, metres
    translations: np.ndarray
    face_found: np.ndarray
    times: np.ndarray
    #: pinhole focal length in pixels at this resolution; principal point at the centre
    focal: float
    #: frames at the end that are held out for testing
    test_frames: int
    #: (N, K + 6) the streaming extractor's parameters (expression, angles, translation), kept when
    #: the training frames' parameters above are smoothed otherwise (zero-phase): the codec is
    #: fitted on what the sender sends. None: the arrays above are what it sends.
    sent: np.ndarray | None = None

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def train_indices(self) -> np.ndarray:
        n = len(self.images) - self.test_frames
        return np.flatnonzero(self.face_found[:n])

    @property
    def test_indices(self) -> np.ndarray:
        n = len(self.images) - self.test_frames
        return n + np.flatnonzero(self.face_found[n:])

    def sender_params(self, indices: np.ndarray) -> np.ndarray:
        """(M, K + 6) parameters of frames ``indices`` as the streaming extractor sends them."""
        if self.sent is not None:
            return self.sent[indices].astype(np.float64)
        angles = np.stack([rotation_to_angles(r.astype(np.float64)) for r in self.rotations[indices]])
        return np.concatenate([self.expressions[indices], angles, self.translations[indices]], axis=1)

    def head_pose(self, i: int) -> HeadPose:
        """Frame ``i``'s tracked head pose."""
        return HeadPose(self.rotations[i].astype(np.float64), self.translations[i].astype(np.float64))

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            format=np.int64(DATASET_FORMAT),
            images=self.images,
            alphas=self.alphas,
            expressions=self.expressions,
            rotations=self.rotations,
            translations=self.translations,
            face_found=self.face_found,
            times=self.times,
            focal=np.float64(self.focal),
            test_frames=np.int64(self.test_frames),
            **({} if self.sent is None else {"sent": self.sent}),
        )

    @classmethod
    def load(cls, path: str | Path) -> AvatarData:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != DATASET_FORMAT:
                    raise ValueError(f"dataset format {int(z['format'])}, this version reads {DATASET_FORMAT}")
                return cls(
                    images=z["images"], alphas=z["alphas"], expressions=z["expressions"],
                    rotations=z["rotations"], translations=z["translations"], face_found=z["face_found"],
                    times=z["times"], focal=float(z["focal"]), test_frames=int(z["test_frames"]),
                    sent=z["sent"] if "sent" in z.files else None,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a prepared avatar dataset: {exc}") from exc


def choose_crop(video: str | Path, progress: bool = False) -> CropBox:
    info = probe(video)
    frames = read_frames(video, fps=5.0)  # a few frames a second are plenty to place the crop
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        frames = tqdm(frames, unit="frame", desc="placing the crop", total=int(info.frames * 5 / (info.fps or 25)))
    landmarks, _ = detect_all(frames, stream=False)
    return head_crop(landmarks, (info.width, info.height))


def prepare(
    video: str | Path,
    *,
    resolution: int = 256,
    test_frames: int = HELD_OUT_FRAMES,
    n_expression: int = 46,
    crop: CropBox | None = None,
    auto_crop: bool = True,
    max_frames: int | None = None,
    neck_margin: float = NECK_MARGIN,
    zero_phase: bool = False,
    progress: bool = False,
) -> tuple[FaceModel, AvatarData, CropBox | None]:
    """Runs the three passes; returns the face model, the data and the crop used.

    With ``zero_phase`` the training frames' parameters are smoothed without lag
    (:func:`zero_phase_params`, over the training frames alone, so nothing of the held-out
    frames leaks into them); the held-out frames keep what the sender would send.
    """
    info = probe(video)
    if crop is None and auto_crop:
        crop = choose_crop(video, progress)
    frames = head_frames(video, stop=max_frames, size=resolution, crop=crop, neck_margin=neck_margin)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        total = min(info.frames, max_frames) if max_frames else info.frames
        frames = tqdm(frames, unit="frame", desc="landmarks and head masks", total=total or None)
    images, alphas, points, times = [], [], [], []
    for white, alpha, lm in frames:
        images.append(white.image)
        alphas.append(np.round(alpha * 255).astype(np.uint8))
        points.append(lm if lm is not None else np.full((N_LANDMARKS, 3), np.nan))
        times.append(white.t_capture)
    landmarks, times_arr = np.stack(points), np.array(times)
    n = len(landmarks)
    # The source camera's field of view, narrowed to the crop (principal point kept at the crop centre).
    hfov = DEFAULT_HFOV_DEG
    if crop is not None:
        hfov = float(np.degrees(2 * np.arctan(crop.side / info.width * np.tan(np.radians(hfov) / 2))))
    if n <= test_frames:
        raise ValueError(f"{video}: {n} frames, not more than the {test_frames} held out for testing")
    model, _ = fit_from_landmarks(
        landmarks[: n - test_frames], times_arr[: n - test_frames], (resolution, resolution),
        n_expression=n_expression, hfov_deg=hfov,
        metadata={"source": Path(video).name, "test_frames": test_frames, "resolution": resolution,
                  "training_smoothing": "zero-phase" if zero_phase else "sender"},
    )
    model.crop, model.neck_margin = crop, float(neck_margin)
    sent = smoothed_params(model, landmarks, times_arr, smoothing=True)
    params = sent.copy()
    if zero_phase:
        cut = n - test_frames
        params[:cut] = zero_phase_params(model, landmarks[:cut], times_arr[:cut])
    found = np.all(np.isfinite(params), axis=1)
    k = model.n_expression
    safe = np.where(found[:, None], params, 0.0)
    data = AvatarData(
        images=np.stack(images),
        alphas=np.stack(alphas),
        expressions=safe[:, :k].astype(np.float32),
        rotations=np.stack([angles_to_rotation(p[k : k + 3]) for p in safe]).astype(np.float32),
        translations=safe[:, k + 3 : k + 6].astype(np.float32),
        face_found=found,
        times=times_arr,
        focal=float(model.camera.focal_px),
        test_frames=test_frames,
        sent=np.where(found[:, None], sent, 0.0).astype(np.float32) if zero_phase else None,
    )
    return model, data, crop

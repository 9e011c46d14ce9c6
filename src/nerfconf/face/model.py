"""The per-person face model: neutral template, stable landmarks, expression basis, bounds.

It stands in for CPEM with FaceWarehouse blendshapes (whose weights cannot be
had) and is fitted from the person's own enrollment video:

* **Canonical head frame.** Millimetres, with OpenCV axes when the face looks at
  the camera: x toward the subject's left (image right), y down, z back into
  the head. Its orientation is the person's mean head orientation over
  enrollment, so looking at one's own camera is the zero pose. Origin at the
  centroid of the 468 mesh points. The metric scale assumes an inter-pupillary
  distance of 63 mm (the adult mean). MediaPipe depth is relative, so nothing
  better is observable from one video.
* **Template.** The mean pose-normalised shape over the enrollment frames
  (generalised Procrustes on the stable landmarks). Coefficients are therefore
  zero-mean over enrollment, and an all-zero vector is the person's average face.
* **Stable landmarks.** Those in the upper 60 % of the face (forehead, temples,
  nose bridge, cheekbones). Eyes, eyebrows, lips and irises are left out, and
  so is the ring of mesh points around the eyes and brows, which moves when the
  person blinks. Pose is fitted on these alone, so expressions do not leak into it.
* **Expression basis.** The K leading principal components of pose-normalised
  landmark displacements from the template. A coefficient is in millimetres
  along its unit-norm component.
* **Bounds.** Per-dimension min/max over enrollment of
  ``expression[K] ++ (yaw, pitch, roll) ++ translation[3]``: the codec's
  quantization bounds.
* **Camera.** A pinhole with its principal point at the image centre. The
  focal length comes from an assumed horizontal field of view (default 40°).
  Translation, in metres, follows from the fitted scale: depth = f / (pixels per mm).
* **Framing.** The square crop of the source video the model was fitted on (None: the
  whole frame), and the neck margin its head mattes were cut with. A sender frames
  its camera the same way, and evaluation cuts its references the same way.

Format 2 stores the framing as typed fields; format 1 kept it in free metadata (the
crop as a JSON string inside a string) and is migrated on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfconf.capture.video import CropBox
from nerfconf.face.landmarks import (
    CHIN,
    FOREHEAD_TOP,
    LEFT_IRIS_CENTRE,
    N_LANDMARKS,
    RIGHT_IRIS_CENTRE,
    index_sets,
)
from nerfconf.face.pose import Similarity, fit_similarity, fit_similarity_robust, rotation_to_angles

FACE_MODEL_FORMAT = 2
#: formats this version reads (1 is migrated: see the module docstring)
READABLE_FORMATS = (1, 2)
#: the neck margin (face heights below the chin) of models that did not record theirs
LEGACY_NECK_MARGIN = 0.25
ASSUMED_IPD_MM = 63.0
DEFAULT_HFOV_DEG = 40.0
_MESH = 468
_STABLE_UPPER_FRACTION = 0.6


class FaceModelError(ValueError):
    """A face model file is missing, damaged, or of another format version."""


@dataclass(frozen=True)
class Intrinsics:
    """The tracker's pinhole camera: image size and horizontal field of view."""

    width: int
    height: int
    hfov_deg: float = DEFAULT_HFOV_DEG

    @property
    def focal_px(self) -> float:
        return self.width / (2.0 * np.tan(np.radians(self.hfov_deg) / 2.0))

    @property
    def centre(self) -> tuple[float, float]:
        return self.width / 2.0, self.height / 2.0


@dataclass
class FaceModel:
    template: np.ndarray  # (478, 3) mm, canonical head frame
    basis: np.ndarray  # (K, 478*3), orthonormal rows
    stable: np.ndarray  # (S,) landmark indices for pose
    bounds_lo: np.ndarray  # (K+6,)
    bounds_hi: np.ndarray
    #: per-dimension standard deviation over enrollment (scales smoothing)
    param_std: np.ndarray
    camera: Intrinsics
    metadata: dict = field(default_factory=dict)
    #: the square of the source video the model was fitted on (None: frames as they came)
    crop: CropBox | None = None
    #: how far below the chin head mattes keep the neck, in face heights
    neck_margin: float = LEGACY_NECK_MARGIN

    @property
    def n_expression(self) -> int:
        return int(self.basis.shape[0])

    # -- per-frame solving -----------------------------------------------------------

    def solve_pose(self, landmarks: np.ndarray) -> Similarity:
        """Head pose: maps the canonical head frame (mm) onto the frame's landmarks (px)."""
        return fit_similarity_robust(self.template[self.stable], landmarks[self.stable])

    def coefficients(self, landmarks: np.ndarray, pose: Similarity) -> np.ndarray:
        aligned = pose.invert(landmarks)
        return self.basis @ (aligned - self.template).ravel()

    def translation_m(self, pose: Similarity) -> np.ndarray:
        """Head-frame origin in camera space, metres, from the weak-perspective fit."""
        f = self.camera.focal_px
        cx, cy = self.camera.centre
        depth_mm = f / pose.scale
        u, v = pose.translation[0], pose.translation[1]
        return np.array([(u - cx) * depth_mm / f, (v - cy) * depth_mm / f, depth_mm]) / 1000.0

    def params(self, landmarks: np.ndarray) -> np.ndarray:
        """The full parameter vector ``expression ++ angles ++ translation`` of one frame."""
        pose = self.solve_pose(landmarks)
        return np.concatenate(
            [self.coefficients(landmarks, pose), rotation_to_angles(pose.rotation), self.translation_m(pose)]
        )

    def reconstruct(self, coefficients: np.ndarray, pose: Similarity) -> np.ndarray:
        """Landmarks (px) rebuilt from the model: the inverse of ``params``."""
        shape = self.template + (coefficients @ self.basis[: len(coefficients)]).reshape(N_LANDMARKS, 3)
        return pose.apply(shape)

    def truncated(self, k: int) -> FaceModel:
        """The same model with only the first ``k`` expression components."""
        if not 1 <= k <= self.n_expression:
            raise ValueError(f"k must be 1..{self.n_expression}, got {k}")
        keep = np.r_[np.arange(k), np.arange(self.n_expression, self.n_expression + 6)]
        return FaceModel(self.template, self.basis[:k], self.stable, self.bounds_lo[keep], self.bounds_hi[keep],
                         self.param_std[keep], self.camera, dict(self.metadata), self.crop, self.neck_margin)

    # -- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        from safetensors.numpy import save_file  # noqa: PLC0415

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "template": self.template.astype(np.float32),
                "basis": self.basis.astype(np.float32),
                "stable": self.stable.astype(np.int32),
                "bounds_lo": self.bounds_lo.astype(np.float64),
                "bounds_hi": self.bounds_hi.astype(np.float64),
                "param_std": self.param_std.astype(np.float64),
            },
            str(directory / "face_model.safetensors"),
        )
        meta = {
            "format": FACE_MODEL_FORMAT,
            "kind": "nerfconf.face_model",
            "n_expression": self.n_expression,
            "n_landmarks": N_LANDMARKS,
            "units": "mm",
            "ipd_mm": ASSUMED_IPD_MM,
            "camera": {"width": self.camera.width, "height": self.camera.height, "hfov_deg": self.camera.hfov_deg},
            "param_order": "expression[K], yaw, pitch, roll (rad), tx, ty, tz (m)",
            **self.metadata,
            "crop": None if self.crop is None else {"x0": self.crop.x0, "y0": self.crop.y0, "side": self.crop.side},
            "neck_margin": self.neck_margin,
        }
        (directory / "face_model.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> FaceModel:
        from safetensors import SafetensorError  # noqa: PLC0415
        from safetensors.numpy import load_file  # noqa: PLC0415

        directory = Path(directory)
        meta_path, data_path = directory / "face_model.json", directory / "face_model.safetensors"
        if not meta_path.is_file() or not data_path.is_file():
            raise FaceModelError(f"{directory}: no face model here (face_model.json + .safetensors)")
        try:
            meta = json.loads(meta_path.read_bytes())
        # ValueError: not JSON, or not UTF-8; RecursionError: nested deeper than the parser goes
        except (OSError, ValueError, RecursionError) as exc:
            raise FaceModelError(f"{meta_path}: unreadable ({type(exc).__name__}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("kind") != "nerfconf.face_model":
            raise FaceModelError(f"{meta_path}: not a nerfconf face model")
        if meta.get("format") not in READABLE_FORMATS:
            raise FaceModelError(
                f"{meta_path}: face model format {meta.get('format')!r}, this version reads "
                f"{' and '.join(map(str, READABLE_FORMATS))}; fit it again with `nerfconf face fit`"
            )
        crop, neck_margin = _framing(meta, meta_path)
        try:
            t = load_file(str(data_path))
            k = int(meta["n_expression"])
            cam = meta["camera"]
            camera = Intrinsics(int(cam["width"]), int(cam["height"]), float(cam["hfov_deg"]))
        except (OSError, SafetensorError, KeyError, TypeError, ValueError) as exc:
            raise FaceModelError(f"{directory}: damaged face model ({exc})") from exc
        expected = {
            "template": (N_LANDMARKS, 3),
            "basis": (k, N_LANDMARKS * 3),
            "bounds_lo": (k + 6,),
            "bounds_hi": (k + 6,),
            "param_std": (k + 6,),
        }
        for name, shape in expected.items():
            if name not in t or t[name].shape != shape:
                raise FaceModelError(f"{data_path}: tensor {name!r} missing or not of shape {shape}")
        stable = t.get("stable")
        if stable is None or stable.ndim != 1 or len(stable) < 4 or stable.min() < 0 or stable.max() >= _MESH:
            raise FaceModelError(f"{data_path}: bad stable landmark indices")
        arrays = [t["template"], t["basis"], t["bounds_lo"], t["bounds_hi"], t["param_std"]]
        if not all(np.all(np.isfinite(a)) for a in arrays):
            raise FaceModelError(f"{data_path}: contains NaN or infinite values")
        known = {"format", "kind", "n_expression", "n_landmarks", "units", "ipd_mm", "camera", "param_order",
                 "crop", "neck_margin"}
        return cls(
            template=t["template"].astype(np.float64),
            basis=t["basis"].astype(np.float64),
            stable=stable.astype(np.int64),
            bounds_lo=t["bounds_lo"],
            bounds_hi=t["bounds_hi"],
            param_std=t["param_std"],
            camera=camera,
            metadata={k_: v for k_, v in meta.items() if k_ not in known},
            crop=crop,
            neck_margin=neck_margin,
        )


def _framing(meta: dict, path: Path) -> tuple[CropBox | None, float]:
    """The crop and neck margin of a face model's JSON, format 1 (crop as a JSON string,
    neck margin possibly absent) or 2 (a crop object), checked."""
    raw = meta.get("crop")
    if isinstance(raw, str) and meta.get("format") == 1:
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FaceModelError(f"{path}: crop is not valid JSON ({exc})") from exc
    crop = None
    if raw is not None:
        if not isinstance(raw, dict) or set(raw) != {"x0", "y0", "side"} or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
            raise FaceModelError(f"{path}: crop must be {{x0, y0, side}} in whole pixels, got {raw!r}")
        try:
            crop = CropBox(raw["x0"], raw["y0"], raw["side"])
        except ValueError as exc:
            raise FaceModelError(f"{path}: crop: {exc}") from exc
    neck = meta.get("neck_margin", LEGACY_NECK_MARGIN)
    if isinstance(neck, bool) or not isinstance(neck, (int, float)) or not 0.0 <= neck <= 2.0:
        raise FaceModelError(f"{path}: neck_margin must be a number of face heights in [0, 2], got {neck!r}")
    return crop, float(neck)


# -- fitting -----------------------------------------------------------------------------


def stable_indices(shape: np.ndarray) -> np.ndarray:
    """Landmarks that move with the skull, not with expressions (see the module docstring)."""
    sets = index_sets()
    eyes = sets["eyes"] | sets["eyebrows"]
    excluded = set(eyes | sets["lips"] | sets["irises"])
    for a, b in sets["edges"]:
        if a in eyes:
            excluded.add(b)
        if b in eyes:
            excluded.add(a)
    y = shape[:_MESH, 1]
    top, bottom = shape[FOREHEAD_TOP, 1], shape[CHIN, 1]
    upper = y <= top + _STABLE_UPPER_FRACTION * (bottom - top)
    return np.array([i for i in range(_MESH) if upper[i] and i not in excluded])


def _procrustes_mean(shapes: np.ndarray, idx: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean of ``shapes[:, idx]``, in the first shape's frame."""
    ref = shapes[0, idx]
    for _ in range(iterations):
        aligned = np.stack([fit_similarity(s[idx], ref).apply(s[idx]) for s in shapes])
        new = aligned.mean(axis=0)
        new = fit_similarity(new, shapes[0, idx]).apply(new)  # keep the frame from drifting
        if np.sqrt(np.mean((new - ref) ** 2)) < 1e-6:
            ref = new
            break
        ref = new
    return ref


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotation matrices: the rotation nearest their average."""
    u, _, vt = np.linalg.svd(rotations.sum(axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def canonical_frame(shape: np.ndarray, rotation: np.ndarray) -> Similarity:
    """The similarity taking ``shape`` into the canonical head frame.

    ``rotation`` is the person's mean head orientation relative to ``shape``,
    as seen by the camera. Turning by it makes that mean orientation the zero
    pose: looking at one's own camera is frontal.
    """
    ipd = np.linalg.norm(shape[LEFT_IRIS_CENTRE] - shape[RIGHT_IRIS_CENTRE])
    scale = ASSUMED_IPD_MM / ipd
    origin = shape[:_MESH].mean(axis=0)
    return Similarity(scale, rotation, -scale * rotation @ origin)


def fit_face_model(
    landmarks: np.ndarray,
    image_size: tuple[int, int],
    *,
    n_expression: int = 46,
    hfov_deg: float = DEFAULT_HFOV_DEG,
    metadata: dict | None = None,
) -> FaceModel:
    """Fits the model to enrollment landmarks (frames, 478, 3) in pixels; rows may be NaN (no face)."""
    good = np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)
    shapes = landmarks[good]
    if len(shapes) < max(10, n_expression + 1):
        raise ValueError(
            f"need at least {max(10, n_expression + 1)} frames with a face to fit {n_expression} "
            f"expression components, got {len(shapes)}"
        )
    # First pass on all mesh points picks the stable set; the second pass aligns on it.
    rough = _procrustes_mean(shapes, np.arange(_MESH), iterations=3)
    stable = stable_indices(rough)
    mean_stable = _procrustes_mean(shapes, stable)
    aligned = np.stack([fit_similarity_robust(s[stable], mean_stable).apply(s) for s in shapes])
    mean_shape = aligned.mean(axis=0)
    facing = mean_rotation(np.stack([fit_similarity(mean_shape[stable], s[stable]).rotation for s in shapes]))
    template = canonical_frame(mean_shape, facing).apply(mean_shape)
    camera = Intrinsics(int(image_size[0]), int(image_size[1]), hfov_deg)
    # The basis comes from displacements under the final pose solver, so fitting and
    # extraction see exactly the same normalisation.
    provisional = FaceModel(template, np.zeros((0, N_LANDMARKS * 3)), stable, np.zeros(6), np.zeros(6),
                            np.ones(6), camera)
    poses = [provisional.solve_pose(s) for s in shapes]
    disp = np.stack([(p.invert(s) - template).ravel() for p, s in zip(poses, shapes)])
    centre = disp.mean(axis=0)
    template = template + centre.reshape(N_LANDMARKS, 3)
    _, sing, vt = np.linalg.svd(disp - centre, full_matrices=False)
    k = min(n_expression, vt.shape[0])
    basis = vt[:k]
    # Orient each component so its larger excursions are positive: stable signs across refits.
    coeffs = (disp - centre) @ basis.T
    flip = np.where(np.abs(coeffs.max(axis=0)) >= np.abs(coeffs.min(axis=0)), 1.0, -1.0)
    basis = basis * flip[:, None]
    model = FaceModel(template, basis, stable, np.zeros(k + 6), np.zeros(k + 6), np.ones(k + 6), camera)
    params = np.stack([model.params(s) for s in shapes])
    explained = float((sing[:k] ** 2).sum() / max((sing**2).sum(), 1e-12))
    model.bounds_lo, model.bounds_hi = params.min(axis=0), params.max(axis=0)
    model.param_std = np.maximum(params.std(axis=0), 1e-9)
    model.metadata = {
        "fitted_frames": int(len(shapes)),
        "explained_variance": explained,
        **(metadata or {}),
    }
    return model

"""The avatar bundle: one folder with everything one person's avatar needs.

    bundle.json              format version, render resolution, camera, field
                             configuration, training metadata
    avatar.safetensors       field weights (hash tables fp16, MLPs fp32) and the
                             occupancy grid
    face_model.json / .safetensors   the sender's face model (nerfconf.face.model)
    codec.json               quantization bounds, depths and coder priors

The sender needs the face model and the codec section; the receiver needs the
weights and the codec section. Nothing in a bundle is pickled: it may come
from a peer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfconf.atomic_dir import replace_directory
from nerfconf.avatar.camera import Camera, HeadPose
from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig
from nerfconf.codec.config import CodecConfig
from nerfconf.face.model import FaceModel, FaceModelError
from nerfconf.file_format import format_problem

BUNDLE_FORMAT = 1
KIND = "nerfconf.avatar"
#: The held-out parameter track stored beside a bundle, when there is one (`enroll` and
#: `eval quality` write it; `view` and `bench render` play it).
HELDOUT_TRACK = "heldout_track.npz"
#: What a bundle directory holds: the bundle itself, and what commands derive from it beside it
BUNDLE_FILES = ("bundle.json", "avatar.safetensors", "codec.json", "face_model.json", "face_model.safetensors")
DERIVED_FILES = (HELDOUT_TRACK, "eval_quality.json", "eval_strip.png", "demo_track.npz", "demo_clip.mp4")


def remove_bundle(directory: Path) -> None:
    """Deletes a bundle, what was derived from it, and its enrollment's work directory, and
    nothing else: only these known names, so a mistyped ``-o`` cannot empty a user's folder."""
    import shutil  # noqa: PLC0415

    for name in (*BUNDLE_FILES, *DERIVED_FILES):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / ".work", ignore_errors=True)


class BundleError(ValueError):
    """A bundle is missing, damaged, of another format, or inconsistent with itself."""


@dataclass
class AvatarBundle:
    field: BlendshapeField
    occupancy: torch.Tensor  # (R, R, R) bool
    face_model: FaceModel
    codec: CodecConfig
    resolution: int
    focal: float
    metadata: dict

    @property
    def test_frames(self) -> int:
        """How many frames at the end of its video the avatar never trained on: the held-out
        split every evaluation of it uses (``view``, ``bench render``, ``eval quality``, ``eval rd``)."""
        for value in (self.metadata.get("training", {}).get("test_frames"),
                      self.face_model.metadata.get("test_frames")):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        raise BundleError("the bundle does not say how many frames were held out; pass --test-frames")

    def camera(self, pose: HeadPose) -> Camera:
        """The camera, at the bundle's resolution, that sees the head at ``pose``."""
        return Camera.of_pose(pose, self.focal, self.resolution)

    def save(self, directory: str | Path) -> None:
        """Writes the bundle into ``directory`` as one step: a crash part way leaves the old
        bundle there (or none), never a mix of two. Whatever else the directory holds (the
        enrollment's ``.work``, a README, a user's notes) is kept, except the files derived
        from the old bundle (:data:`DERIVED_FILES`), which would no longer describe it."""
        from safetensors.torch import save_file  # noqa: PLC0415

        tensors = {}
        for name, value in self.field.state_dict().items():
            # The hash tables are most of the bytes and lose nothing visible in fp16.
            tensors[name] = value.half().contiguous() if name.startswith("encoding.") else value.contiguous()
        tensors["occupancy"] = self.occupancy.to(torch.uint8).contiguous()
        meta = {
            "format": BUNDLE_FORMAT,
            "kind": KIND,
            "resolution": self.resolution,
            "focal": self.focal,
            "field": self.field.config.to_dict(),
            **self.metadata,
        }
        try:
            with replace_directory(Path(directory), drop=DERIVED_FILES) as staging:
                save_file(tensors, str(staging / "avatar.safetensors"))
                (staging / "bundle.json").write_text(json.dumps(meta, indent=1))
                self.face_model.save(staging)
                (staging / "codec.json").write_text(self.codec.to_json())
        except NotADirectoryError as exc:
            raise BundleError(str(exc)) from exc

    @classmethod
    def load(cls, directory: str | Path) -> AvatarBundle:
        from safetensors import SafetensorError  # noqa: PLC0415
        from safetensors.torch import load_file  # noqa: PLC0415

        directory = Path(directory)
        meta_path = directory / "bundle.json"
        if not meta_path.is_file():
            raise BundleError(f"{directory}: not an avatar bundle (no bundle.json)")
        try:
            meta = json.loads(meta_path.read_bytes())
        # ValueError: not JSON, or not UTF-8; RecursionError: nested deeper than the parser goes
        except (OSError, ValueError, RecursionError) as exc:
            raise BundleError(f"{meta_path}: unreadable ({type(exc).__name__}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise BundleError(f"{meta_path}: not a nerfconf avatar bundle")
        if problem := format_problem(meta.get("format"), BUNDLE_FORMAT):
            raise BundleError(f"{meta_path}: bundle {problem}")
        resolution = meta.get("resolution")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 16 <= resolution <= 4096:
            raise BundleError(f"{meta_path}: resolution must be a whole number of pixels in 16..4096, "
                              f"got {resolution!r}")
        try:
            field_cfg = meta["field"]
            config = FieldConfig.from_dict(field_cfg)
            focal = float(meta["focal"])
            tensors = load_file(str(directory / "avatar.safetensors"))
        except (OSError, SafetensorError, KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{directory}: damaged avatar weights or settings ({exc})") from exc
        try:
            # shapes first, on the meta device: a configuration from a peer could ask for any size,
            # and only one that matches the weights actually sent is worth allocating
            with torch.device("meta"):
                expected = BlendshapeField(config).state_dict()
        # RuntimeError: sizes torch cannot even describe (the meta device allocates nothing)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise BundleError(f"{directory}: invalid field configuration ({exc})") from exc
        for name, value in expected.items():
            got = tensors.get(name)
            if got is None or tuple(got.shape) != tuple(value.shape):
                raise BundleError(f"{directory}: weight {name!r} missing or of the wrong shape")
            if not torch.isfinite(got.float()).all():
                raise BundleError(f"{directory}: weight {name!r} holds NaN or infinite values")
        field = BlendshapeField(config)
        field.load_state_dict({k: tensors[k].float() for k in expected})
        occupancy = tensors.get("occupancy")
        if occupancy is None or occupancy.ndim != 3:
            raise BundleError(f"{directory}: occupancy grid missing")
        try:
            face_model = FaceModel.load(directory)
            codec = CodecConfig.from_json((directory / "codec.json").read_text())
        except (FaceModelError, OSError, ValueError) as exc:
            raise BundleError(f"{directory}: {exc}") from exc
        if codec.layout.n_expression != config.n_expression or face_model.n_expression != config.n_expression:
            raise BundleError(
                f"{directory}: the avatar has {config.n_expression} expression tables but its face model has "
                f"{face_model.n_expression} components and its codec {codec.layout.n_expression}"
            )
        known = {"format", "kind", "resolution", "focal", "field"}
        return cls(field.eval(), occupancy.bool(), face_model, codec, resolution, focal,
                   {k: v for k, v in meta.items() if k not in known})


def rest_translation(bundle: AvatarBundle) -> np.ndarray:
    """Where the head sits (metres, camera space) when the sender sends no translation.

    Enrollment stores the median over its training frames; older bundles get
    the middle of the face model's translation bounds.
    """
    stored = bundle.metadata.get("rest_translation")
    if isinstance(stored, list) and len(stored) == 3 and all(isinstance(v, (int, float)) for v in stored):
        return np.asarray(stored, np.float64)
    model, k = bundle.face_model, bundle.face_model.n_expression
    return 0.5 * (model.bounds_lo[k + 3 : k + 6] + model.bounds_hi[k + 3 : k + 6]).astype(np.float64)


def bundle_size_bytes(directory: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def expression_bounds(codec: CodecConfig) -> tuple[np.ndarray, np.ndarray]:
    k = codec.layout.n_expression
    return codec.bounds.lo[:k].astype(np.float32), codec.bounds.hi[:k].astype(np.float32)

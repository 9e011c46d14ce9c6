"""MediaPipe face mesh: 478 landmarks per frame (468 mesh points + 10 iris points).

The models ship inside the ``mediapipe`` 0.10.21 wheel, so nothing is downloaded.

Landmarks are returned in pixels as a (478, 3) array in the OpenCV camera
convention: x to the right, y down, z away from the camera. MediaPipe's z is
relative depth on the same scale as x, so the points are a weak-perspective
3D reconstruction of the face.
"""

from __future__ import annotations

import os

import numpy as np

from nerfconf.face.native import quiet_native_stderr

# MediaPipe's C++ core logs set-up chatter to stderr at import; keep only errors.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_LANDMARKS = 478
# Mesh indices used across the face module (MediaPipe's canonical mesh topology).
LEFT_IRIS_CENTRE = 473  # the subject's left eye, on the image's right
RIGHT_IRIS_CENTRE = 468
FOREHEAD_TOP = 10
CHIN = 152
RIGHT_CHEEK = 234  # image left
LEFT_CHEEK = 454  # image right
NOSE_TIP = 1


class FaceMeshDetector:
    """One face, with iris refinement.

    ``stream=True`` is MediaPipe's tracking mode (the landmarks of one frame
    seed the next, which is faster and steadier); ``stream=False`` runs the
    detector on every image independently.
    """

    def __init__(self, *, stream: bool = True, min_confidence: float = 0.5) -> None:
        if not 0.0 < min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in (0, 1), got {min_confidence}")
        with quiet_native_stderr():
            from mediapipe.python.solutions import face_mesh  # noqa: PLC0415 - slow import, load on use

            self._mesh = face_mesh.FaceMesh(
                static_image_mode=not stream,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
            # The graph's calculators open on worker threads; one blank frame waits for them,
            # so their start-up logging lands inside this quiet block.
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))
        self._warm = False

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of the face in an RGB uint8 image, or None when no face passes the confidence bar."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        if self._warm:
            return self._detect(image)
        # The landmark model's TFLite delegates start, noisily, on the first frame with a face.
        with quiet_native_stderr():
            points = self._detect(image)
        self._warm = points is not None
        return points

    def _detect(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64)
        pts *= (w, h, w)
        return pts

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def index_sets() -> dict[str, frozenset[int]]:
    """Named landmark groups from MediaPipe's mesh topology."""
    from mediapipe.python.solutions import face_mesh_connections as c  # noqa: PLC0415

    def points(*groups: frozenset) -> frozenset[int]:
        return frozenset(i for g in groups for edge in g for i in edge)

    return {
        "eyes": points(c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE),
        "eyebrows": points(c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW),
        "lips": points(c.FACEMESH_LIPS),
        "irises": frozenset(range(468, 478)),
        "oval": points(c.FACEMESH_FACE_OVAL),
        "tesselation": frozenset(range(468)),
        "edges": frozenset(c.FACEMESH_TESSELATION),  # type: ignore[arg-type]
    }

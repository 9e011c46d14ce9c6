"""Head segmentation: an alpha matte of the head (face, hair, ears, neck) per frame.

The avatar trains on head-only frames on a white background, and the
evaluation compares against exactly those frames, so the rule here defines
what "the head" is for the whole project. docs/head_mask.md states it.

The person probability comes from MediaPipe's selfie segmentation (model 0,
bundled in the wheel), which cannot tell a head from a torso; the face-mesh
landmarks supply the geometry that cuts the person down to the head.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from nerfconf.capture.video import CropBox, probe, read_frames
from nerfconf.face.landmarks import CHIN, FOREHEAD_TOP, LEFT_CHEEK, RIGHT_CHEEK, FaceMeshDetector
from nerfconf.face.native import quiet_native_stderr
from nerfconf.types import Frame

# Outer eye corners: the eye line gives the head's roll, and unlike the iris
# points (468+) they exist in a 468-point mesh too.
RIGHT_EYE_OUTER = 33  # image left
LEFT_EYE_OUTER = 263
# Lower-jaw points below the jaw angles; their spacing is the neck band's width.
RIGHT_JAW = 172
LEFT_JAW = 397

#: Half-width of the band above the chin, in face widths (234 to 454) from the face centre.
#: The cheek points sit just in front of the ears; hair and ears need about 0.3 W more per side.
HEAD_HALF_WIDTH = 0.85
#: The band narrows linearly to the neck band's width between these heights above the chin,
#: in face heights: it is full width down to about the nose tip (ear lobes end above it) and
#: neck width from just above the chin (high collars and shoulders reach up to there).
TAPER_START = 0.45
TAPER_END = 0.1
#: Half-width of the neck band, in jaw widths (172 to 397, about 0.8 face widths),
#: from the jaw centre.
NECK_HALF_WIDTH = 0.36
#: How far below the chin the neck band reaches, in face heights (landmark 10 to 152), by default.
#: Collars and ties sit from about 0.1 down, and they move with the torso, which the avatar is not
#: driven by (docs/head_mask.md, "The neck margin").
NECK_MARGIN = 0.1


#: The face hull, grown by this many face widths, is part of the region too, so the
#: tapered band never clips the jaw and segmentation alone draws the jaw's edge.
HULL_MARGIN = 0.08
#: Segmentation probability mapped to alpha 0 and 1: a linear ramp between them
#: keeps the soft hair edge and drops faint haze on background clutter.
PROB_LOW = 0.4
PROB_HIGH = 0.95
#: Most landmark rows we accept: MediaPipe's mesh, with or without the 10 iris points.
_MESH_SIZES = (468, 478)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image is too small to segment: {image.shape}")


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] not in _MESH_SIZES or lm.shape[1] not in (2, 3):
        raise ValueError(
            "expected face-mesh landmarks of shape (478, 3) (or 468 rows, or 2 columns), "
            f"got {lm.shape}"
        )
    if not np.isfinite(lm[:, :2]).all():
        raise ValueError("landmarks hold NaN or infinite coordinates")
    return lm[:, :2]


class HeadSegmenter:
    """Alpha mattes of the head: selfie segmentation restricted to a head region from landmarks.

    ``neck_margin`` is how far below the chin the neck is kept, in face heights
    (landmark 10 to 152). ``feather`` is the Gaussian sigma, in pixels, that
    softens the region's edges so composites show no polygon staircase.
    """

    def __init__(self, neck_margin: float = NECK_MARGIN, *, feather: float = 3.0) -> None:
        if not 0.0 <= neck_margin <= 2.0:
            raise ValueError(f"neck_margin must be in [0, 2] face heights, got {neck_margin}")
        if not 0.0 <= feather <= 50.0:
            raise ValueError(f"feather must be in [0, 50] pixels, got {feather}")
        self.neck_margin = neck_margin
        self.feather = feather
        with quiet_native_stderr():
            # mediapipe's import is slow: load it on use, as landmarks.py does.
            from mediapipe.python.solutions import selfie_segmentation  # noqa: PLC0415

            self._seg = selfie_segmentation.SelfieSegmentation(model_selection=0)
            self._seg.process(np.zeros((64, 64, 3), np.uint8))  # waits out the graph's noisy start-up

    def person_probability(self, image: np.ndarray) -> np.ndarray:
        """Selfie segmentation's per-pixel person probability, float32 HxW in [0, 1]."""
        _check_image(image)
        result = self._seg.process(np.ascontiguousarray(image))
        return np.asarray(result.segmentation_mask, dtype=np.float32)

    def head_region(
        self, shape: tuple[int, ...], landmarks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Soft masks (float32 HxW in [0, 1]) of where the head may be, and of the face hull.

        The region is built in a face-aligned frame: its vertical axis is
        perpendicular to the eye line, so a rolled head keeps its hair band and
        its neck below the chin rather than an image-vertical strip.
        """
        h, w = int(shape[0]), int(shape[1])
        pts = _check_landmarks(landmarks)
        right_eye, left_eye = pts[RIGHT_EYE_OUTER], pts[LEFT_EYE_OUTER]
        across = left_eye - right_eye
        norm = float(np.hypot(*across))
        if norm < 1e-6:
            raise ValueError("degenerate landmarks: the eye corners coincide")
        across /= norm
        # ``across`` turned +90 degrees: in y-down image coordinates it points to the chin.
        down = np.array([-across[1], across[0]])
        chin = pts[CHIN]

        def to_face(p: np.ndarray) -> np.ndarray:
            d = p - chin
            return np.stack([d @ across, d @ down], axis=-1)

        face_w = float(np.hypot(*(pts[LEFT_CHEEK] - pts[RIGHT_CHEEK])))
        face_h = float(np.hypot(*(pts[CHIN] - pts[FOREHEAD_TOP])))
        jaw_w = float(np.hypot(*(pts[LEFT_JAW] - pts[RIGHT_JAW])))
        centre = to_face((pts[LEFT_CHEEK] + pts[RIGHT_CHEEK]) / 2)[0]
        neck_c = to_face((pts[LEFT_JAW] + pts[RIGHT_JAW]) / 2)[0]
        hw = HEAD_HALF_WIDTH * face_w
        nw = NECK_HALF_WIDTH * jaw_w
        taper, neck_top = -TAPER_START * face_h, -TAPER_END * face_h
        bottom = self.neck_margin * face_h
        far = -4.0 * (h + w)  # well past the top of any image: hair is kept up to the frame edge
        # Clockwise from top left, in face coordinates (across, down), origin at the chin.
        poly = np.array([
            (centre - hw, far), (centre + hw, far), (centre + hw, taper),
            (neck_c + nw, neck_top), (neck_c + nw, bottom),
            (neck_c - nw, bottom), (neck_c - nw, neck_top), (centre - hw, taper),
        ])
        poly_img = chin + poly[:, :1] * across + poly[:, 1:] * down

        hull_pts = cv2.convexHull(pts[:468].astype(np.float32))[:, 0, :].astype(np.float64)
        c = hull_pts.mean(axis=0)
        radius = max(float(np.median(np.hypot(*(hull_pts - c).T))), 1.0)
        grown = c + (hull_pts - c) * (1.0 + HULL_MARGIN * face_w / radius)
        # Pull the hull in by the feather width, so that after blurring it
        # reaches zero at the mesh outline instead of bleeding past the face.
        shrunk = c + (hull_pts - c) * max(1.0 - 2.0 * self.feather / radius, 0.5)
        region = _soft_polygons((h, w), [poly_img, grown], self.feather)
        return region, _soft_polygons((h, w), [shrunk], self.feather)

    def mask(self, image: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """Alpha matte of the head, float32 HxW in [0, 1]; all zero when no face was found."""
        _check_image(image)
        if landmarks is None:
            # Without a face there is no head, and skipping the network saves its time.
            return np.zeros(image.shape[:2], np.float32)
        _check_landmarks(landmarks)
        prob = self.person_probability(image)
        region, hull = self.head_region(image.shape, landmarks)
        return combine(prob, region, hull)

    def close(self) -> None:
        self._seg.close()

    def __enter__(self) -> HeadSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def combine(prob: np.ndarray, region: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """alpha = max(ramp(prob) * region, hull): the face is kept even where the network misses it."""
    alpha = (prob - PROB_LOW) * (1.0 / (PROB_HIGH - PROB_LOW))
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha *= region
    np.maximum(alpha, hull, out=alpha)
    return alpha


def _soft_polygons(shape: tuple[int, int], polys: list[np.ndarray], sigma: float) -> np.ndarray:
    """The union of polygons (image coordinates) as float32 in [0, 1], Gaussian-feathered."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    # Only the polygons' bounding box (plus the kernel) is drawn and blurred: the face hull
    # covers a small part of the frame, and a full-frame blur would dominate the cost.
    pad = int(np.ceil(3.0 * sigma)) + 2
    lo = np.floor(np.min([p.min(axis=0) for p in polys], axis=0)).astype(int) - pad
    hi = np.ceil(np.max([p.max(axis=0) for p in polys], axis=0)).astype(int) + pad
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 <= x0 or y1 <= y0:
        return out
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # 4 fractional bits keep sub-pixel vertices: the outline glides instead of jumping by pixels.
    shifted = [np.round((p - (x0, y0)) * 16).astype(np.int32) for p in polys]
    for poly in shifted:
        cv2.fillPoly(canvas, [poly], 255, lineType=cv2.LINE_AA, shift=4)
    if sigma > 0:
        k = 2 * int(np.ceil(2.5 * sigma)) + 1
        canvas = cv2.GaussianBlur(canvas, (k, k), sigma)
    out[y0:y1, x0:x1] = canvas
    out[y0:y1, x0:x1] *= 1.0 / 255.0
    return out


def compose_on_white(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * image + (1 - alpha) * 255`` as uint8 RGB: the frames the avatar trains on."""
    _check_image(image)
    alpha = np.asarray(alpha)
    if alpha.shape != image.shape[:2]:
        raise ValueError(f"alpha must be HxW = {image.shape[:2]}, got {alpha.shape}")
    a = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    # OpenCV's weighted blend is about 5x faster than the same sum in numpy.
    return cv2.blendLinear(image, np.full_like(image, 255), a, 1.0 - a)


def head_frames(
    path: str | Path, *, start: int = 0, stop: int | None = None, size: int | None = None,
    crop: CropBox | None = None, neck_margin: float = NECK_MARGIN,
) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """A video's frames as (head on white, alpha, landmarks or None), keeping time and index.

    Landmarks are in the pixels of the yielded frame: through ``crop`` (then resized to
    ``size``) when one is given. The crop's black padding past the frame's edge is never
    head (rule 7 of docs/head_mask.md): beside a dark suit the segmenter reads it as person.
    """
    inside: np.ndarray | float = 1.0
    if crop is not None:
        info = probe(path)
        inside = crop.coverage((info.width, info.height), size)
    with FaceMeshDetector(stream=True) as detector, HeadSegmenter(neck_margin) as segmenter:
        for frame in read_frames(path, start=start, stop=stop, size=size, crop=crop):
            landmarks = detector.detect(frame.image)
            alpha = segmenter.mask(frame.image, landmarks) * inside
            white = Frame(compose_on_white(frame.image, alpha), frame.t_capture, frame.index)
            yield white, alpha, landmarks


@dataclass(frozen=True)
class HeadVideoStats:
    frames: int
    frames_with_face: int
    width: int
    height: int


def write_head_video(
    src: str | Path, dst: str | Path, *, size: int | None = None, start: int = 0,
    stop: int | None = None, neck_margin: float = NECK_MARGIN, progress: bool = True,
) -> HeadVideoStats:
    """Writes the head-only frames on white to ``dst`` (mp4), losslessly, at the source frame rate.

    libx264rgb at crf 0 codes the RGB pixels exactly: a 4:2:0 or lossy file
    would blur the hair edge the evaluation scores against.
    """
    info = probe(src)
    with av.open(str(src)) as container:
        rate = container.streams.video[0].average_rate or Fraction(round(info.fps or 25))
    end = info.frames if stop is None else min(stop, info.frames or stop)
    total = max(end - start, 0) or None
    frames = with_face = 0
    width = height = 0
    with av.open(str(dst), mode="w") as out:
        stream = None
        for white, _alpha, landmarks in tqdm(
            head_frames(src, start=start, stop=stop, size=size, neck_margin=neck_margin),
            total=total, disable=not progress, unit="frame", desc=Path(src).name,
        ):
            if stream is None:
                height, width = white.image.shape[:2]
                stream = out.add_stream("libx264rgb", rate=rate, options={"crf": "0"})
                stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
            out_frame = av.VideoFrame.from_ndarray(white.image, format="rgb24")
            for packet in stream.encode(out_frame):
                out.mux(packet)
            frames += 1
            with_face += landmarks is not None
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return HeadVideoStats(frames=frames, frames_with_face=with_face, width=width, height=height)

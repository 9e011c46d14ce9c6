"""Head segmentation on real frames, with the real MediaPipe models."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from nerfconf.capture.video import read_frames
from nerfconf.face.landmarks import (
    CHIN,
    FOREHEAD_TOP,
    LEFT_CHEEK,
    NOSE_TIP,
    RIGHT_CHEEK,
    FaceMeshDetector,
)
from nerfconf.face.segment import (
    HeadSegmenter,
    combine,
    compose_on_white,
    head_frames,
    write_head_video,
)
from tests.conftest import shared_data

BETWEEN_EYES = 168  # mesh point on the nose bridge, between the eyes


@pytest.fixture(scope="module")
def segmenter():
    with HeadSegmenter() as s:
        yield s


@pytest.fixture(scope="module")
def detector():
    with FaceMeshDetector(stream=False) as d:
        yield d


def _frames(name: str, indices: list[int]) -> list[np.ndarray]:
    path = shared_data(name)
    return [f.image for f in read_frames(path, stop=max(indices) + 1) if f.index in indices]


@pytest.fixture(scope="module")
def cnn2(detector):
    """A few cnn2 frames (studio background) with their landmarks."""
    out = [(img, detector.detect(img)) for img in _frames("cnn2_25fps.mp4", [0, 40, 80])]
    assert all(lm is not None for _, lm in out)
    return out


@pytest.fixture(scope="module")
def upper_bodies(detector):
    """First frames of clips that show shoulders and torso well below the chin."""
    out = []
    for name in ("short_1.mp4", "short_4.mp4", "obama.mp4", "short_3.mp4"):
        img = _frames(name, [0])[0]
        lm = detector.detect(img)
        assert lm is not None, name
        out.append((name, img, lm))
    return out


def _axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Face-aligned unit axes (across, down) and the face width and height."""
    across = lm[263, :2] - lm[33, :2]
    across /= np.linalg.norm(across)
    down = np.array([-across[1], across[0]])
    width = float(np.linalg.norm(lm[LEFT_CHEEK, :2] - lm[RIGHT_CHEEK, :2]))
    height = float(np.linalg.norm(lm[CHIN, :2] - lm[FOREHEAD_TOP, :2]))
    return across, down, width, height


def _at(a: np.ndarray, p: np.ndarray) -> float:
    return float(a[int(round(p[1])), int(round(p[0]))])


def test_mask_is_background_at_corners_and_head_on_the_face(segmenter, cnn2):
    for img, lm in cnn2:
        alpha = segmenter.mask(img, lm)
        assert alpha.shape == img.shape[:2] and alpha.dtype == np.float32
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0
        for corner in (alpha[:8, :8], alpha[:8, -8:], alpha[-8:, :8], alpha[-8:, -8:]):
            assert corner.max() < 0.01
        assert _at(alpha, lm[NOSE_TIP]) > 0.99
        assert _at(alpha, lm[BETWEEN_EYES]) > 0.99
        # The matte is soft: some pixels are strictly between background and head.
        assert np.count_nonzero((alpha > 0.05) & (alpha < 0.95)) > 100


def test_face_hull_is_kept_even_where_segmentation_misses_it(segmenter, cnn2):
    img, lm = cnn2[0]
    region, hull = segmenter.head_region(img.shape, lm)
    nothing = np.zeros(img.shape[:2], np.float32)
    alpha = combine(nothing, region, hull)
    assert _at(alpha, lm[NOSE_TIP]) > 0.99 and _at(alpha, lm[BETWEEN_EYES]) > 0.99
    assert alpha[:8, :8].max() == 0.0


def test_shoulders_and_torso_below_the_chin_are_excluded(segmenter, upper_bodies):
    checked = 0
    for name, img, lm in upper_bodies:
        h, w = img.shape[:2]
        prob = segmenter.person_probability(img)
        alpha = segmenter.mask(img, lm)
        _, down, face_w, face_h = _axes(lm)
        centre_x = (lm[LEFT_CHEEK, 0] + lm[RIGHT_CHEEK, 0]) / 2
        chin = lm[CHIN, :2]
        for side in (-1.0, 1.0):
            p = np.array([centre_x + side * 1.2 * face_w, chin[1] + face_h])
            if 0 <= p[0] < w and 0 <= p[1] < h and _at(prob, p) > 0.5:
                assert _at(alpha, p) < 0.01, f"{name}: torso at {p} kept"
                checked += 1
        # Nothing is kept below the neck cut (chin + neck_margin face heights, plus the feather).
        ys, xs = np.mgrid[0:h, 0:w]
        below = ((xs - chin[0]) * down[0] + (ys - chin[1]) * down[1]) > (
            segmenter.neck_margin * face_h + 4 * segmenter.feather
        )
        assert below.any() and (prob[below] > 0.5).any(), name  # there is a body there to cut
        assert alpha[below].max() < 0.01, name
        # ... while the neck just under the chin is kept.
        assert _at(alpha, chin + 0.5 * segmenter.neck_margin * face_h * down) > 0.9, name
    assert checked >= 6  # the torso points fell inside the image and on the person


def test_hair_above_the_forehead_is_kept(segmenter, cnn2, upper_bodies):
    frames = list(cnn2) + [(img, lm) for _, img, lm in upper_bodies]
    for img, lm in frames:
        _, down, _, face_h = _axes(lm)
        p = lm[FOREHEAD_TOP, :2] - 0.15 * face_h * down
        prob = segmenter.person_probability(img)
        assert _at(prob, p) > 0.9  # the network sees hair (or scalp) there
        assert _at(segmenter.mask(img, lm), p) > 0.9


def test_ears_and_side_hair_are_kept(segmenter, cnn2, upper_bodies):
    """Above the nose tip, every person pixel within 0.75 face widths of the face centre is head."""
    frames = list(cnn2) + [(img, lm) for _, img, lm in upper_bodies]
    for img, lm in frames:
        h, w = img.shape[:2]
        across, down, face_w, _ = _axes(lm)
        centre = (lm[LEFT_CHEEK, :2] + lm[RIGHT_CHEEK, :2]) / 2
        ys, xs = np.mgrid[0:h, 0:w]
        s = (xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]
        t = (xs - lm[NOSE_TIP, 0]) * down[0] + (ys - lm[NOSE_TIP, 1]) * down[1]
        beside = (np.abs(s) > 0.5 * face_w) & (np.abs(s) < 0.75 * face_w) & (t < 0)
        prob = segmenter.person_probability(img)
        person = beside & (prob > 0.95)
        assert np.count_nonzero(person) > 500  # ears or hair beside the face
        assert segmenter.mask(img, lm)[person].min() > 0.99


def test_region_follows_head_roll(segmenter, detector, upper_bodies):
    """Rolling the image rolls the matte with it (the region is built in the face's frame)."""
    _, img, _ = upper_bodies[0]  # short_1: head and a wide torso, so an upright region would differ
    h, w = img.shape[:2]
    base = segmenter.mask(img, detector.detect(img))
    for angle in (-25.0, 25.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        rolled = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        lm = detector.detect(rolled)
        assert lm is not None
        alpha = segmenter.mask(rolled, lm)
        expected = cv2.warpAffine(base, m, (w, h))
        a, b = alpha > 0.5, expected > 0.5
        iou = np.count_nonzero(a & b) / np.count_nonzero(a | b)
        assert iou > 0.955, f"roll {angle}: IoU {iou:.3f}"  # image-axis regions give about 0.93


def test_region_edges_are_feathered(segmenter, cnn2):
    img, lm = cnn2[0]
    region, hull = segmenter.head_region(img.shape, lm)
    _, down, _, face_h = _axes(lm)
    # Across the neck's bottom cut, the region ramps from 1 to 0 over a few pixels, not in one step.
    cut = lm[CHIN, :2] + segmenter.neck_margin * face_h * down
    column = region[int(cut[1]) - 20 : int(cut[1]) + 20, int(round(cut[0]))]
    assert column[0] == 1.0 and column[-1] == 0.0
    assert 4 <= np.count_nonzero((column > 0.02) & (column < 0.98)) <= 20
    # The same holds for the face hull at the forehead.
    top = lm[FOREHEAD_TOP, :2]
    column = hull[int(top[1]) - 20 : int(top[1]) + 20, int(round(top[0]))]
    assert column[0] == 0.0 and column[-1] == 1.0
    assert 4 <= np.count_nonzero((column > 0.02) & (column < 0.98)) <= 20


def test_no_face_means_all_background(segmenter, cnn2):
    img = cnn2[0][0]
    alpha = segmenter.mask(img, None)
    assert alpha.shape == img.shape[:2] and alpha.dtype == np.float32
    assert not alpha.any()
    assert (compose_on_white(img, alpha) == 255).all()


def test_compose_on_white(segmenter, cnn2):
    img, lm = cnn2[0]
    alpha = segmenter.mask(img, lm)
    out = compose_on_white(img, alpha)
    assert out.dtype == np.uint8 and out.shape == img.shape
    zero, one = alpha == 0.0, alpha == 1.0
    assert zero.sum() > 1000 and one.sum() > 1000
    assert (out[zero] == 255).all()
    assert (out[one] == img[one]).all()
    half = compose_on_white(img, np.full(img.shape[:2], 0.5, np.float32))
    assert np.abs(half.astype(int) - (img.astype(int) + 255) / 2).max() <= 1.0


def test_bad_shapes_raise_clear_errors(segmenter, cnn2):
    img, lm = cnn2[0]
    with pytest.raises(ValueError, match=r"RGB uint8 image \(H, W, 3\)"):
        segmenter.mask(img[..., 0], lm)
    with pytest.raises(ValueError, match=r"RGB uint8 image"):
        segmenter.mask(np.dstack([img, img[..., :1]]), lm)
    with pytest.raises(ValueError, match=r"RGB uint8 image"):
        segmenter.mask(img.astype(np.float32), lm)
    with pytest.raises(ValueError, match=r"landmarks of shape \(478, 3\).*got \(10, 3\)"):
        segmenter.mask(img, lm[:10])
    with pytest.raises(ValueError, match=r"got \(478, 4\)"):
        segmenter.mask(img, np.zeros((478, 4)))
    bad = lm.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segmenter.mask(img, bad)
    with pytest.raises(ValueError, match=r"alpha must be HxW = \(512, 512\)"):
        compose_on_white(img, np.zeros((256, 256), np.float32))
    with pytest.raises(ValueError, match="neck_margin"):
        HeadSegmenter(neck_margin=-0.1)


def test_write_head_video(tmp_path):
    src = shared_data("short_1.mp4")
    dst = tmp_path / "head.mp4"
    stats = write_head_video(src, dst, start=5, stop=25, progress=False)
    assert (stats.frames, stats.width, stats.height) == (20, 700, 700)
    assert stats.frames_with_face >= 18
    with av.open(str(dst)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(images) == 20
    assert all(im.shape == (700, 700, 3) for im in images)
    for im in images:
        assert (im[:10, :10] == 255).all() and (im[-10:, -10:] == 255).all()  # background is white
    # Lossless: the file holds exactly the composites head_frames makes.
    frames = head_frames(src, start=5, stop=6)
    first = next(frames)[0].image
    frames.close()
    assert np.array_equal(images[0], first)
    assert first[300:400, 300:400].mean() < 200  # and they show the head, not just white


def test_write_head_video_resizes(tmp_path):
    dst = tmp_path / "small.mp4"
    stats = write_head_video(shared_data("cnn2_25fps.mp4"), dst, size=256, stop=3, progress=False)
    assert (stats.frames, stats.frames_with_face, stats.width, stats.height) == (3, 3, 256, 256)
    with av.open(str(dst)) as container:
        frames = list(container.decode(video=0))
    assert [(f.width, f.height) for f in frames] == [(256, 256)] * 3

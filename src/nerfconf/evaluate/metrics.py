"""Image quality metrics as NeRF papers report them: PSNR, SSIM and LPIPS on uint8 RGB frames.

Conventions
-----------
* PSNR: ``10 log10(255^2 / MSE)`` with the MSE over all pixels and the three channels. Identical
  images give ``inf`` (no cap). Per-set PSNR is the mean of the per-frame values.
* SSIM: Wang et al. 2004 with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data
  range 255, population (not sample) covariances, computed per RGB channel and averaged over the
  channels; the 5-pixel border where the window leaves the image is left out of the mean. This is
  ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``, the setting NeRF evaluations use.
* Masks: (H, W) arrays, boolean or float weights in [0, 1] (a soft alpha matte is used as
  weights, a boolean one selects pixels). Masked PSNR is the weighted MSE over the pixels inside;
  masked SSIM is the weighted mean of the SSIM map (the same border excluded). An empty mask gives
  NaN.
* LPIPS: v0.1 with AlexNet, see :mod:`nerfconf.evaluate.lpips`; full frames only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FrameScores", "FullFrameScores", "HeadScores", "ScoreSummary", "Summary", "frame_scores", "psnr",
           "score_frames", "ssim", "ssim_map"]

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_PAD = (SSIM_WINDOW - 1) // 2


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    return a, b


def _weights(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape[:2]:
        raise ValueError(f"mask must be (H, W) = {shape[:2]}, got {m.shape}")
    if m.dtype == bool:
        return m.astype(np.float64)
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ValueError("mask values must lie in [0, 1]")
    return m


def _db(mse: float) -> float:
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK * PEAK / mse)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 RGB images (peak 255); ``inf`` when they are identical.

    With ``mask`` (H, W), the MSE is the (weighted) mean over the pixels inside only.
    """
    a, b = _pair(a, b)
    sq = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    w = _weights(mask, a.shape)
    if w is None:
        return _db(float(sq.mean()))
    total = float(w.sum())
    if total == 0:
        return math.nan
    return _db(float((sq.mean(axis=-1) * w).sum() / total))


def _blur(x: np.ndarray) -> np.ndarray:
    # 11-tap normalised Gaussian, sigma 1.5: scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5)
    # as skimage uses it; separable, float64. The border mode only touches the cropped-out margin.
    return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM map (H, W, 3) per channel, float64, before the border is cropped."""
    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px a side, got {a.shape[:2]}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    mx, my = _blur(x), _blur(y)
    vx = _blur(x * x) - mx * mx
    vy = _blur(y * y) - my * my
    cxy = _blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of uint8 RGB images (skimage's Gaussian-window convention, channels averaged).

    With ``mask`` (H, W), the SSIM map is averaged over the (weighted) pixels inside only.
    """
    s = ssim_map(a, b)[_PAD:-_PAD, _PAD:-_PAD].mean(axis=-1)
    w = _weights(mask, np.shape(a))
    if w is None:
        return float(s.mean())
    w = w[_PAD:-_PAD, _PAD:-_PAD]
    total = float(w.sum())
    return math.nan if total == 0 else float((s * w).sum() / total)


@dataclass(frozen=True)
class Summary:
    """One metric over a set of frames. NaN frames (e.g. an empty mask) are left out of every
    figure but ``per_frame``; a set with none left gives NaN."""

    mean: float
    median: float
    #: the worse tail: PSNR and SSIM's low frames, LPIPS's high ones. Frame values rather than
    #: interpolations between them, which an identical frame's infinite PSNR would turn into NaN.
    p10: float
    p90: float
    per_frame: list[float]

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        v = np.asarray(values, dtype=np.float64)
        ok = v[~np.isnan(v)]
        if not ok.size:
            return cls(math.nan, math.nan, math.nan, math.nan, [float(x) for x in v])
        return cls(float(ok.mean()), float(np.median(ok)), float(np.percentile(ok, 10, method="lower")),
                   float(np.percentile(ok, 90, method="higher")), [float(x) for x in v])


@dataclass(frozen=True)
class FullFrameScores:
    psnr: Summary
    ssim: Summary
    #: None where LPIPS was not computed
    lpips: Summary | None


@dataclass(frozen=True)
class HeadScores:
    """PSNR and SSIM inside the head mask."""

    psnr: Summary
    ssim: Summary


@dataclass(frozen=True)
class ScoreSummary:
    frames: int
    full: FullFrameScores
    #: None where no masks were given
    head: HeadScores | None


@dataclass(frozen=True)
class FrameScores:
    """Per-frame scores, each a float64 array of length N (``None`` where not computed)."""

    psnr: np.ndarray
    ssim: np.ndarray
    lpips: np.ndarray | None = None
    psnr_masked: np.ndarray | None = None
    ssim_masked: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return len(self.psnr)

    def summary(self) -> ScoreSummary:
        """Each metric summarised over the frames (see :class:`Summary`)."""
        full = FullFrameScores(Summary.of(self.psnr), Summary.of(self.ssim),
                               None if self.lpips is None else Summary.of(self.lpips))
        head = None
        if self.psnr_masked is not None and self.ssim_masked is not None:
            head = HeadScores(Summary.of(self.psnr_masked), Summary.of(self.ssim_masked))
        return ScoreSummary(self.frames, full, head)


def _frames(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected frames (N, H, W, 3), got {x.shape}")
    return x


def frame_scores(
    reference: np.ndarray, rendered: np.ndarray, masks: np.ndarray | None = None, lpips: bool = True,
) -> FrameScores:
    """PSNR, SSIM (and LPIPS) per frame of uint8 RGB frames (N, H, W, 3); masks (N, H, W)."""
    ref, ren = _frames(reference, "reference"), _frames(rendered, "rendered")
    if ref.shape != ren.shape:
        raise ValueError(f"reference {ref.shape} and rendered {ren.shape} differ in shape")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.shape != ref.shape[:3]:
            raise ValueError(f"masks must be (N, H, W) = {ref.shape[:3]}, got {masks.shape}")
    n = len(ref)
    masked_psnr = masked_ssim = lpips_values = None
    if masks is not None:
        masked_psnr = np.array([psnr(ref[i], ren[i], masks[i]) for i in range(n)], dtype=np.float64)
        masked_ssim = np.array([ssim(ref[i], ren[i], masks[i]) for i in range(n)], dtype=np.float64)
    if lpips:
        from nerfconf.evaluate.lpips import lpips_distance  # torch and the weights load lazily

        lpips_values = np.asarray(lpips_distance(ref, ren), dtype=np.float64).reshape(n)
    return FrameScores(
        psnr=np.array([psnr(ref[i], ren[i]) for i in range(n)], dtype=np.float64),
        ssim=np.array([ssim(ref[i], ren[i]) for i in range(n)], dtype=np.float64),
        lpips=lpips_values,
        psnr_masked=masked_psnr,
        ssim_masked=masked_ssim,
    )


def score_frames(
    reference: np.ndarray, rendered: np.ndarray, masks: np.ndarray | None = None, lpips: bool = True,
) -> ScoreSummary:
    """Scores of rendered frames against references, summarised: see :meth:`FrameScores.summary`."""
    return frame_scores(reference, rendered, masks, lpips).summary()

"""Every metric of the rate-distortion evaluation, per frame, on full frames and inside the head.

* PSNR, SSIM: :mod:`nerfconf.evaluate.metrics`; inside the head the alpha matte weights the
  squared error / the SSIM map.
* LPIPS (AlexNet, v0.1): :mod:`nerfconf.evaluate.lpips`; inside the head each layer's distance
  map, upsampled to the frame, is averaged with the matte as weights.
* VMAF (libvmaf's default model, via the imageio-ffmpeg binary): VMAF has no per-pixel map,
  so the head-only score compares the reference with the distorted frame composited onto
  white through the reference matte (the reference already is head on white): errors in
  the background are removed, errors in the head are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfconf.evaluate.ffmpeg import vmaf_scores
from nerfconf.evaluate.metrics import frame_scores

__all__ = ["HIGHER_IS_BETTER", "METRICS", "head_on_white", "score_clip"]

#: metric name -> True when a larger value is better
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "vmaf": True}
#: every column: each metric on full frames, then inside the head mask
METRICS = tuple(m + suffix for m in HIGHER_IS_BETTER for suffix in ("", "_head"))


def head_on_white(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``frames`` with everything outside the soft ``masks`` (N, H, W) replaced by white."""
    a = masks[..., None].astype(np.float32)
    return np.clip(frames.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def score_clip(
    reference: np.ndarray,
    masks: np.ndarray,
    distorted: np.ndarray,
    reference_video: Path,
    fps: float,
    *,
    vmaf: bool = True,
) -> dict[str, np.ndarray]:
    """Per-frame scores (float64 arrays of length N) for every name in :data:`METRICS`.

    ``reference_video`` is the lossless file of ``reference`` (libvmaf reads it there).
    """
    from nerfconf.evaluate.lpips import lpips_distance  # noqa: PLC0415  (torch loads lazily)

    if distorted.shape != reference.shape:
        raise ValueError(f"distorted frames {distorted.shape} differ from the reference {reference.shape}")
    base = frame_scores(reference, distorted, masks, lpips=False)
    out = {
        "psnr": base.psnr,
        "psnr_head": base.psnr_masked,
        "ssim": base.ssim,
        "ssim_head": base.ssim_masked,
        "lpips": np.asarray(lpips_distance(reference, distorted), np.float64),
        "lpips_head": np.asarray(lpips_distance(reference, distorted, mask=masks), np.float64),
    }
    if vmaf:
        out["vmaf"] = vmaf_scores(reference_video, distorted, fps)
        out["vmaf_head"] = vmaf_scores(reference_video, head_on_white(distorted, masks), fps)
    else:
        out["vmaf"] = out["vmaf_head"] = np.full(len(reference), np.nan)
    return out

"""Evaluation: image metrics, the avatar quality run, and rate-distortion against video codecs.

* ``metrics`` (PSNR, SSIM), ``lpips`` (LPIPS-Alex, torch: imported only when asked for),
  ``scoring`` (every metric per frame, full frame and inside the head, VMAF included);
* ``quality``: ``nerfconf eval quality``;
* ``reference`` (the held-out clip), ``ffmpeg`` and ``baselines`` (x265, VVC, x264, SVT-AV1),
  ``ours`` (our parameter streams and the avatar renderer), ``rdmath`` (match rates, BD-rate),
  ``rd`` and ``plots``: ``nerfconf eval rd``.
"""

from nerfconf.evaluate.metrics import FrameScores, frame_scores, psnr, score_frames, ssim, ssim_map

__all__ = ["FrameScores", "frame_scores", "psnr", "score_frames", "ssim", "ssim_map"]

"""Quality evaluation: image metrics (PSNR, SSIM, LPIPS) and the avatar quality run.

``nerfconf.evaluate.lpips`` (torch) is imported only when LPIPS is asked for.
"""

from nerfconf.evaluate.metrics import FrameScores, frame_scores, psnr, score_frames, ssim, ssim_map

__all__ = ["FrameScores", "frame_scores", "psnr", "score_frames", "ssim", "ssim_map"]

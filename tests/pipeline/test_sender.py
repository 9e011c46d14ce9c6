"""The sender on its own: a real clip, real MediaPipe extraction, real encoder."""

import asyncio
from pathlib import Path

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.capture.source import SourceSpec
from nerfconf.pipeline.sender import Sender

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


def test_no_frame_goes_stale_while_the_extractor_loads():
    bundle = AvatarBundle.load(SAMPLE)
    sender = Sender(SourceSpec(video=SAMPLE / "demo_clip.mp4", fps=20.0), bundle.face_model, bundle.codec,
                    max_frames=12)
    sent = []
    stats = asyncio.run(sender.run(lambda frame, deadline: sent.append(frame)))
    assert stats.sent == len(sent) >= 10 and stats.faces == stats.extracted
    rows = sender.stamps.rows()
    first = rows[min(rows)]
    assert first["index"] == 0  # capture waited for the extractor: nothing was dropped before it
    # the first frame was extracted right after its capture, not after the models loaded
    assert first["extract_in"] - first["capture"] < 0.1

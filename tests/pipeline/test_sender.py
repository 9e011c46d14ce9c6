"""The sender on its own: a real clip, real MediaPipe extraction, real encoder."""

import asyncio
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.pose_fit import PoseRefiner
from nerfconf.avatar.rendering.fast import Renderer
from nerfconf.capture.source import SourceSpec
from nerfconf.codec.config import CodecConfig
from nerfconf.evaluate.metrics import psnr
from nerfconf.pipeline.demo_clip import DEMO_TRACK
from nerfconf.pipeline.sender import Sender
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams

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


def _sent_poses(bundle, codec, refiner):
    # 5 fps: slow enough that a busy machine extracts every frame and both runs see the same ones
    frames = {}
    sender = Sender(SourceSpec(video=SAMPLE / "demo_clip.mp4", fps=5.0), bundle.face_model,
                    codec, max_frames=10, record=True, refiner=refiner,
                    on_frame=lambda frame, params: frames.__setitem__(frame.index, frame.image))
    stats = asyncio.run(sender.run(lambda frame, deadline: None))
    rows = sender.stamps.rows()
    by_index = {int(rows[seq]["index"]): vector for seq, vector in sender.sent.items()}
    return stats, by_index, frames


def test_a_refining_sender_sends_poses_its_avatar_renders_closer_to_the_camera():
    bundle = AvatarBundle.load(SAMPLE)
    # The sample's codec sends no translation; one that does shows where the refined head lands.
    track = ParamTrack.load(SAMPLE / DEMO_TRACK)
    codec = CodecConfig.fit(track.layout, track.values[track.face_found])
    assert codec.layout.translation
    plain, plain_sent, _ = _sent_poses(bundle, codec, None)
    refined, refined_sent, frames = _sent_poses(bundle, codec, PoseRefiner(bundle, threads=1))
    assert plain.refined == 0 and refined.refined == refined.faces >= 8 and refined.refine_ms_median > 0
    renderer, layout = Renderer(bundle), codec.layout
    gains = []
    for i in sorted(set(plain_sent) & set(refined_sent)):
        a, b = (FaceParams.from_vector(v[i], layout) for v in (plain_sent, refined_sent))
        assert 0 < np.abs(b.rotation - a.rotation).max() < 0.1
        ra, rb = renderer.render(a), renderer.render(b)
        # the demo clip is a real recording with its room behind the head: compare where either render
        # drew the head, which is where a pose error shows
        head = (ra.alpha > 0.5) | (rb.alpha > 0.5)
        gains.append(psnr(rb.image, frames[i], head) - psnr(ra.image, frames[i], head))
    assert len(gains) >= 8 and np.mean(gains) > 0.3, gains

"""The sending side of a video stream: pictures in, fragments out (the caller passes the time).

Each picture goes through: the frame-rate gate of the current rung, the rung's
size, the encoder at the target rate (corrected for the encoder's overshoot),
and the packetizer. Loss reports move the target (:mod:`rate`), the target
picks the rung (:mod:`ladder`), a new rung opens a new encoder (a keyframe);
keyframe requests force one.

The overshoot correction is WebRTC's encoder rate adjuster in small: over each
2 s without a keyframe the coded rate is compared with the rate the encoder was
set to, and the next setting is the target scaled down by that overshoot (never
below half the target, never above it), so the wire carries the target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.messages import LossReport, VideoCodec
from nerfconf.video.encoder import EncoderConfig, VideoEncoder
from nerfconf.video.ladder import LadderPolicy, Rung
from nerfconf.video.packets import MAX_FRAME_BYTES, EncodedVideo, packetize
from nerfconf.video.rate import RateController

#: seconds between overshoot corrections
ADJUST_WINDOW = 2.0
#: a new AV1 encoder (a keyframe) is opened for a new target only when it moved this much
REOPEN_CHANGE = 0.25


@dataclass
class VideoSendStats:
    frames: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    bytes: int = 0
    packets: int = 0
    #: pictures skipped because the rung's frame rate is below the source's
    skipped: int = 0
    #: coded frames too big to send (a keyframe follows)
    oversize: int = 0
    #: encoders opened: the first, then one per rung change or (AV1) large retarget
    opens: int = 0
    rate_decreases: int = 0
    #: frames coded at each picture side
    sizes: dict[int, int] = field(default_factory=dict)
    encode_ms: list[float] = field(default_factory=list)
    #: the target when each encoder was opened, and at the last frame
    targets_kbps: list[float] = field(default_factory=list)
    final_target_kbps: float = 0.0
    #: capture times of the first and last frame coded
    t_first: float | None = None
    t_last: float | None = None

    def summary(self) -> dict:
        # the rate over the time video was sent, one frame interval included
        seconds = (self.t_last - self.t_first) * self.frames / max(1, self.frames - 1) if self.t_first is not None else 0.0
        ms = np.percentile(self.encode_ms, [50, 95]).round(2).tolist() if self.encode_ms else [0.0, 0.0]
        return {"frames": self.frames, "keyframes": self.keyframes, "keyframe_requests": self.keyframe_requests,
                "packets": self.packets, "skipped": self.skipped, "oversize": self.oversize,
                "encoders_opened": self.opens, "rate_decreases": self.rate_decreases,
                "sizes": dict(self.sizes), "encode_ms_p50": ms[0], "encode_ms_p95": ms[1],
                "kbps": round(8 * self.bytes / seconds / 1e3, 2) if seconds > 0 else 0.0,
                "opened_at_kbps": [round(k, 1) for k in self.targets_kbps],
                "final_target_kbps": round(self.final_target_kbps, 1)}


@dataclass(frozen=True)
class VideoOut:
    """One coded frame and the payloads that carry it."""

    frame: EncodedVideo
    payloads: list[bytes]


class VideoSendSession:
    def __init__(self, codec: VideoCodec = VideoCodec.H264, *, max_kbps: float = 32.0, source_fps: float = 20.0,
                 min_kbps: float = 8.0, intra_refresh_s: float | None = None) -> None:
        self.codec = codec
        self.rate = RateController(max_kbps, min_kbps=min(min_kbps, max_kbps), max_kbps=max_kbps)
        self.ladder = LadderPolicy(codec, source_fps)
        self.intra_refresh_s = intra_refresh_s
        self.stats = VideoSendStats()
        self._encoder: VideoEncoder | None = None
        self._rung: Rung | None = None
        self._frame_no = 0
        self._keyframe = False
        self._next_due: float | None = None
        self._adjust = 1.0
        self._window_start: float | None = None
        self._window_bytes = 0
        self._window_key = False
        #: the rate the encoder was set to, summed over the window's frames
        self._window_asked: list[float] = []
        self._opened_at = 0.0

    @property
    def target_kbps(self) -> float:
        return self.rate.target

    @property
    def rung(self) -> Rung | None:
        return self._rung

    def request_keyframe(self) -> None:
        """The receiver asked for one (it lost a frame, or its decoder failed)."""
        self.stats.keyframe_requests += 1
        self._keyframe = True

    # the connection's FeedbackSink, for a stream that is only video: acks are for avatar parameters

    def acknowledge(self, seq: int) -> None:
        pass

    def request_iframe(self) -> None:
        self.request_keyframe()

    def force_keyframe(self) -> None:
        """The next frame starts the stream afresh (a switch into video mode)."""
        self._keyframe = True

    def set_ceiling(self, max_kbps: float) -> None:
        self.rate.set_ceiling(max_kbps)

    def on_report(self, report: LossReport, now: float) -> None:
        before = self.rate.decreases
        self.rate.on_report(report, now)
        self.stats.rate_decreases += self.rate.decreases - before

    def encode(self, image: np.ndarray, t_capture: float, now: float | None = None) -> VideoOut | None:
        """The frame for this picture (a square RGB head crop of any size), or None when the rung's frame
        rate skips it."""
        now = t_capture if now is None else now
        rung = self.ladder.choose(self.rate.target, now)
        period = 1.0 / rung.fps
        # a little slack, so that 20 fps capture jitter does not skip frames of a 20 fps rung
        if self._next_due is not None and t_capture < self._next_due - 0.25 * period:
            self.stats.skipped += 1
            return None
        self._next_due = max((self._next_due or t_capture) + period, t_capture - 0.5 * period)
        encoder = self._encoder_for(rung, now)
        picture = _resize(image, rung.size)
        t0 = time.perf_counter()
        coded = encoder.encode(picture, int(t_capture * 1000), keyframe=self._keyframe)
        self.stats.encode_ms.append(1e3 * (time.perf_counter() - t0))
        if coded is None:
            return None
        data, key = coded
        frame_no = self._frame_no
        self._frame_no = (self._frame_no + 1) % SEQ_MODULO
        if len(data) > MAX_FRAME_BYTES:
            # the number is spent, so the receiver sees the gap; the keyframe after it resets the chain
            self.stats.oversize += 1
            self._keyframe = True
            return None
        self._keyframe = False
        frame = EncodedVideo(data, frame_no, key, self.codec, int(t_capture * 1000), rung.size)
        payloads = packetize(frame)
        self._account(frame, len(payloads), now)
        s = self.stats
        s.t_first = t_capture if s.t_first is None else s.t_first
        s.t_last = t_capture
        return VideoOut(frame, payloads)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    # -- internals ------------------------------------------------------------------

    def _encoder_for(self, rung: Rung, now: float) -> VideoEncoder:
        kbps = self.rate.target * self._adjust
        enc = self._encoder
        if enc is not None and (rung.size, rung.fps) == (enc.config.size, enc.config.fps):
            if enc.set_kbps(kbps):
                return enc
            if abs(kbps - enc.kbps) < REOPEN_CHANGE * enc.kbps or now - self._opened_at < ADJUST_WINDOW:
                return enc
        if enc is not None:
            enc.close()
        # the most this rung's encoder may be retargeted to: where the ladder would leave the rung
        peak = max(kbps, min(self.rate.max_kbps, self.ladder.upper_kbps(rung)))
        self._encoder = VideoEncoder(EncoderConfig(self.codec, rung.size, rung.fps, kbps, peak,
                                                   self.intra_refresh_s if self.codec == VideoCodec.H264 else None))
        self._rung = rung
        self._opened_at = now
        self._window_start = None
        self.stats.opens += 1
        self.stats.targets_kbps.append(self.rate.target)
        return self._encoder

    def _account(self, frame: EncodedVideo, packets: int, now: float) -> None:
        s = self.stats
        s.frames += 1
        s.keyframes += int(frame.keyframe)
        s.bytes += len(frame.data)
        s.packets += packets
        s.sizes[frame.size] = s.sizes.get(frame.size, 0) + 1
        if self._window_start is None:
            self._window_start, self._window_bytes, self._window_key, self._window_asked = now, 0, False, []
        self._window_bytes += len(frame.data)
        self._window_key = self._window_key or frame.keyframe
        assert self._encoder is not None
        self._window_asked.append(self._encoder.kbps)
        elapsed = now - self._window_start
        if elapsed >= ADJUST_WINDOW:
            # how far the encoder overshot the rate it was set to (not the target: AV1 keeps its setting
            # until a new encoder opens, and scaling by the target would compound a correction unseen)
            asked = float(np.mean(self._window_asked))
            coded = 8 * self._window_bytes / elapsed / 1e3
            if not self._window_key and coded > 0:
                self._adjust = min(1.0, max(0.5, asked / coded))
            self._window_start = None
        s.final_target_kbps = self.rate.target


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    import cv2  # noqa: PLC0415

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

"""The receiving side of a video stream: datagram payloads in, pictures and feedback out (the caller
passes the time).

WebRTC's receiver rules: a missing packet is NACKed at once (and once more if it
stays missing); a frame that cannot be completed by its deadline is given up;
from then on, and after any frame the decoder refuses, delta frames are dropped
(the picture freezes on the last good one) and a keyframe is requested, again
every ``keyframe_retry`` while none has come. Nothing from the peer is trusted:
the assembler bounds what it holds, the decoder's errors are caught.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nerfconf.net.messages import LossReport, VideoCodec, VideoFeedback
from nerfconf.video.assembler import AssembledFrame, FrameAssembler, FramesLost, Output
from nerfconf.video.decoder import DECODERS, VideoDecodeError, VideoDecoder
from nerfconf.video.losses import LossTracker


@dataclass(frozen=True)
class Picture:
    image: np.ndarray
    frame_no: int
    keyframe: bool
    #: the sender's capture time, ms mod 2**24
    timestamp_ms: int
    #: when the frame's first fragment arrived and when it was decoded
    t_first: float
    t_decoded: float


@dataclass
class VideoReceiveStats:
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    keyframes: int = 0
    decoded: int = 0
    lost: int = 0
    undecodable: int = 0
    #: delta frames dropped while waiting for a keyframe
    skipped: int = 0
    keyframe_requests: int = 0
    nacks: int = 0
    decode_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "decode_ms"}
        ms = np.percentile(self.decode_ms, [50, 95]).round(3).tolist() if self.decode_ms else [0.0, 0.0]
        d["decode_ms_p50"], d["decode_ms_p95"] = ms
        return d


@dataclass(frozen=True)
class ReceiverFeedback:
    """What to send the sender now: video feedback (NACKs, a loss report) and/or a keyframe request."""

    video: VideoFeedback | None = None
    keyframe_request: bool = False


class VideoReceiveSession:
    def __init__(self, codecs: frozenset[VideoCodec] = frozenset(DECODERS), *, frame_timeout: float = 0.2,
                 report_interval: float = 0.25, keyframe_retry: float = 0.5) -> None:
        self.codecs = codecs
        self.assembler = FrameAssembler(frame_timeout)
        self.losses = LossTracker(max_age=frame_timeout)
        self.report_interval = report_interval
        self.keyframe_retry = keyframe_retry
        self.stats = VideoReceiveStats()
        self._decoder: VideoDecoder | None = None
        self._waiting_key = True
        self._want_key = False
        self._last_key_request: float | None = None
        self._nacks: list[int] = []
        self._next_report: float | None = None

    def on_packet(self, seq: int, payload: bytes, now: float) -> list[Picture]:
        self.stats.packets += 1
        self.stats.bytes += len(payload)
        self._nacks += self.losses.on_packet(seq, len(payload), now)
        if self._next_report is None:
            self._next_report = now + self.report_interval
        return self._handle(self.assembler.push(payload, now), now)

    def poll(self, now: float) -> list[Picture]:
        """Timeouts and NACK retries; call every few ms."""
        self._nacks += self.losses.poll(now)
        return self._handle(self.assembler.poll(now), now)

    def feedback(self, now: float) -> ReceiverFeedback:
        report: LossReport | None = None
        if self._next_report is not None and now >= self._next_report:
            report = self.losses.report(now)
            self._next_report = now + self.report_interval
        nacks, self._nacks = tuple(dict.fromkeys(self._nacks))[-255:], []
        self.stats.nacks += len(nacks)
        video = VideoFeedback(nacks, report) if nacks or report is not None else None
        key = False
        if self._want_key and (self._last_key_request is None or now - self._last_key_request >= self.keyframe_retry):
            key, self._last_key_request = True, now
            self.stats.keyframe_requests += 1
        return ReceiverFeedback(video, key)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_key

    # -- internals ------------------------------------------------------------------

    def _handle(self, outputs: list[Output], now: float) -> list[Picture]:
        pictures = []
        for out in outputs:
            if isinstance(out, FramesLost):
                self.stats.lost += out.count
                self._need_keyframe()
                continue
            picture = self._decode(out, now)
            if picture is not None:
                pictures.append(picture)
        return pictures

    def _need_keyframe(self) -> None:
        if not self._waiting_key:
            self._last_key_request = None  # a new loss: ask at once
        self._waiting_key = True
        self._want_key = True

    def _decode(self, frame: AssembledFrame, now: float) -> Picture | None:
        s = self.stats
        s.frames += 1
        s.keyframes += int(frame.keyframe)
        if frame.codec not in self.codecs:
            s.undecodable += 1
            self._need_keyframe()
            return None
        if self._waiting_key or self._decoder is None or self._decoder.codec != frame.codec:
            if not frame.keyframe:
                s.skipped += 1
                self._want_key = True
                return None
            if self._decoder is None or self._decoder.codec != frame.codec:
                self._decoder = VideoDecoder(frame.codec)
        t0 = time.perf_counter()
        try:
            image = self._decoder.decode(frame.data)
        except VideoDecodeError:
            s.undecodable += 1
            self._decoder = None  # a fresh decoder at the keyframe: nothing of the bad state carries over
            self._need_keyframe()
            return None
        s.decode_ms.append(1e3 * (time.perf_counter() - t0))
        if frame.keyframe:
            self._waiting_key = self._want_key = False
        if image is None:
            return None
        s.decoded += 1
        return Picture(image, frame.frame_no, frame.keyframe, frame.timestamp_ms, frame.t_first, now)

"""The sender: Ingest -> Extract -> Encode -> Send.

Capture and extraction run in threads (MediaPipe and video decoding release
the GIL for most of their time), joined by drop-oldest FIFOs; encoding and
sending run on the asyncio loop that owns the QUIC connection.

The receiver says which mode it wants the face in (``ModeRequest``): avatar
parameters, or, when it has no avatar of this user, low-delay video of the same
head crop the face model sees (:mod:`nerfconf.video`), which skips extraction.
The sender switches at its next frame, which it makes an I-frame or keyframe,
and announces the switch (``ModeSwitch``) just before that frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol, Self

import numpy as np

from nerfconf.avatar.pose_fit import PoseRefiner
from nerfconf.capture.source import SourceSpec, frames
from nerfconf.capture.video import CropBox
from nerfconf.codec.config import CodecConfig
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.face.crop import model_framing
from nerfconf.face.extract import Extractor
from nerfconf.face.model import FaceModel
from nerfconf.net.messages import CallMode, ModeRequest, ModeSwitch, VideoCodec, VideoFeedback
from nerfconf.pipeline.fifo import AsyncDropOldest, DropOldest
from nerfconf.pipeline.probe import StampLog
from nerfconf.types import EncodedFrame, FaceParams, Frame
from nerfconf.video.settings import VideoSettings

log = logging.getLogger(__name__)

#: a video packet is worth sending (and resending) until this long after its frame was captured
VIDEO_MAX_AGE = 0.3


class MediaLink(Protocol):
    """Where the video mode's packets and the mode switches go: the connection."""

    def send_video(self, payload: bytes, deadline: float | None = None) -> int: ...

    def send_media_message(self, msg) -> None: ...


@dataclass
class SenderStats:
    captured: int = 0
    extracted: int = 0
    faces: int = 0
    sent: int = 0
    dropped_before_extract: int = 0
    dropped_before_send: int = 0
    #: frames whose pose was refined through the sender's avatar, and the median cost of that
    refined: int = 0
    refine_ms_median: float = 0.0
    payload_bytes: int = 0
    seconds: float = 0.0
    encoder: dict = field(default_factory=dict)
    #: frames sent as video, and the mode switches announced (the first mode included)
    video_frames: int = 0
    mode_switches: int = 0
    video: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["payload_kbps"] = round(8 * self.payload_bytes / self.seconds / 1e3, 3) if self.seconds else 0.0
        return d


class Sender:
    """Drives ``send(frame, deadline)`` with one coded frame per captured frame."""

    def __init__(self, source: SourceSpec, face_model: FaceModel, codec: CodecConfig, *,
                 stamps: StampLog | None = None, on_frame: Callable[[Frame, FaceParams], None] | None = None,
                 max_frames: int | None = None, record: bool = False,
                 refiner: PoseRefiner | None = None, video: VideoSettings | None = None) -> None:
        self.source = source
        #: corrects each pose through this user's own avatar before it is coded (``avatar.pose_fit``)
        self.refiner = refiner
        self._refine_ms: list[float] = []
        self.face_model = face_model
        self.encoder = ParamEncoder(codec)
        self.layout = codec.layout
        self.stamps = stamps or StampLog()
        #: called from the extraction thread with every frame and its parameters (the demo records its input)
        self.on_frame = on_frame
        self.max_frames = max_frames
        self.stats = SenderStats()
        #: seq -> the parameter vector handed to the encoder, when recording
        self.sent: dict[int, np.ndarray] | None = {} if record else None
        self._stop = threading.Event()
        # Capture starts once the extractor has loaded its models: frames captured during that
        # second would reach the receiver late and teach its jitter buffer a delay the call never needs.
        self._extractor_ready = threading.Event()
        self.error: BaseException | None = None
        self.video_settings = video or VideoSettings()
        #: the mode the receiver asked for (read by the extraction thread), and the mode last sent
        self.mode = CallMode.AVATAR
        self._sent_mode: CallMode | None = None
        self.video = None  # a nerfconf.video.send.VideoSendSession, made when video is first asked for

    def stop(self) -> None:
        self._stop.set()

    # -- what the receiver tells us ---------------------------------------------------

    def request_mode(self, request: ModeRequest) -> None:
        """The receiver's ``ModeRequest``; takes effect at the next frame captured."""
        if request.mode == CallMode.VIDEO:
            from nerfconf.video.encoder import available_codecs  # noqa: PLC0415
            from nerfconf.video.send import VideoSendSession  # noqa: PLC0415

            usable = request.codecs & available_codecs()
            if not usable:
                log.warning("the receiver asked for video in %s, none of which this host can encode; sending "
                            "avatar parameters", ", ".join(c.name for c in request.codecs))
                return
            codec = self.video_settings.codec if self.video_settings.codec in usable else min(usable)
            kbps = min(self.video_settings.max_kbps, request.max_kbps)
            if self.video is None or self.video.codec != codec:
                if self.video is not None:
                    self.video.close()
                self.video = VideoSendSession(codec, max_kbps=kbps, source_fps=self.source.fps,
                                              intra_refresh_s=self.video_settings.intra_refresh_s)
            else:
                self.video.set_ceiling(kbps)
        self.mode = request.mode

    def on_video_feedback(self, feedback: VideoFeedback, now: float) -> None:
        """Loss reports drive the video rate (the transport has already resent what was NACKed)."""
        if feedback.report is not None and self.video is not None:
            self.video.on_report(feedback.report, now)

    # the FeedbackSink the connection drives: acks go to the parameter encoder, an I-frame request to
    # the encoder of the mode being sent

    def acknowledge(self, seq: int) -> None:
        self.encoder.acknowledge(seq)

    def request_iframe(self) -> None:
        if self._sent_mode == CallMode.VIDEO and self.video is not None:
            self.video.request_keyframe()
        else:
            self.encoder.request_iframe()

    async def run(self, send: Callable[[EncodedFrame, float], None], link: MediaLink | None = None) -> SenderStats:
        """Runs until the source ends, ``max_frames`` were captured, or :meth:`stop`. ``link`` carries video
        and mode switches (without one, only avatar parameters are sent)."""
        loop = asyncio.get_running_loop()
        captured: DropOldest[Frame] = DropOldest(2)
        extracted: AsyncDropOldest[tuple[Frame, FaceParams, float, float]] = AsyncDropOldest(4, loop)
        period = 1.0 / self.source.fps
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._capture, args=(captured,), name="nerfconf-capture", daemon=True),
            threading.Thread(target=self._extract, args=(captured, extracted), name="nerfconf-extract",
                             daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            while (item := await extracted.get()) is not None:
                frame, params, t_extract_in, t_extract_out = item
                if params is None:
                    self._send_video(frame, link)
                    continue
                switching = self._sent_mode != CallMode.AVATAR
                if switching and self._sent_mode is not None:
                    self.encoder.request_iframe()  # the avatar stream resumes at an I-frame
                t_in = time.monotonic()
                coded = self.encoder.encode(params)
                t_out = time.monotonic()
                if switching:
                    self._announce(link, ModeSwitch(CallMode.AVATAR, VideoCodec.NONE, coded.seq))
                self.stamps.mark(coded.seq, "capture", frame.t_capture)
                self.stamps.mark(coded.seq, "extract_in", t_extract_in)
                self.stamps.mark(coded.seq, "extract_out", t_extract_out)
                self.stamps.mark(coded.seq, "encode_in", t_in)
                self.stamps.mark(coded.seq, "encode_out", t_out)
                self.stamps.mark(coded.seq, "bytes", len(coded.data))
                self.stamps.mark(coded.seq, "index", frame.index)
                # A frame is worth sending until the one after it is due on screen.
                send(coded, frame.t_capture + 3 * period)
                self.stats.sent += 1
                if self.sent is not None and params.face_found:
                    self.sent[coded.seq] = params.to_vector(self.layout)
                self.stats.payload_bytes += len(coded.data)
        finally:
            self._stop.set()
            captured.close()
            for t in threads:
                await asyncio.to_thread(t.join, 5.0)
            self.stats.seconds = time.monotonic() - started
            self.stats.dropped_before_extract = captured.dropped
            self.stats.dropped_before_send = extracted.dropped
            self.stats.encoder = asdict(self.encoder.stats)
            if self.video is not None:
                self.stats.video = self.video.stats.summary()
                self.video.close()
            if self._refine_ms:
                self.stats.refine_ms_median = float(np.median(self._refine_ms))
        if self.error is not None:
            raise self.error
        return self.stats

    def _send_video(self, frame: Frame, link: MediaLink | None) -> None:
        if link is None or self.video is None:
            return
        switching = self._sent_mode != CallMode.VIDEO
        if switching:
            self.video.force_keyframe()  # the video stream resumes (or starts) at a keyframe
        out = self.video.encode(frame.image, frame.t_capture, time.monotonic())
        if out is None:
            return
        if switching:
            self._announce(link, ModeSwitch(CallMode.VIDEO, out.frame.codec, out.frame.frame_no))
        deadline = frame.t_capture + VIDEO_MAX_AGE
        for payload in out.payloads:
            link.send_video(payload, deadline)
        self.stats.video_frames += 1

    def _announce(self, link: MediaLink | None, switch: ModeSwitch) -> None:
        self._sent_mode = switch.mode
        self.stats.mode_switches += 1
        if link is not None:
            link.send_media_message(switch)

    def _refine(self, found: FaceParams, landmarks: np.ndarray | None, frame: Frame, target) -> FaceParams:
        if landmarks is None:
            self.refiner.reset()
            return found
        # All six degrees are fitted even when the stream carries no translation: fitting the
        # rotation alone against the receiver's rest position would tilt the head to move it.
        # between fits the frame takes the last correction, and needs no head mask
        fit = self.refiner.refine(found, target(frame.image, landmarks) if self.refiner.due else None)
        if fit.fitted:
            self.stats.refined += 1
            self._refine_ms.append(fit.ms)
        return fit.params

    def _capture(self, out: DropOldest[Frame]) -> None:
        while not self._extractor_ready.wait(0.05):
            if self._stop.is_set():
                out.close()
                return
        try:
            for frame in frames(self.source, stop=self._stop.is_set):
                out.put(frame)
                self.stats.captured += 1
                if self.max_frames is not None and self.stats.captured >= self.max_frames:
                    break
        except Exception as exc:  # noqa: BLE001 - handed to run(), which raises it in the caller
            self.error = exc
        finally:
            out.close()

    def _extract(self, inp: DropOldest[Frame], out: AsyncDropOldest) -> None:
        try:
            cam = self.face_model.camera
            model_size = (cam.width, cam.height)
            framing: dict[tuple[int, int], CropBox | None] = {}
            with Extractor(self.face_model) as extractor, _target_maker(self.refiner, self.face_model) as target:
                if self.refiner is not None:
                    self.refiner.prewarm()
                self._extractor_ready.set()
                while (frame := inp.get()) is not None:
                    t_in = time.monotonic()
                    size = (frame.image.shape[1], frame.image.shape[0])
                    if size not in framing:
                        framing[size] = model_framing(self.face_model.crop, size, model_size)
                    if framing[size] is not None or size != model_size:
                        frame = Frame(_reframe(frame.image, framing[size], model_size), frame.t_capture,
                                      frame.index)
                    if self.mode == CallMode.VIDEO:
                        # the same head crop the face model sees, as video: nothing to extract
                        out.put_threadsafe((frame, None, t_in, time.monotonic()))
                        continue
                    result = extractor.process(frame)
                    found = result.params
                    if self.refiner is not None:
                        found = self._refine(found, result.landmarks, frame, target)
                    # The extractor's layout carries translation; the codec's may not.
                    params = FaceParams.from_vector(found.to_vector(extractor.layout)[: self.layout.dims],
                                                    self.layout, face_found=result.params.face_found,
                                                    t_capture=frame.t_capture, index=frame.index)
                    self.stats.extracted += 1
                    self.stats.faces += int(params.face_found)
                    if self.on_frame is not None:
                        self.on_frame(frame, params)
                    out.put_threadsafe((frame, params, t_in, time.monotonic()))
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self._stop.set()  # a capture still waiting for the extractor gives up
            out.put_threadsafe(None)


class _HeadOnWhite:
    """The frame as the avatar was trained to render it: the head on white, at the bundle's resolution."""

    def __init__(self, model: FaceModel) -> None:
        from nerfconf.face.segment import HeadSegmenter  # noqa: PLC0415

        self._segmenter = HeadSegmenter(model.neck_margin)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        from nerfconf.face.segment import compose_on_white  # noqa: PLC0415

        return compose_on_white(image, self._segmenter.mask(image, landmarks))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._segmenter.close()


def _target_maker(refiner: PoseRefiner | None, model: FaceModel):
    return _HeadOnWhite(model) if refiner is not None else contextlib.nullcontext(None)


def _reframe(image: np.ndarray, crop: CropBox | None, size: tuple[int, int]) -> np.ndarray:
    """The frame in the face model's geometry: the chosen crop, resized to the model's camera."""
    if crop is not None:
        image = crop.apply(image)
    if (image.shape[1], image.shape[0]) != size:
        import cv2  # noqa: PLC0415

        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image

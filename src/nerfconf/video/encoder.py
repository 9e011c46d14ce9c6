"""Low-delay video encoders through PyAV: x264 and SVT-AV1, set up as a real-time (WebRTC-style) sender's.

Both: one coded frame out per frame in (no B-frames, no lookahead), no periodic
keyframes (a keyframe goes out at the start and when the receiver asks for
one), CBR-like rate control with a half-second buffer, so a keyframe cannot
burst far past the link's rate, and one thread (the two cores also run capture,
the receiver and the other direction).

* **H.264** (libx264): ``tune=zerolatency`` (no B-frames, no lookahead, no
  mb-tree), preset ``veryfast`` (at 96..256 px it encodes in ~1 ms; slower
  presets measured no better there), ``forced-idr`` so that a requested
  keyframe is an IDR a fresh decoder can start at, no scene-cut keyframes, and
  SPS/PPS in band before each IDR. The encoder is opened at its session's peak
  rate (``peak_kbps``: VBV max rate, and half a second of it as the buffer) and
  then set to the target, which can change frame by frame without a keyframe
  anywhere up to that peak (x264 reconfigures its rate control in place; it does
  so only when the VBV max rate equals the rate it was opened at, measured). Optional periodic intra
  refresh (``intra_refresh_s``) replaces keyframes with a moving column of
  intra blocks; at 32 kbps a 2 s period cost 1.2 to 1.8 dB (measured), so it is off.
* **AV1** (libsvtav1, decoded by dav1d): SVT-AV1's real-time mode (``rtc=1``:
  low-delay prediction, CBR), preset 10. A new target needs a new encoder (and
  so a keyframe), so :meth:`VideoEncoder.set_kbps` refuses it and the caller
  re-opens on a large change only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nerfconf.net.messages import VideoCodec

#: the VBV buffer, in seconds of the peak rate: a keyframe's burst is bounded by it
BUFFER_SECONDS = 0.5


class EncoderError(RuntimeError):
    """The encoder could not be opened or failed on a frame."""


@dataclass(frozen=True)
class EncoderConfig:
    codec: VideoCodec
    #: square picture side, px (even)
    size: int
    fps: float
    kbps: float
    #: the most this encoder can be retargeted to without a new one (default: ``kbps``)
    peak_kbps: float | None = None
    #: x264 only: a wave of intra blocks across the picture every this many seconds instead of keyframes
    intra_refresh_s: float | None = None

    def __post_init__(self) -> None:
        if self.codec not in LIBRARIES:
            raise ValueError(f"no encoder for {self.codec!r}")
        if not 16 <= self.size <= 1024 or self.size % 2:
            raise ValueError(f"video size must be even and 16..1024 px, got {self.size}")
        if not 0 < self.fps <= 60 or self.kbps <= 0:
            raise ValueError(f"fps must be in (0, 60] and kbps positive, got {self.fps} and {self.kbps}")
        if self.peak_kbps is not None and self.peak_kbps < self.kbps:
            raise ValueError(f"peak_kbps {self.peak_kbps} is below kbps {self.kbps}")
        if self.intra_refresh_s is not None and self.codec != VideoCodec.H264:
            raise ValueError("intra refresh is an x264 option here; AV1 sends keyframes")

    @property
    def peak(self) -> float:
        return self.kbps if self.peak_kbps is None else self.peak_kbps


#: the PyAV encoder for each codec
LIBRARIES = {VideoCodec.H264: "libx264", VideoCodec.AV1: "libsvtav1"}


def available_codecs() -> frozenset[VideoCodec]:
    """The codecs this PyAV build can both encode and decode."""
    import av  # noqa: PLC0415

    from nerfconf.video.decoder import DECODERS  # noqa: PLC0415

    have = av.codecs_available
    return frozenset(c for c, lib in LIBRARIES.items() if lib in have and DECODERS[c] in have)


class VideoEncoder:
    """One open encoder at one size and frame rate; another size or frame rate needs a new one."""

    def __init__(self, config: EncoderConfig) -> None:
        import av  # noqa: PLC0415

        self.config = config
        self.kbps = config.kbps
        self._av = av
        if config.codec == VideoCodec.AV1:
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise
        cc = av.CodecContext.create(LIBRARIES[config.codec], "w")
        cc.width = cc.height = config.size
        cc.pix_fmt = "yuv420p"
        cc.time_base = Fraction(1, 1000)
        cc.framerate = Fraction(config.fps).limit_denominator(1000)
        # x264 opens at its peak and is retargeted below (see the module's docstring)
        cc.bit_rate = int((config.peak if config.codec == VideoCodec.H264 else config.kbps) * 1000)
        cc.thread_count = 1
        cc.options = self._options(config)
        if config.codec == VideoCodec.AV1:
            cc.gop_size = 1 << 20  # no periodic keyframes
        try:
            cc.open()
        except av.FFmpegError as exc:
            raise EncoderError(f"cannot open {LIBRARIES[config.codec]} at {config.size} px, "
                               f"{config.kbps:.0f} kbps: {exc}") from exc
        self._cc = cc
        self.frames = 0
        if config.codec == VideoCodec.H264:
            self.kbps = config.peak
            self.set_kbps(config.kbps)

    @staticmethod
    def _options(config: EncoderConfig) -> dict[str, str]:
        if config.codec == VideoCodec.AV1:
            return {"preset": "10", "svtav1-params": "rtc=1:pred-struct=1:rc=2:scd=0"}
        peak = config.peak
        if config.intra_refresh_s is not None:
            period = max(2, round(config.intra_refresh_s * config.fps))
            gop = f"keyint={period}:intra-refresh=1"
        else:
            gop = "keyint=infinite"
        return {"tune": "zerolatency", "preset": "veryfast", "forced-idr": "1",
                "maxrate": f"{peak:.0f}k", "bufsize": f"{peak * BUFFER_SECONDS:.0f}k",
                "x264-params": f"{gop}:scenecut=0:repeat-headers=1"}

    def set_kbps(self, kbps: float) -> bool:
        """Retargets the running encoder; False when this one cannot (AV1, or past its peak)."""
        if self.config.codec != VideoCodec.H264 or kbps > self.config.peak * 1.001:
            return False
        if abs(kbps - self.kbps) >= 0.02 * self.kbps:
            self._cc.bit_rate = int(kbps * 1000)  # libx264 reconfigures on the next frame
            self.kbps = kbps
        return True

    def encode(self, image: np.ndarray, timestamp_ms: int, *, keyframe: bool = False) -> tuple[bytes, bool] | None:
        """Codes one RGB picture of the configured size; (bytes, is_keyframe), or None if nothing came out."""
        av = self._av
        size = self.config.size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected a {size}x{size} RGB uint8 picture, got {image.shape} {image.dtype}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = int(timestamp_ms)
        if keyframe or self.frames == 0:
            frame.pict_type = av.video.frame.PictureType.I
        try:
            packets = self._cc.encode(frame)
        except av.FFmpegError as exc:
            raise EncoderError(f"{LIBRARIES[self.config.codec]} failed on a frame: {exc}") from exc
        self.frames += 1
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        return data, any(p.is_keyframe for p in packets)

    def close(self) -> None:
        if self._cc is None:
            return
        try:
            self._cc.encode(None)  # SVT-AV1 complains when it is torn down without a flush
        except self._av.FFmpegError:
            pass
        self._cc = None

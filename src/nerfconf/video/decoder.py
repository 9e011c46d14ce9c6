"""Video decoders through PyAV, for frames a peer sent: hostile input, bounded and caught.

FFmpeg's ``max_pixels`` makes the decoder refuse a stream whose headers claim a
picture over ``max_size`` squared before it allocates it; every error of the
decoder, and a picture of any other shape, is a :class:`VideoDecodeError`,
which the receiver answers with a keyframe request. dav1d is held to one frame
of delay, so a frame comes out when it goes in.
"""

from __future__ import annotations

import numpy as np

from nerfconf.net.messages import VideoCodec

#: the PyAV decoder for each codec
DECODERS = {VideoCodec.H264: "h264", VideoCodec.AV1: "libdav1d"}
#: the largest picture side accepted from a peer
MAX_SIZE = 1024


class VideoDecodeError(ValueError):
    """A frame the decoder could not decode, or a picture out of bounds."""


class VideoDecoder:
    def __init__(self, codec: VideoCodec, max_size: int = MAX_SIZE) -> None:
        import av  # noqa: PLC0415

        if codec not in DECODERS:
            raise VideoDecodeError(f"no decoder for video codec {codec!r}")
        self.codec = codec
        self.max_size = max_size
        self._av = av
        cc = av.CodecContext.create(DECODERS[codec], "r")
        options = {"max_pixels": str(max_size * max_size)}
        if codec == VideoCodec.AV1:
            options["max_frame_delay"] = "1"
        else:
            options["flags"] = "+low_delay"
        cc.options = options
        cc.thread_count = 1
        self._cc = cc

    def decode(self, data: bytes) -> np.ndarray | None:
        """The RGB picture of one coded frame, or None when the decoder holds it back."""
        av = self._av
        try:
            frames = self._cc.decode(av.Packet(data))
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            raise VideoDecodeError(f"{DECODERS[self.codec]} could not decode a frame: {exc}") from exc
        if not frames:
            return None
        frame = frames[-1]
        if not (0 < frame.width <= self.max_size and 0 < frame.height <= self.max_size):
            raise VideoDecodeError(f"decoded picture of {frame.width}x{frame.height} is outside 1..{self.max_size}")
        try:
            return frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, ValueError) as exc:
            raise VideoDecodeError(f"decoded picture could not be converted: {exc}") from exc

"""The video mode's settings, shared by a call's two sides."""

from __future__ import annotations

from dataclasses import dataclass

from nerfconf.net.messages import VideoCodec


@dataclass(frozen=True)
class VideoSettings:
    #: the codec this peer sends in, when the receiver decodes it (H.264 otherwise)
    codec: VideoCodec = VideoCodec.H264
    #: sending: the ceiling and starting target; receiving: the most this peer asks the other to send
    max_kbps: int = 32
    #: x264's periodic intra refresh instead of keyframes, every this many seconds (None: off)
    intra_refresh_s: float | None = None
    #: the side of the picture shown, px: received video is scaled to it
    display_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "codec", VideoCodec(self.codec))
        if self.codec == VideoCodec.NONE:
            raise ValueError("video needs a codec: h264 or av1")
        if not 8 <= self.max_kbps <= 20000:
            raise ValueError(f"video bitrate must be 8..20000 kbps, got {self.max_kbps}")
        if not 16 <= self.display_size <= 1024:
            raise ValueError(f"video display size must be 16..1024 px, got {self.display_size}")
        if self.intra_refresh_s is not None and not 0.2 <= self.intra_refresh_s <= 60:
            raise ValueError(f"intra refresh period must be 0.2..60 s, got {self.intra_refresh_s}")

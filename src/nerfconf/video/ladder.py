"""The picture size and frame rate a sender uses at each bitrate, per codec.

Like WebRTC's resolution and frame-rate adaptation, but chosen from measurements
on talking heads rather than from a generic table: for each codec, each rung is
the size / frame rate with the best PSNR at the rung's rates, scored on the
displayed 256 px picture at the call's 20 fps (a lower frame rate is scored with
each frame held until the next), on the sample's held-out demo clip and on
``d9.mp4`` (pulled faces, fast motion); see the "Video mode" section of
docs/transport.md. Below ~28 kbps H.264 is better off with fewer, smaller
pictures. SVT-AV1 in its real-time mode was best at 256 px and 20 fps (or
within 0.1 dB of the best) at every rate from 8 kbps, the controller's floor,
on both clips, so it has one rung.

A rung is left downwards as soon as the target falls below it, and upwards only
after ``hold`` seconds and with ``margin`` to spare, so the size does not flap:
each change costs a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfconf.net.messages import VideoCodec


@dataclass(frozen=True)
class Rung:
    #: the lowest target (kbps) this rung is used at
    min_kbps: float
    #: square picture side, px
    size: int
    fps: float


LADDERS: dict[VideoCodec, tuple[Rung, ...]] = {
    VideoCodec.H264: (Rung(0, 96, 15), Rung(14, 128, 10), Rung(20, 160, 20), Rung(28, 192, 20),
                      Rung(40, 256, 20)),
    VideoCodec.AV1: (Rung(0, 256, 20),),
}


class LadderPolicy:
    """Picks the rung for a target bitrate, with hysteresis."""

    def __init__(self, codec: VideoCodec, max_fps: float, *, hold: float = 2.0, margin: float = 1.15) -> None:
        self.rungs = LADDERS[codec]
        self.max_fps = max_fps
        self.hold = hold
        self.margin = margin
        self._index: int | None = None
        self._since = 0.0

    def upper_kbps(self, rung: Rung) -> float:
        """The target above which the ladder leaves ``rung`` (infinite for the top one)."""
        above = [r.min_kbps for r in self.rungs if r.min_kbps > rung.min_kbps]
        return min(above) * self.margin if above else float("inf")

    def choose(self, kbps: float, now: float) -> Rung:
        want = max(i for i, r in enumerate(self.rungs) if kbps >= r.min_kbps)
        if self._index is None or want < self._index:
            self._index, self._since = want, now
        elif want > self._index and now - self._since >= self.hold:
            # up one rung at a time, each with margin
            up = self._index + 1
            if kbps >= self.rungs[up].min_kbps * self.margin:
                self._index, self._since = up, now
        rung = self.rungs[self._index]
        return Rung(rung.min_kbps, rung.size, min(rung.fps, self.max_fps))

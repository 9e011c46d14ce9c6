"""The receiver's playout buffer (pure: the caller passes the time).

As in the paper, frame ``i`` plays at ``base + (i - i0) / fps``, where the
base is the first frame's arrival plus K frame intervals. Beyond the paper:

* **Adaptive delay.** Each arrival gives a transit offset ``t_arrival - i / fps``.
  The target playout offset is the smallest recent offset plus a high
  quantile of how far offsets spread above it (the jitter), plus a margin,
  within ``[min_delay, max_delay]``. The schedule moves toward the target
  by at most a frame interval per shown frame when it must grow, and a tenth
  of one when it may shrink, so motion never jumps.
* **Concealment.** A frame missing at its slot is interpolated when a later
  frame is already buffered, and otherwise extrapolated from the last two
  good frames with a motion that decays back to the last good pose.
* **Late frames** (arriving after their slot was shown) are not shown, but
  they become the newest good pose that concealment continues from.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nerfconf.playout.conceal import extrapolate, interpolate
from nerfconf.types import FaceParams

PushResult = Literal["queued", "late", "duplicate", "reset"]


@dataclass(frozen=True)
class PlayoutConfig:
    fps: float = 20.0
    #: frames buffered before the first one plays (the paper's K)
    k_frames: int = 2
    adaptive: bool = True
    #: bounds of the delay added above the fastest recent transit, in seconds
    min_delay: float = 0.0
    max_delay: float = 0.5
    #: share of frames that should arrive before their slot; 0.995 keeps frames that needed
    #: a second redundant copy (two datagrams lost in a row) in time at 10 % loss
    quantile: float = 0.995
    #: arrivals the jitter is measured over (20 s at 20 fps)
    window: int = 400
    #: arrivals needed before the adaptive target replaces K frames
    warmup: int = 20
    margin: float = 0.005
    #: extrapolated motion peaks after this many frames, then decays to the last good pose
    decay_frames: float = 3.0
    #: frames held ahead of playback; a frame further ahead restarts the timeline
    capacity: int = 64
    #: late arrivals in a row after which the transit floor measured so far is dropped: the
    #: sender's clock or the path changed, and a floor older than that would keep every frame late
    late_resync: int = 10

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.k_frames < 0 or self.capacity < 2 or self.late_resync < 1:
            raise ValueError("fps must be positive, k_frames >= 0, capacity >= 2 and late_resync >= 1")
        if not 0 <= self.min_delay <= self.max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        if not 0 < self.quantile <= 1 or self.window < 2 or self.warmup < 1:
            raise ValueError("quantile must be in (0, 1], window >= 2, warmup >= 1")


@dataclass(frozen=True)
class PlayoutFrame:
    index: int
    params: FaceParams
    #: "shown" (received), "interpolated" or "extrapolated" (concealed)
    kind: Literal["shown", "interpolated", "extrapolated"]
    #: the slot's playout time
    t_due: float

    @property
    def concealed(self) -> bool:
        return self.kind != "shown"


@dataclass
class PlayoutStats:
    shown: int = 0
    concealed: int = 0
    interpolated: int = 0
    extrapolated: int = 0
    #: arrived after their slot had played
    late: int = 0
    #: arrived, never shown: skipped when playback fell behind, or flushed by a restart
    dropped: int = 0
    duplicates: int = 0
    resets: int = 0
    #: times a run of late arrivals dropped the transit floor measured before it
    resyncs: int = 0
    #: the longest run of consecutive concealed slots, in frames
    longest_concealed_run: int = 0
    #: the delay currently added above the fastest recent transit, in seconds
    delay: float = 0.0


class PlayoutBuffer:
    def __init__(self, config: PlayoutConfig | None = None) -> None:
        self.config = config or PlayoutConfig()
        self.stats = PlayoutStats()
        self._frames: dict[int, FaceParams] = {}
        self._offsets: deque[float] = deque(maxlen=self.config.window)
        self._offset: float | None = None  # playout time of frame i is i / fps + offset
        self._next: int | None = None  # the next slot to play
        self._last_good: FaceParams | None = None
        self._prev_good: FaceParams | None = None
        self._run = 0
        self._late_run = 0

    # -- input ----------------------------------------------------------------------

    def push(self, params: FaceParams, t_arrival: float) -> PushResult:
        cfg = self.config
        i = params.index
        self._offsets.append(t_arrival - i / cfg.fps)
        if self._next is None or i >= self._next + cfg.capacity:
            result: PushResult = "queued"
            if self._next is not None:  # the sender restarted or jumped: start a new timeline
                self.stats.resets += 1
                self.stats.dropped += len(self._frames)
                self._frames.clear()
                self._offsets.clear()
                self._offsets.append(t_arrival - i / cfg.fps)
                self._last_good = self._prev_good = None
                result = "reset"
            self._next = i
            self._offset = t_arrival - i / cfg.fps + cfg.k_frames / cfg.fps
            self._frames[i] = params
            return result
        if i < self._next:
            self.stats.late += 1
            self._remember_good(params)
            self._late_run += 1
            if self._late_run >= cfg.late_resync:
                # keep only the late run's transits, and move the slot clock to where frames arrive
                # now: the next slots then wait for their frames, and the delay adapts from there
                recent = list(self._offsets)[-self._late_run:]
                self._offsets.clear()
                self._offsets.extend(recent)
                self._offset = max(self._offset, max(recent) + cfg.k_frames / cfg.fps)
                self.stats.resyncs += 1
                self._late_run = 0
            return "late"
        self._late_run = 0
        if i in self._frames:
            self.stats.duplicates += 1
            return "duplicate"
        self._frames[i] = params
        return "queued"

    def _remember_good(self, params: FaceParams) -> None:
        if self._last_good is None or params.index > self._last_good.index:
            self._prev_good, self._last_good = self._last_good, params

    # -- output ---------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the next slot plays (None before the first frame arrived)."""
        if self._next is None or self._offset is None:
            return None
        return self._next / self.config.fps + self._offset

    def next_ready(self) -> bool:
        """Whether the frame of the next slot has arrived."""
        return self._next is not None and self._next in self._frames

    def pop(self, now: float) -> PlayoutFrame | None:
        """The frame for the slot due at ``now``, or None if no slot is due yet.

        A caller that fell more than a slot behind skips the slots it missed.
        """
        due = self.next_due()
        if due is None or now < due:
            return None
        assert self._next is not None and self._offset is not None
        fps = self.config.fps
        while (self._next + 1) / fps + self._offset <= now:
            skipped = self._frames.pop(self._next, None)
            if skipped is not None:
                self.stats.dropped += 1
                self._remember_good(skipped)
            self._next += 1
        slot = self._next
        t_due = slot / fps + self._offset
        frame = self._frames.pop(slot, None)
        if frame is not None:
            self._remember_good(frame)
            out = PlayoutFrame(slot, frame, "shown", t_due)
            self.stats.shown += 1
            self._run = 0
        else:
            out = self._conceal(slot, t_due)
        self._next = slot + 1
        self._adapt()
        return out

    def _conceal(self, slot: int, t_due: float) -> PlayoutFrame:
        cfg = self.config
        self.stats.concealed += 1
        self._run += 1
        self.stats.longest_concealed_run = max(self.stats.longest_concealed_run, self._run)
        last = self._last_good
        if last is None or not last.face_found:
            # no pose to move from: hold "no face", which the renderer fades out
            if last is None:  # only after a restart whose first frames were all skipped
                params = FaceParams(np.zeros(0), np.zeros(3), None, False, t_due, slot)
            else:
                params = FaceParams(last.expression, last.rotation, last.translation, False, last.t_capture, slot)
            self.stats.extrapolated += 1
            return PlayoutFrame(slot, params, "extrapolated", t_due)
        later = [i for i in self._frames if i > slot]
        if later:
            nxt = self._frames[min(later)]
            if nxt.face_found:
                self.stats.interpolated += 1
                return PlayoutFrame(slot, interpolate(last, nxt, slot), "interpolated", t_due)
        self.stats.extrapolated += 1
        return PlayoutFrame(slot, extrapolate(self._prev_good, last, slot, cfg.decay_frames, cfg.fps),
                            "extrapolated", t_due)

    def _adapt(self) -> None:
        cfg = self.config
        if not cfg.adaptive or len(self._offsets) < cfg.warmup or self._offset is None:
            return
        offsets = np.fromiter(self._offsets, np.float64)
        floor = float(offsets.min())
        spread = float(np.quantile(offsets - floor, cfg.quantile)) + cfg.margin
        delay = min(cfg.max_delay, max(cfg.min_delay, spread))
        target = floor + delay
        step = 1.0 / cfg.fps
        if target > self._offset:
            self._offset = min(target, self._offset + step)
        else:
            self._offset = max(target, self._offset - step / 10)
        self.stats.delay = self._offset - floor

    def __len__(self) -> int:
        return len(self._frames)

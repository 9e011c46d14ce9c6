"""Reassembly of video frames from fragments (sans-I/O, the caller passes the time).

Frames come out in frame-number order, each once. A frame that has not been
completed ``timeout`` seconds after it was first needed (its first fragment
arrived, or a later frame did) is given up as lost, so the decoder never waits
on it longer than a NACK round trip; a complete keyframe makes every frame
before it lost at once, since nothing before it is needed any more.

Everything is bounded: at most ``max_pending`` frames are held, each at most
``MAX_FRAGMENTS`` fragments; fragments that contradict their frame's header,
repeat, or belong to a frame already given out or given up are counted and
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.messages import VideoCodec
from nerfconf.video.packets import Fragment, PacketError, parse


@dataclass(frozen=True)
class AssembledFrame:
    #: frame number extended past 2**16 (the first frame seen keeps its wire number)
    frame_no: int
    data: bytes
    keyframe: bool
    codec: VideoCodec
    timestamp_ms: int
    #: when its first and last fragment arrived
    t_first: float
    t_complete: float


@dataclass(frozen=True)
class FramesLost:
    """Frames ``first`` .. ``last`` (extended numbers) will never come out."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


Output = AssembledFrame | FramesLost


@dataclass
class AssemblyStats:
    fragments: int = 0
    frames: int = 0
    keyframes: int = 0
    lost: int = 0
    malformed: int = 0
    duplicates: int = 0
    #: fragments of frames already given out or given up
    late: int = 0
    #: frames given up because too many were pending
    overflow: int = 0


@dataclass
class _Partial:
    first: Fragment
    t_first: float
    parts: dict[int, bytes] = field(default_factory=dict)

    def complete(self) -> bool:
        return len(self.parts) == self.first.count

    def data(self) -> bytes:
        return b"".join(self.parts[i] for i in range(self.first.count))


class FrameAssembler:
    def __init__(self, timeout: float = 0.2, max_pending: int = 16) -> None:
        if timeout <= 0 or max_pending < 2:
            raise ValueError("timeout must be positive and max_pending at least 2")
        self.timeout = timeout
        self.max_pending = max_pending
        self.stats = AssemblyStats()
        self._pending: dict[int, _Partial] = {}
        #: the next frame to give out (extended); None before the first fragment
        self._next: int | None = None
        #: whether any frame was given out or given up: until then an earlier frame may still start the stream
        self._started = False

    def push(self, payload: bytes, now: float) -> list[Output]:
        try:
            frag = parse(payload)
        except PacketError:
            self.stats.malformed += 1
            return []
        self.stats.fragments += 1
        ext = self._extend(frag.frame_no)
        if self._next is None or (ext < self._next and not self._started):
            self._next = ext  # the stream's first frames may arrive out of order
        if ext < self._next:
            self.stats.late += 1
            return []
        partial = self._pending.get(ext)
        if partial is None:
            partial = self._pending[ext] = _Partial(frag, now)
        elif (frag.count, frag.keyframe, frag.codec, frag.timestamp_ms) != (
                partial.first.count, partial.first.keyframe, partial.first.codec, partial.first.timestamp_ms):
            # a peer that contradicts itself: the whole frame is suspect
            self.stats.malformed += 1
            del self._pending[ext]
            return self._drain(now)
        if frag.index in partial.parts:
            self.stats.duplicates += 1
            return []
        partial.parts[frag.index] = frag.data
        out: list[Output] = []
        if len(self._pending) > self.max_pending:
            self.stats.overflow += 1
            out.append(self._lose(self._next, min(self._pending)))
        return out + self._drain(now)

    def poll(self, now: float) -> list[Output]:
        """Frames given up because their time ran out (call it by :meth:`next_deadline`)."""
        return self._drain(now)

    def next_deadline(self) -> float | None:
        """When the frame waited for is given up, unless it completes first."""
        if not self._pending:
            return None
        return min(p.t_first for p in self._pending.values()) + self.timeout

    # -- internals ------------------------------------------------------------------

    def _extend(self, frame_no: int) -> int:
        if self._next is None:
            return frame_no
        delta = (frame_no - self._next) % SEQ_MODULO
        if delta >= SEQ_MODULO // 2:
            delta -= SEQ_MODULO
        return self._next + delta

    def _drain(self, now: float) -> list[Output]:
        out: list[Output] = []
        while self._pending:
            assert self._next is not None
            partial = self._pending.get(self._next)
            if partial is not None and partial.complete():
                del self._pending[self._next]
                out.append(self._emit(self._next, partial, now))
                self._next += 1
                continue
            key = max((n for n, p in self._pending.items() if p.first.keyframe and p.complete()), default=None)
            if key is not None:
                # nothing before a complete keyframe is needed any more
                out.append(self._lose(self._next, key - 1))
                continue
            deadline = self.next_deadline()
            if deadline is not None and now >= deadline:
                # the frame waited for (or, when none of it came, the gap before the oldest held)
                out.append(self._lose(self._next, self._next if partial is not None else min(self._pending) - 1))
                continue
            break
        return out

    def _lose(self, first: int, last: int) -> FramesLost:
        self._started = True
        for n in [n for n in self._pending if n <= last]:
            del self._pending[n]
        self.stats.lost += last - first + 1
        self._next = last + 1
        return FramesLost(first, last)

    def _emit(self, n: int, partial: _Partial, t: float) -> AssembledFrame:
        self._started = True
        self.stats.frames += 1
        self.stats.keyframes += int(partial.first.keyframe)
        f = partial.first
        return AssembledFrame(n, partial.data(), f.keyframe, f.codec, f.timestamp_ms, partial.t_first, t)

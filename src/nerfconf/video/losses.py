"""Which video packets are missing (NACKs), and how many were lost (loss reports); sans-I/O.

Packet sequence numbers are the transport's (:mod:`nerfconf.net.video_channel`),
extended past 2**16 as RTP receivers do. A gap is NACKed as soon as a later
packet shows it, and once more ``retry`` later if the packet still has not come;
after ``max_age`` it is no longer worth asking for. Reports follow RTCP's
receiver report: the fraction of the packets expected in the interval that did
not arrive, and the rate that did.
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net.messages import MAX_FEEDBACK_SEQS, LossReport

#: a gap wider than this is a reset or a hostile jump: only its newest packets are asked for
MAX_GAP = 64


@dataclass
class _Missing:
    since: float
    tries: int


@dataclass
class LossStats:
    packets: int = 0
    duplicates: int = 0
    #: packets NACKed (first requests and retries)
    nacked: int = 0
    #: NACKed packets that arrived afterwards
    recovered: int = 0


class LossTracker:
    def __init__(self, retry: float = 0.06, max_age: float = 0.2) -> None:
        self.retry = retry
        self.max_age = max_age
        self.stats = LossStats()
        self._highest: int | None = None
        self._missing: dict[int, _Missing] = {}
        #: recently seen extended numbers, for duplicates (bounded by pruning below the horizon)
        self._seen: set[int] = set()
        # report state
        self._first: int | None = None
        self._received = 0
        self._bytes = 0
        self._prior_expected = 0
        self._prior_received = 0
        self._prior_bytes = 0
        self._prior_t: float | None = None

    def on_packet(self, seq: int, size: int, now: float) -> tuple[int, ...]:
        """Takes one arrival; returns the sequence numbers to NACK now."""
        ext = self._extend(seq)
        if ext in self._seen or (self._highest is not None and ext <= self._highest - 4 * MAX_GAP):
            self.stats.duplicates += 1
            return ()
        self.stats.packets += 1
        self._seen.add(ext)
        self._received += 1
        self._bytes += size
        if self._first is None:
            self._first = ext
            self._prior_t = now
        if self._missing.pop(ext, None) is not None:
            self.stats.recovered += 1
        nacks: list[int] = []
        if self._highest is None or ext > self._highest:
            if self._highest is not None:
                for gap in range(max(self._highest + 1, ext - MAX_GAP), ext):
                    self._missing[gap] = _Missing(now, 1)
                    nacks.append(gap)
            self._highest = ext
            self._prune()
        self.stats.nacked += len(nacks)
        return tuple(s % SEQ_MODULO for s in nacks[-MAX_FEEDBACK_SEQS:])

    def poll(self, now: float) -> tuple[int, ...]:
        """Second requests for packets still missing ``retry`` after the first; forgets stale ones."""
        again = []
        for ext, m in list(self._missing.items()):
            if now - m.since > self.max_age:
                del self._missing[ext]
            elif m.tries == 1 and now - m.since >= self.retry:
                m.tries = 2
                again.append(ext)
        self.stats.nacked += len(again)
        return tuple(s % SEQ_MODULO for s in again[-MAX_FEEDBACK_SEQS:])

    def report(self, now: float) -> LossReport | None:
        """The loss report for the interval since the last one (None before any packet)."""
        if self._first is None or self._highest is None or self._prior_t is None:
            return None
        expected = self._highest - self._first + 1
        exp_int = expected - self._prior_expected
        rec_int = self._received - self._prior_received
        lost = max(0, exp_int - rec_int)
        fraction = min(255, (lost * 256) // exp_int) if exp_int > 0 else 0
        dt = max(now - self._prior_t, 1e-3)
        kbps = min(0xFFFF, round(8 * (self._bytes - self._prior_bytes) / dt / 1e3))
        self._prior_expected, self._prior_received, self._prior_bytes = expected, self._received, self._bytes
        self._prior_t = now
        return LossReport(fraction, kbps)

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = (seq - self._highest) % SEQ_MODULO
        if delta >= SEQ_MODULO // 2:
            delta -= SEQ_MODULO
        return self._highest + delta

    def _prune(self) -> None:
        assert self._highest is not None
        if len(self._seen) > 8 * MAX_GAP:
            floor = self._highest - 4 * MAX_GAP
            self._seen = {s for s in self._seen if s > floor}
        if len(self._missing) > 4 * MAX_GAP:
            for ext in sorted(self._missing)[: len(self._missing) - 4 * MAX_GAP]:
                del self._missing[ext]

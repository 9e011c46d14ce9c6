"""One direction of an emulated link, as a pure state machine (time is passed in).

A packet submitted at time ``t`` goes through, in order:

1. loss at the ingress: random (Bernoulli), Gilbert-Elliott bursts, or the
   loss of the trace segment in force;
2. a FIFO bottleneck queue served at a fixed rate, an AlphaRTC capacity
   pattern or Mahimahi delivery opportunities, with a byte limit (tail drop);
3. propagation delay plus jitter; without reordering a packet never
   overtakes the one before it.

Every packet the link holds, queued or on its way, counts against a bound
(:data:`MAX_IN_FLIGHT_PACKETS`, :data:`MAX_IN_FLIGHT_BYTES`): an emulated link
must not hold a sender's flood in memory for as long as its delay lasts.

:meth:`LinkModel.submit` returns the delivery time, or None for a drop. The
decisions depend only on the seed and the sequence of (time, size) given,
so a run replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from nerfconf.net.errors import NetemError
from nerfconf.net.netem.limits import MAX_DELAY_MS, MIN_RATE_KBPS, check_range
from nerfconf.net.netem.traces import MAHIMAHI_MTU, AlphaRtcTrace, MahimahiTrace

#: packets and bytes one direction holds at once, queued or delayed; beyond them it drops (the
#: relay keeps a timer and the payload for each, so without a bound a flood is held for the delay)
MAX_IN_FLIGHT_PACKETS = 65_536
MAX_IN_FLIGHT_BYTES = 16 << 20


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss: per packet, Good -> Bad with ``p_good_bad``, Bad -> Good with ``p_bad_good``."""

    p_good_bad: float
    p_bad_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_good_bad", "p_bad_good", "loss_good", "loss_bad"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise NetemError(f"Gilbert-Elliott {name} must be a probability in 0..1")
        if self.p_good_bad + self.p_bad_good == 0:
            raise NetemError("Gilbert-Elliott needs at least one non-zero transition probability")

    @property
    def mean_loss(self) -> float:
        bad = self.p_good_bad / (self.p_good_bad + self.p_bad_good)
        return bad * self.loss_bad + (1 - bad) * self.loss_good


@dataclass(frozen=True)
class LinkSpec:
    """Impairments of one direction."""

    delay_ms: float = 0.0
    #: standard deviation of a normal jitter added to the delay (clipped so delay stays >= 0)
    jitter_ms: float = 0.0
    #: let jitter reorder packets (otherwise each waits for the one before it)
    reorder: bool = False
    loss: float = 0.0
    gilbert: GilbertElliott | None = None
    rate_kbps: float | None = None
    queue_bytes: int = 64_000
    alphartc: AlphaRtcTrace | None = None
    mahimahi: MahimahiTrace | None = None

    def __post_init__(self) -> None:
        check_range("delay", self.delay_ms, 0.0, MAX_DELAY_MS, " ms")
        check_range("jitter", self.jitter_ms, 0.0, MAX_DELAY_MS, " ms")
        check_range("loss", self.loss, 0.0, 1.0)
        if self.rate_kbps is not None:
            check_range("rate", self.rate_kbps, MIN_RATE_KBPS, unit=" kbps")
        if self.queue_bytes < MAHIMAHI_MTU:
            raise NetemError(f"the queue must hold at least one {MAHIMAHI_MTU}-byte packet")
        shapers = sum(x is not None for x in (self.rate_kbps, self.alphartc, self.mahimahi))
        if shapers > 1:
            raise NetemError("choose one of a rate cap, an AlphaRTC trace or a Mahimahi trace")
        if self.gilbert is not None and self.loss > 0:
            raise NetemError("choose random loss or Gilbert-Elliott loss, not both")


@dataclass
class LinkStats:
    packets: int = 0
    bytes: int = 0
    delivered: int = 0
    lost: int = 0
    queue_drops: int = 0
    max_queue_bytes: int = 0
    #: dropped because the link already held MAX_IN_FLIGHT_PACKETS or MAX_IN_FLIGHT_BYTES
    overflow_drops: int = 0


@dataclass
class LinkModel:
    spec: LinkSpec
    seed: int = 0
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._bad = False
        self._busy_until = 0.0  # when the bottleneck finishes its queue
        self._queue: deque[tuple[float, int]] = deque()  # (departure, size) still queued
        self._queued_bytes = 0
        self._in_flight: list[tuple[float, int]] = []  # heap of (delivery, size) not yet delivered
        self._in_flight_bytes = 0
        self._last_delivery = 0.0
        # Mahimahi: the opportunity the last packet finished in, and its unused bytes
        self._mm_index = -1
        self._mm_left = 0

    def submit(self, t: float, size: int) -> float | None:
        """Delivery time of a ``size``-byte packet arriving at ``t`` (s), or None if it is dropped."""
        s = self.stats
        s.packets += 1
        s.bytes += size
        if self._lost(t):
            s.lost += 1
            return None
        while self._in_flight and self._in_flight[0][0] <= t:
            self._in_flight_bytes -= heapq.heappop(self._in_flight)[1]
        if len(self._in_flight) >= MAX_IN_FLIGHT_PACKETS or self._in_flight_bytes + size > MAX_IN_FLIGHT_BYTES:
            s.overflow_drops += 1
            return None
        while self._queue and self._queue[0][0] <= t:
            self._queued_bytes -= self._queue.popleft()[1]
        if self._queued_bytes + size > self.spec.queue_bytes:
            s.queue_drops += 1
            return None
        departure = self._serve(t, size)
        if departure > t:
            self._queue.append((departure, size))
            self._queued_bytes += size
            s.max_queue_bytes = max(s.max_queue_bytes, self._queued_bytes)
        delivery = departure + self._delay(departure)
        if not self.spec.reorder:
            delivery = max(delivery, self._last_delivery)
        self._last_delivery = max(self._last_delivery, delivery)
        heapq.heappush(self._in_flight, (delivery, size))
        self._in_flight_bytes += size
        s.delivered += 1
        return delivery

    def _lost(self, t: float) -> bool:
        spec = self.spec
        if spec.gilbert is not None:
            ge = spec.gilbert
            if self._bad:
                self._bad = self._rng.random() >= ge.p_bad_good
            else:
                self._bad = self._rng.random() < ge.p_good_bad
            p = ge.loss_bad if self._bad else ge.loss_good
        else:
            p = spec.loss
            if spec.alphartc is not None:
                seg = spec.alphartc.segments[spec.alphartc.segment_at(t)[0]]
                if seg.loss is not None:
                    p = seg.loss
        # always draw, so the loss pattern does not shift when p changes between runs
        return self._rng.random() < p

    def _delay(self, t: float) -> float:
        delay, jitter = self.spec.delay_ms, self.spec.jitter_ms
        if self.spec.alphartc is not None:
            seg = self.spec.alphartc.segments[self.spec.alphartc.segment_at(t)[0]]
            if seg.rtt_ms is not None:
                delay = seg.rtt_ms / 2
            if seg.jitter_ms is not None:
                jitter = seg.jitter_ms
        extra = self._rng.gauss(0.0, jitter) if jitter > 0 else 0.0
        return max(0.0, delay + extra) / 1000.0

    def _serve(self, t: float, size: int) -> float:
        spec = self.spec
        if spec.rate_kbps is not None:
            self._busy_until = max(t, self._busy_until) + size * 8 / (spec.rate_kbps * 1000)
            return self._busy_until
        if spec.alphartc is not None:
            self._busy_until = spec.alphartc.departure(max(t, self._busy_until), size * 8)
            return self._busy_until
        if spec.mahimahi is not None:
            return self._serve_mahimahi(t, size, spec.mahimahi)
        return t

    def _serve_mahimahi(self, t: float, size: int, trace: MahimahiTrace) -> float:
        if self._mm_index >= 0 and trace.time_of(self._mm_index) >= t and self._mm_left > 0:
            index, left = self._mm_index, self._mm_left  # the queue is busy: go on where it stopped
        else:
            index = max(trace.first_at_or_after(t), self._mm_index + 1)
            left = MAHIMAHI_MTU
        while size > left:
            size -= left
            index += 1
            left = MAHIMAHI_MTU
        self._mm_index, self._mm_left = index, left - size
        return trace.time_of(index)

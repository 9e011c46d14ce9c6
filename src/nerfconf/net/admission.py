"""Who may open a connection to a listening peer, and who may join its call: pure, time passed in.

A listening peer answers anyone who can send it a UDP packet. These bounds keep what
strangers can make it hold small, whatever they send (``endpoints.listen`` applies them):

* address validation comes first (QUIC Retry, in :mod:`nerfconf.net.guarded_server`): an
  Initial from an address that has not echoed a Retry token creates nothing, so a flood
  from spoofed addresses costs a stateless reply per packet and no memory;
* half-open connections (TLS under way, or no HELLO yet) are capped over all sources, and
  each is closed ``TransportConfig.auth_timeout`` after its first packet (``CallProtocol``);
* connections from one source are capped (an IPv4 address, or an IPv6 /64: one subscriber's share);
* wrong room tokens from one source are rate-limited: past the budget its HELLOs are refused
  without the token being looked at, until the oldest failure leaves the window;
* a peer with the right token is refused as busy once the application holds ``max_peers`` calls,
  instead of being welcomed into a queue nobody reads.

Connections are named by any hashable key the caller chooses (the endpoint uses its protocol objects).
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionLimits:
    #: connections still in the TLS handshake or waiting for HELLO, over all sources
    max_half_open: int = 32
    #: connections from one source, in any state
    max_per_source: int = 4
    #: peers in a call at once: the application takes one (``nerfconf call``, ``send``, ``receive``)
    max_peers: int = 1
    #: wrong room tokens one source may show within ``token_failure_window`` seconds
    max_token_failures: int = 5
    token_failure_window: float = 60.0
    #: sources whose wrong tokens are remembered at once; the least recently failed are forgotten first
    tracked_sources: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_half_open", "max_per_source", "max_peers", "max_token_failures", "tracked_sources"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.token_failure_window > 0:
            raise ValueError(f"token_failure_window must be positive, got {self.token_failure_window}")


def source_of(address: tuple | str) -> str:
    """The source a socket address counts against: its IPv4 address, or its IPv6 /64."""
    host = address[0] if isinstance(address, tuple) else address
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AdmissionPolicy:
    """Counts connections by state and source, and says whether one more may open or join."""

    def __init__(self, limits: AdmissionLimits | None = None) -> None:
        self.limits = limits or AdmissionLimits()
        self._source: dict[Hashable, str] = {}
        self._half_open: set[Hashable] = set()
        self._peers: set[Hashable] = set()
        self._per_source: Counter[str] = Counter()
        #: source -> times of its recent wrong tokens, oldest first; least recently failed source first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def connections(self) -> int:
        return len(self._source)

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    @property
    def peers(self) -> int:
        return len(self._peers)

    # -- a connection's life ------------------------------------------------------------

    def refuse_connection(self, source: str) -> str | None:
        """Why a new connection from ``source`` may not open now, or None if it may."""
        if len(self._half_open) >= self.limits.max_half_open:
            return "the server has too many connections in their handshake; try again in a few seconds"
        if self._per_source[source] >= self.limits.max_per_source:
            return f"too many connections from {source} ({self.limits.max_per_source} at most)"
        return None

    def opened(self, key: Hashable, source: str) -> None:
        """A connection from ``source`` now exists (half-open until :meth:`refuse_peer` admits it)."""
        if key in self._source:
            raise ValueError(f"connection {key!r} is already counted")
        self._source[key] = source
        self._half_open.add(key)
        self._per_source[source] += 1

    def closed(self, key: Hashable) -> None:
        """The connection is gone; it leaves every count (unknown keys are ignored)."""
        source = self._source.pop(key, None)
        if source is None:
            return
        self._half_open.discard(key)
        self._peers.discard(key)
        self._per_source[source] -= 1
        if not self._per_source[source]:
            del self._per_source[source]

    # -- authentication -----------------------------------------------------------------

    def refuse_hello(self, source: str, now: float) -> str | None:
        """Why a HELLO from ``source`` is refused unread (too many wrong tokens lately), or None."""
        times = self._recent_failures(source, now)
        if times is None or len(times) < self.limits.max_token_failures:
            return None
        wait = math.ceil(times[0] + self.limits.token_failure_window - now)
        return f"too many wrong room tokens from {source}; try again in {wait} s"

    def token_failed(self, source: str, now: float) -> None:
        times = self._recent_failures(source, now)
        if times is None:
            times = self._failures[source] = deque(maxlen=self.limits.max_token_failures)
            if len(self._failures) > self.limits.tracked_sources:
                self._failures.popitem(last=False)
        self._failures.move_to_end(source)
        times.append(now)

    def refuse_peer(self, key: Hashable) -> str | None:
        """The connection showed the right token: why the application cannot take it, or None (it joins)."""
        if key not in self._source:
            raise ValueError(f"connection {key!r} was never opened")
        if len(self._peers) >= self.limits.max_peers:
            n = self.limits.max_peers
            return (f"this host is already in a call ({n} peer{'s' if n > 1 else ''} at a time); "
                    "try again when it ends")
        self._half_open.discard(key)
        self._peers.add(key)
        return None

    def gate(self, key: Hashable, source: str) -> ConnectionGate:
        """What one connection's ``CallProtocol`` consults when its HELLO arrives."""
        return ConnectionGate(self, key, source)

    def _recent_failures(self, source: str, now: float) -> deque[float] | None:
        times = self._failures.get(source)
        if times is None:
            return None
        while times and times[0] <= now - self.limits.token_failure_window:
            times.popleft()
        if not times:
            del self._failures[source]
            return None
        return times


@dataclass(frozen=True)
class ConnectionGate:
    """The policy as one connection sees it (``nerfconf.net.protocol.HelloGate``)."""

    policy: AdmissionPolicy
    key: Hashable
    source: str

    def refuse_hello(self, now: float) -> str | None:
        return self.policy.refuse_hello(self.source, now)

    def token_failed(self, now: float) -> None:
        self.policy.token_failed(self.source, now)

    def refuse_peer(self) -> str | None:
        return self.policy.refuse_peer(self.key)

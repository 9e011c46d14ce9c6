"""The asyncio UDP relay around two :class:`LinkModel` directions; loopback only.

Peers send to the relay's address instead of the server's. Each client
address gets its own upstream socket (like a NAT), so replies find their way
back; like a NAT's, a mapping that has been idle for a while gives way to a
new client when the table is full. Both directions of all clients share one
bottleneck per direction.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from functools import partial
from typing import Any

from nerfconf.net.errors import NetemError
from nerfconf.net.netem.link import LinkModel, LinkSpec, LinkStats

#: upstream sockets (one per client address) the relay keeps open
MAX_CLIENTS = 64
#: seconds without a packet either way (or one on its way) after which a client's socket may be
#: closed to make room for a new client; as a NAT's UDP mapping, and under QUIC's 60 s idle timeout
CLIENT_IDLE_S = 30.0


def check_loopback(host: str, what: str) -> str:
    """The host as an IP string, if it is a loopback address; NetemError otherwise."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise NetemError(f"{what} {host!r} is not an IP address; the emulator only uses loopback "
                         "addresses (127.0.0.0/8, ::1)") from None
    if not address.is_loopback:
        raise NetemError(f"{what} {host} is not a loopback address; the emulator never touches a real network")
    return str(address)


@dataclass(frozen=True)
class RelayStats:
    #: client -> server
    up: LinkStats
    #: server -> client
    down: LinkStats
    clients: int
    refused_clients: int
    #: idle clients whose socket was closed to make room for a new one
    expired_clients: int


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Any) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None
        #: what is due to go out before the socket is open (a new client's first packets)
        self.pending: list[tuple[bytes, Any]] = []
        #: loop time of the last packet through this side, or of the last one due on it
        self.active_until = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for data, dest in self.pending:
            self.transport.sendto(data, dest)
        self.pending.clear()

    def send(self, data: bytes, dest: Any) -> None:
        if self.transport is None:
            self.pending.append((data, dest))
        elif not self.transport.is_closing():
            self.transport.sendto(data, dest)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_packet(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while a peer restarts: the emulated link just loses the packet


class NetemRelay:
    def __init__(
        self,
        target: tuple[str, int],
        up: LinkSpec,
        down: LinkSpec,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        seed: int = 0,
        client_idle_s: float = CLIENT_IDLE_S,
    ) -> None:
        self.target = (check_loopback(target[0], "target"), int(target[1]))
        self.listen_host = check_loopback(listen[0], "listen address")
        self.listen_port = int(listen[1])
        self.up = LinkModel(up, seed=seed * 2 + 1)
        self.down = LinkModel(down, seed=seed * 2 + 2)
        self._front: _Side | None = None
        self._upstream: dict[Any, _Side] = {}
        self._refused = 0
        self._expired = 0
        self.client_idle_s = client_idle_s
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handles: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._front is None or self._front.transport is None:
            raise RuntimeError("the relay is not started")
        host, port = self._front.transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> NetemRelay:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        try:
            _, protocol = await self._loop.create_datagram_endpoint(
                lambda: _Side(self._from_client), local_addr=(self.listen_host, self.listen_port), family=family)
        except OSError as exc:
            raise NetemError(f"cannot listen on {self.listen_host}:{self.listen_port}: {exc.strerror or exc}") from exc
        self._front = protocol
        return self

    def close(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for task in self._tasks:
            task.cancel()
        for side in self._upstream.values():
            if side.transport is not None:
                side.transport.close()
        self._upstream.clear()
        if self._front is not None and self._front.transport is not None:
            self._front.transport.close()

    async def __aenter__(self) -> NetemRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> RelayStats:
        return RelayStats(self.up.stats, self.down.stats, len(self._upstream), self._refused, self._expired)

    def _from_client(self, data: bytes, addr: Any) -> None:
        assert self._loop is not None
        side = self._upstream.get(addr)
        if side is None:
            if len(self._upstream) >= MAX_CLIENTS:
                self._expire_idle_clients()
            if len(self._upstream) >= MAX_CLIENTS:
                self._refused += 1
                return
            side = _Side(None)
            side.on_packet = partial(self._from_server, addr, side)
            self._upstream[addr] = side
            family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
            # the socket opens in a task; what is due before it is open waits in side.pending
            task = self._loop.create_task(self._open_upstream(addr, side, family))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._schedule(self.up, data, side, self.target, side)

    def _from_server(self, client: Any, side: _Side, data: bytes, _addr: Any) -> None:
        self._schedule(self.down, data, self._front, client, side)

    async def _open_upstream(self, addr: Any, side: _Side, family: int) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_datagram_endpoint(lambda: side, local_addr=(self.target[0], 0), family=family)
        except OSError:  # out of ports or file descriptors: the client's packets are lost, as on a full NAT
            side.pending.clear()
            if self._upstream.get(addr) is side:
                del self._upstream[addr]

    def _expire_idle_clients(self) -> None:
        assert self._loop is not None
        idle_since = self._loop.time() - self.client_idle_s
        for addr, side in list(self._upstream.items()):
            if side.active_until < idle_since and side.transport is not None:
                side.transport.close()
                del self._upstream[addr]
                self._expired += 1

    def _schedule(self, link: LinkModel, data: bytes, via: _Side | None, dest: Any, client: _Side | None) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if client is not None:
            client.active_until = max(client.active_until, now)
        delivery = link.submit(now - self._t0, len(data))
        if delivery is None:
            return
        if client is not None:
            client.active_until = max(client.active_until, self._t0 + delivery)
        handle: asyncio.TimerHandle | None = None

        def send() -> None:
            self._handles.discard(handle)  # type: ignore[arg-type]
            if via is not None:
                via.send(data, dest)

        handle = self._loop.call_at(self._t0 + delivery, send)
        self._handles.add(handle)

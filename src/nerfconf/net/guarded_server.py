"""aioquic's ``QuicServer`` with address validation on, and the admission policy asked before a connection exists.

With ``retry=True`` aioquic answers an Initial that carries no token with a stateless Retry,
and one whose token does not validate with a stateless close: neither creates a connection,
so a flood from spoofed addresses leaves no state behind. What remains is an Initial with a
valid token, from an address that has shown it receives our packets: before aioquic makes a
connection of it, :class:`AdmissionPolicy` may refuse it (too many half-open connections, or
too many from its source), and the refusal goes back as a stateless CONNECTION_CLOSE with a
reason the client shows. Every connection made is counted until aioquic reports it gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY, NetworkAddress
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder

from nerfconf.net.admission import AdmissionPolicy, source_of

#: a reason phrase longer than this is cut (a close fits one minimal Initial with room to spare)
MAX_REASON_BYTES = 200


def encode_refusal(header: QuicHeader, reason: str) -> bytes:
    """A server Initial closing the connection ``header`` asked for with CONNECTION_REFUSED and ``reason``.

    Initial keys come from the client's chosen destination connection ID, so the client can read it.
    """
    crypto = CryptoPair()
    crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
    builder = QuicPacketBuilder(host_cid=header.destination_cid, is_client=False,
                                max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE, peer_cid=header.source_cid,
                                version=header.version)
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    phrase = reason.encode()[:MAX_REASON_BYTES]
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY + len(phrase))
    buf.push_uint_var(QuicErrorCode.CONNECTION_REFUSED)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(len(phrase))
    buf.push_bytes(phrase)
    datagrams, _ = builder.flush()
    return datagrams[0]


class GuardedQuicServer(QuicServer):
    """``QuicServer(retry=True)`` whose new connections go through ``policy``; make it with :func:`serve_guarded`."""

    def __init__(self, *, policy: AdmissionPolicy, **kwargs: Any) -> None:
        super().__init__(retry=True, **kwargs)
        self.policy = policy
        #: validated Initials turned away by the policy
        self.refused_connections = 0

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        header = self._validated_new_connection(data, addr)  # type: ignore[arg-type]
        if header is None:
            super().datagram_received(data, addr)
            return
        source = source_of(addr)
        reason = self.policy.refuse_connection(source)
        if reason is not None:
            self.refused_connections += 1
            self._transport.sendto(encode_refusal(header, reason), addr)  # type: ignore[union-attr]
            return
        super().datagram_received(data, addr)
        protocol = self._protocols.get(header.destination_cid)
        if protocol is not None:
            self.policy.opened(protocol, source)
            protocol.call.gate = self.policy.gate(protocol, source)  # type: ignore[attr-defined]

    def _validated_new_connection(self, data: bytes, addr: NetworkAddress) -> QuicHeader | None:
        """The header of an Initial aioquic would make a new connection of (its Retry token valid), else None."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self._configuration.connection_id_length)
        except ValueError:
            return None
        if (header.packet_type != QuicPacketType.INITIAL or not header.token or len(data) < SMALLEST_MAX_DATAGRAM_SIZE
                or header.version not in self._configuration.supported_versions
                or header.destination_cid in self._protocols):
            return None
        try:
            self._retry.validate_token(address=addr, destination_cid=header.destination_cid,  # type: ignore[union-attr]
                                       token=header.token, now=self._loop.time())
        except ValueError:
            return None  # aioquic answers it with a stateless INVALID_TOKEN close
        return header

    def _connection_terminated(self, protocol: Any) -> None:
        super()._connection_terminated(protocol)
        self.policy.closed(protocol)


async def serve_guarded(host: str, port: int, *, policy: AdmissionPolicy, **kwargs: Any) -> GuardedQuicServer:
    """aioquic's ``serve`` with :class:`GuardedQuicServer` (``kwargs``: its ``configuration``, ``create_protocol``)."""
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(lambda: GuardedQuicServer(policy=policy, **kwargs),
                                                    local_addr=(host, port))
    return server

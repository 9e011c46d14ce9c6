"""The listening endpoint under strangers, over real loopback sockets: fake Initials, half-open
connections, many connections from one source. Sources other than 127.0.0.1 are other loopback
addresses (127.0.1.x), which Linux answers for without set-up."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from dataclasses import replace

import pytest
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header

from nerfconf.bench.flood import fake_initial, send_flood
from nerfconf.net import Feedback, ServerBusyError, TransportConfig, connect, listen
from nerfconf.net.admission import AdmissionLimits
from nerfconf.net.certs import PEER_NAME
from nerfconf.net.connection import ALPN
from tests.net.helpers import frame


@pytest.fixture
def config(tmp_path):
    return TransportConfig(identity_dir=tmp_path / "identity")


class RawClient(QuicConnectionProtocol):
    """A QUIC client that completes TLS and then says nothing: a half-open connection to our server."""

    # aioquic's wait_connected() hangs when called after the handshake completed: this does not
    handshake_done = False
    terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self.handshake_done = True
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event


async def raw_client(port: int, source: str) -> RawClient:
    qc = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name=PEER_NAME, verify_mode=ssl.CERT_NONE)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(lambda: RawClient(QuicConnection(configuration=qc)),
                                                    local_addr=(source, 0))
    client.connect(("127.0.0.1", port))
    return client


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_initials_without_a_valid_token_get_a_stateless_answer_and_make_no_connection(config):
    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            loop = asyncio.get_running_loop()
            rng = random.Random(1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                s.connect(("127.0.0.1", server.join_info.port))
                answers = []
                for token in (b"", rng.randbytes(40)):
                    await loop.sock_sendall(s, fake_initial(rng, token=token))
                    reply = await asyncio.wait_for(loop.sock_recv(s, 2048), 2)
                    answers.append(pull_quic_header(Buffer(data=reply), host_cid_length=8).packet_type)
            assert answers == [QuicPacketType.RETRY, QuicPacketType.INITIAL]  # a Retry; a close (INVALID_TOKEN)
            assert server.connections == 0 and server.admission.connections == 0

    asyncio.run(main())


def test_a_bounded_flood_leaves_no_state_and_a_peer_still_joins_and_talks(config):
    """3000 fake Initials in 1.5 s from 8 addresses, half of them with forged tokens, while a peer joins."""

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            loop = asyncio.get_running_loop()
            port = server.join_info.port
            flood = loop.run_in_executor(None, lambda: send_flood(port, 3000, 1.5, sources=8, tokens=True))
            peak = 0

            async def watch():
                nonlocal peak
                while True:
                    peak = max(peak, server.connections)
                    await asyncio.sleep(0.005)

            watcher = loop.create_task(watch())
            await asyncio.sleep(0.2)
            async with connect(server.join_info, config) as client:
                peer = await asyncio.wait_for(server.accept(), 5)
                acks: list[int] = []
                client.on_feedback(lambda fb: acks.extend(fb.acks))
                up, down = set(), set()

                async def receive(conn, into, ack):
                    while True:
                        got = await conn.recv_frame()
                        into.add(got.seq)
                        if ack:
                            conn.send_feedback(Feedback(acks=(got.seq,)))

                receivers = [loop.create_task(receive(peer, up, True)), loop.create_task(receive(client, down, False))]
                for seq in range(40):  # a call at 50 fps both ways; the kernel may drop a few under the flood
                    client.send_frame(frame(seq))
                    peer.send_frame(frame(100 + seq))
                    await asyncio.sleep(0.02)
                sent = await flood
                await asyncio.sleep(0.3)
                for task in receivers:
                    task.cancel()
                assert len(up) >= 36 and len(down) >= 36
                # feedback flows: the newest ack rides in each of the peer's frame datagrams (the newest
                # only, the encoder needs no other), and the last one leaves on its own
                await until(lambda: max(acks, default=-1) == max(up))
                assert len(set(acks)) >= 30
                assert client.is_open and peer.is_open
            watcher.cancel()
            assert sent.packets_sent == 3000
            assert sent.replies >= 300  # the server read the flood (and answered it statelessly)
            assert peak == 1  # the peer's connection, and nothing for the flood
            assert server.admission.half_open == 0 and server.refused_connections == 0

    asyncio.run(main())


def test_half_open_connections_are_capped_and_closed_after_the_auth_timeout(config):
    # long enough for two refusals to reach their clients (aioquic reports a close after 3 PTOs, 0.6 s here)
    config = replace(config, auth_timeout=2.0)

    async def main():
        limits = AdmissionLimits(max_half_open=2, max_per_source=4)
        async with listen("127.0.0.1", 0, None, config, limits=limits) as server:
            port = server.join_info.port
            silent = [await raw_client(port, f"127.0.1.{k}") for k in (1, 2)]
            await until(lambda: all(c.handshake_done for c in silent))  # TLS done; no HELLO will follow
            assert server.admission.half_open == 2
            third = await raw_client(port, "127.0.1.3")
            await until(lambda: third.terminated is not None)
            assert third.terminated.error_code == QuicErrorCode.CONNECTION_REFUSED
            assert "too many connections in their handshake" in third.terminated.reason_phrase
            assert server.refused_connections == 1 and server.connections == 2
            with pytest.raises(ServerBusyError, match="cannot take this peer now: the server has too many"):
                async with connect(server.join_info, config):
                    pass
            assert server.refused_connections == 2
            assert all(c.terminated is None for c in silent)
            # the server drops the silent ones auth_timeout after their first packet
            await until(lambda: all(c.terminated is not None for c in silent), timeout=4)
            await until(lambda: server.connections == 0 and server.admission.half_open == 0)
            async with connect(server.join_info, config):
                await asyncio.wait_for(server.accept(), 5)
            for c in (*silent, third):
                c._transport.close()

    asyncio.run(main())


def test_connections_from_one_source_are_capped(config):
    async def main():
        limits = AdmissionLimits(max_half_open=8, max_per_source=2)
        async with listen("127.0.0.1", 0, None, config, limits=limits) as server:
            port = server.join_info.port
            mine = [await raw_client(port, "127.0.1.1") for _ in range(3)]
            await until(lambda: mine[2].terminated is not None)
            assert mine[2].terminated.reason_phrase == "too many connections from 127.0.1.1 (2 at most)"
            await until(lambda: mine[0].handshake_done and mine[1].handshake_done)
            assert mine[0].terminated is None and mine[1].terminated is None
            async with connect(server.join_info, config) as client:  # from 127.0.0.1: another source
                peer = await asyncio.wait_for(server.accept(), 5)
                client.send_frame(frame(7))
                assert (await asyncio.wait_for(peer.recv_frame(), 2)).seq == 7
            for c in mine:
                c._transport.close()

    asyncio.run(main())

"""Real QUIC calls over loopback, end to end through the asyncio layer and real sockets.

The protocol's logic is tested in memory with a fake clock in ``test_protocol.py``."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

import pytest

from nerfconf.net import (
    AuthenticationError,
    ConnectionClosedError,
    Feedback,
    FingerprintMismatchError,
    JoinInfo,
    ServerBusyError,
    TransportConfig,
    connect,
    listen,
)
from nerfconf.net.admission import AdmissionLimits
from nerfconf.net.netem import LinkSpec, NetemRelay
from tests.net.helpers import frame


@pytest.fixture
def config(tmp_path):
    return TransportConfig(identity_dir=tmp_path / "identity")


async def _collect(conn, n, timeout=5.0):
    out = []
    while len(out) < n:
        out.append(await asyncio.wait_for(conn.recv_frame(), timeout))
    return out


@pytest.mark.parametrize("mode", ["datagram", "stream"])
def test_clean_call_delivers_every_frame_in_order_both_ways(config, mode):
    config = replace(config, mode=mode)

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(str(server.join_info), config) as client:
                peer = await asyncio.wait_for(server.accept(), 5)
                for seq in range(40):
                    client.send_frame(frame(seq))
                    peer.send_frame(frame(1000 + seq))
                    await asyncio.sleep(0.005)
                up, down = await _collect(peer, 40), await _collect(client, 40)
                assert [f.seq for f in up] == list(range(40))
                assert [f.data for f in up] == [frame(s).data for s in range(40)]
                assert [f.seq for f in down] == list(range(1000, 1040))
                stats = client.stats()
                assert stats.frames_sent == 40 and stats.frames_received == 40
                assert stats.payload_bytes_sent == sum(len(frame(s).data) for s in range(40))
                assert stats.wire_bytes_sent > stats.payload_bytes_sent
                assert stats.wire_bytes_received > 0 and stats.packets_received > 0

    asyncio.run(main())


def test_feedback_reaches_the_attached_encoder_and_callback(config):
    class Encoder:
        def __init__(self):
            self.acks, self.iframes = [], 0

        def acknowledge(self, seq):
            self.acks.append(seq)

        def request_iframe(self):
            self.iframes += 1

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as client:
                peer = await asyncio.wait_for(server.accept(), 5)
                encoder, seen = Encoder(), []
                client.attach_encoder(encoder)
                client.on_feedback(seen.append)
                peer.send_feedback(Feedback(acks=(5, 6)))
                peer.send_feedback(Feedback(iframe_request=True))
                for _ in range(100):
                    if encoder.iframes and len(encoder.acks) == 2:
                        break
                    await asyncio.sleep(0.01)
                assert encoder.acks == [5, 6] and encoder.iframes == 1
                assert any(f.iframe_request for f in seen)
                assert peer.stats().acks_sent == 2 and client.stats().acks_received == 2

    asyncio.run(main())


def test_seeded_ten_percent_loss_stays_under_the_bound(config):
    """Datagram mode, copies 3, 10 % loss both ways at RTT 20 ms: <= 0.5 % frames lost."""

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            spec = LinkSpec(delay_ms=10, loss=0.10)
            async with NetemRelay(("127.0.0.1", server.join_info.port), spec, spec, seed=7) as relay:
                join = replace(server.join_info, host=relay.address[0], port=relay.address[1])
                async with connect(join, config) as client:
                    peer = await asyncio.wait_for(server.accept(), 5)
                    n = 100
                    for seq in range(n):
                        client.send_frame(frame(seq))
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.3)
                    got = []
                    while True:
                        try:
                            got.append((await asyncio.wait_for(peer.recv_frame(), 0.05)).seq)
                        except TimeoutError:
                            break
                    assert len(set(got)) == len(got)  # each frame delivered once
                    assert n - len(got) <= 0.005 * n
                    assert relay.stats().up.lost >= 5  # the link really lost packets
                    assert peer.stats().recovered_from_copies + peer.stats().frames_received >= len(got)

    asyncio.run(main())


def test_wrong_token_is_refused_on_both_sides(config, caplog):
    async def main():
        async with listen("127.0.0.1", 0, "the-right-token", config) as server:
            bad = replace(server.join_info, token="the-wrong-token")
            with pytest.raises(AuthenticationError, match="wrong room token"):
                async with connect(bad, config):
                    pass
            assert any("wrong room token" in r for r in server.refusals)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert "wrong room token" in caplog.text


def test_wrong_tokens_from_one_address_are_rate_limited(config):
    async def main():
        limits = AdmissionLimits(max_token_failures=2, token_failure_window=60.0)
        async with listen("127.0.0.1", 0, "the-right-token", config, limits=limits) as server:
            bad = replace(server.join_info, token="a-guessed-token")
            for _ in range(2):
                with pytest.raises(AuthenticationError, match="wrong room token"):
                    async with connect(bad, config):
                        pass
            # the right token is not even looked at until the window has passed
            with pytest.raises(AuthenticationError, match=r"too many wrong room tokens from 127\.0\.0\.1; try again in"):
                async with connect(server.join_info, config):
                    pass
            assert "too many wrong room tokens" in server.refusals[-1]

    asyncio.run(main())


def test_peers_beyond_the_one_in_the_call_are_refused_as_busy_not_parked(config):
    """Four peers with the right token (the most one address may hold); the application takes one, the
    others hear why they cannot join."""

    async def try_join(join):
        try:
            async with connect(join, config):
                return "joined"
        except ServerBusyError as exc:
            return str(exc)

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as first:
                peer = await asyncio.wait_for(server.accept(), 5)
                outcomes = await asyncio.gather(*(try_join(server.join_info) for _ in range(3)))
                for outcome in outcomes:
                    assert outcome.startswith("the server cannot take this peer now: this host is already in a call")
                assert sum("already in a call" in r for r in server.refusals) == 3
                for _ in range(100):
                    if server.connections == 1:
                        break
                    await asyncio.sleep(0.02)
                assert server.connections == 1 and server._accepted.empty()  # nobody parked
                first.send_frame(frame(3))
                assert (await asyncio.wait_for(peer.recv_frame(), 2)).seq == 3
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(peer.recv_frame(), 2)  # the first peer left
            async with connect(server.join_info, config):  # its place is free again
                await asyncio.wait_for(server.accept(), 5)

    asyncio.run(main())


def test_wrong_fingerprint_is_refused_on_both_sides(config):
    """Every listener answers a first Initial with a Retry, after which aioquic makes a fresh TLS
    context: the pin must hold on that one too."""

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            bad = JoinInfo(server.join_info.host, server.join_info.port, "00" * 32, server.join_info.token)
            with pytest.raises(FingerprintMismatchError, match="pins 0000"):
                async with connect(bad, config):
                    pass
            for _ in range(100):
                if server.refusals:
                    break
                await asyncio.sleep(0.02)
            assert any("rejected this server's certificate" in r for r in server.refusals)

    asyncio.run(main())


def test_identity_is_cached_between_servers(config):
    async def fingerprint():
        async with listen("127.0.0.1", 0, None, config) as server:
            return server.join_info.fingerprint

    assert asyncio.run(fingerprint()) == asyncio.run(fingerprint())


def test_hostile_peer_cannot_crash_the_receiver_or_grow_its_memory(config):
    """An authenticated peer sends garbage datagrams, oversize frames, stream garbage and a flood."""
    config = replace(config, recv_queue=64)

    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as client:
                victim = await asyncio.wait_for(server.accept(), 5)
                quic = client._p._quic
                rng = random.Random(0)
                for i in range(600):
                    quic.send_datagram_frame(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1100))))
                    if i % 50 == 0:
                        client._p.transmit()
                        await asyncio.sleep(0.005)
                # a length prefix promising more than the frame limit
                quic.send_datagram_frame(bytes((0xFF, 0x7F)) + b"x" * 1000)
                # stream garbage with no delimiter, far past the frame limit
                stream = quic.get_next_available_stream_id(is_unidirectional=True)
                for _ in range(20):
                    quic.send_stream_data(stream, b"\x00" * 3000)
                    client._p.transmit()
                    await asyncio.sleep(0.005)
                # a flood of valid frames nobody reads
                for seq in range(3000):
                    client.send_frame(frame(seq))
                    if seq % 100 == 0:
                        await asyncio.sleep(0.005)
                await asyncio.sleep(0.3)
                stats = victim.stats()
                assert victim.is_open
                assert stats.malformed >= 500
                assert stats.recv_overflow > 0
                assert victim.buffered_bytes() <= 64 * 1024 + 4096
                # the call still works afterwards
                while True:
                    try:
                        victim._p._received.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                client.send_frame(frame(9999))
                got = await asyncio.wait_for(victim.recv_frame(), 2)
                assert got.seq == 9999

    asyncio.run(main())


def test_control_stream_violation_closes_only_that_connection(config):
    async def main():
        async with listen("127.0.0.1", 0, None, config) as server:
            async with connect(server.join_info, config) as hostile:
                victim = await asyncio.wait_for(server.accept(), 5)
                hostile._p._quic.send_stream_data(0, bytes((4, 0xFF, 0xFF)))  # declares 64 KiB
                hostile._p.transmit()
                with pytest.raises(ConnectionClosedError):
                    await asyncio.wait_for(victim.recv_frame(), 3)
                assert "protocol violation" in victim.close_reason
            async with connect(server.join_info, config) as client:  # the server still serves others
                peer = await asyncio.wait_for(server.accept(), 5)
                client.send_frame(frame(1))
                assert (await asyncio.wait_for(peer.recv_frame(), 2)).seq == 1

    asyncio.run(main())

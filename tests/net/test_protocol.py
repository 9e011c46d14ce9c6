"""The sans-I/O call protocol: two ``CallProtocol``s over real aioquic ``QuicConnection``s (TLS
included), wired together in memory and driven by a fake clock, as aioquic's own tests do."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from nerfconf.net import ConnectionClosedError, Feedback, TransportConfig
from nerfconf.net.admission import AdmissionLimits, AdmissionPolicy
from nerfconf.net.certs import PEER_NAME, generate_identity
from nerfconf.net.messages import Hello, encode_message
from nerfconf.net.protocol import (
    ALPN,
    CONTROL_STREAM,
    CallProtocol,
    CloseCode,
    Closed,
    FeedbackReceived,
    FrameReceived,
    HelloGate,
    Opened,
    Refused,
    State,
)
from tests.net.helpers import frame

CLIENT_ADDR = ("10.0.0.1", 4433)
SERVER_ADDR = ("10.0.0.2", 4433)
IDENTITY = generate_identity()


class Sink:
    def __init__(self) -> None:
        self.acks: list[int] = []
        self.iframes = 0

    def acknowledge(self, seq: int) -> None:
        self.acks.append(seq)

    def request_iframe(self) -> None:
        self.iframes += 1


class Wire:
    """A client and a server joined by a lossless in-memory link (``drop`` decides losses)."""

    def __init__(self, config: TransportConfig | None = None, *, client_token: str = "room",
                 server_token: str = "room", raw_client: bool = False, gate: HelloGate | None = None,
                 drop: Callable[[str, bytes], bool] | None = None) -> None:
        self.config = config or TransportConfig()
        self.now = 1000.0
        common = {"alpn_protocols": [ALPN], "max_datagram_frame_size": 1300, "idle_timeout": self.config.idle_timeout}
        cc = QuicConfiguration(is_client=True, server_name=PEER_NAME, verify_mode=ssl.CERT_NONE, **common)
        sc = QuicConfiguration(is_client=False, certificate=IDENTITY.certificate, private_key=IDENTITY.private_key,
                               **common)
        qc = QuicConnection(configuration=cc)
        qs = QuicConnection(configuration=sc, original_destination_connection_id=qc.original_destination_connection_id)
        self.client = None if raw_client else CallProtocol(qc, self.config, client_token)
        self.client_quic = qc
        self.server = CallProtocol(qs, self.config, server_token)
        self.server.gate = gate
        self.events: dict[str, list] = {"client": [], "server": []}
        #: (direction "up" / "down", datagram) -> True to lose it
        self.drop: Callable[[str, bytes], bool] = drop or (lambda direction, data: False)
        self.datagrams = {"up": 0, "down": 0}
        self.server.start(self.now)  # as the asyncio layer does when the first packet makes the connection
        qc.connect(SERVER_ADDR, now=self.now)
        self.pump()

    def _ends(self):
        return (("client", self.client_quic, self.client), ("server", self.server.quic, self.server))

    def pump(self) -> None:
        """Moves datagrams both ways and hands out events until the link is quiet."""
        for _ in range(100):
            moved = 0
            for direction, src, dst, addr in (("up", self.client_quic, self.server.quic, CLIENT_ADDR),
                                              ("down", self.server.quic, self.client_quic, SERVER_ADDR)):
                for data, _ in src.datagrams_to_send(now=self.now):
                    moved += 1
                    self.datagrams[direction] += 1
                    if not self.drop(direction, data):
                        dst.receive_datagram(data, addr, now=self.now)
                        self._hand_out_events(dst)  # each datagram's events, then the call is told
            for _, quic, _ in self._ends():
                self._hand_out_events(quic, datagram=False)
            if not moved:
                return
        raise AssertionError("the link never went quiet")

    def _hand_out_events(self, quic: QuicConnection, datagram: bool = True) -> None:
        name, call = next((n, c) for n, q, c in self._ends() if q is quic)
        while (event := quic.next_event()) is not None:
            if call is not None:
                self.events[name] += call.handle_event(event, self.now)
        if datagram and call is not None:
            call.datagram_received()

    def advance(self, seconds: float) -> None:
        """Moves the clock, firing every QUIC and protocol timer due on the way, in order."""
        target = self.now + seconds
        self.pump()  # what the last call queued leaves first, as the asyncio layer transmits after each
        while True:
            due = []
            for name, quic, call in self._ends():
                if quic.get_timer() is not None:
                    due.append((quic.get_timer(), "quic", name))
                if call is not None and call.get_timer() is not None:
                    due.append((call.get_timer(), "call", name))
            due = [d for d in due if d[0] <= target]
            if not due:
                break
            when, kind, name = min(due)
            # an event loop fires a timer just after it is due; aioquic takes an ACK due exactly
            # now as not due yet when its pacer holds the packet, and would be woken forever
            self.now = max(self.now, when + 1e-6)
            quic, call = {n: (q, c) for n, q, c in self._ends()}[name]
            if kind == "quic":
                quic.handle_timer(now=self.now)
            else:
                self.events[name] += call.handle_timer(self.now)
            self.pump()
        self.now = target
        self.pump()

    def of(self, name: str, kind: type) -> list:
        return [e for e in self.events[name] if isinstance(e, kind)]


def opened(config: TransportConfig | None = None) -> Wire:
    wire = Wire(config)
    wire.advance(0.01)
    assert wire.client.state == wire.server.state == State.OPEN
    return wire


def test_the_right_token_opens_both_ends():
    wire = opened(TransportConfig(copies=2))
    assert wire.of("client", Opened) == [Opened(2)] and wire.of("server", Opened) == [Opened(2)]
    assert wire.client.stats().control_bytes_sent > 0


@pytest.mark.parametrize("mode", ["datagram", "stream"])
def test_frames_arrive_in_order_both_ways(mode):
    wire = opened(TransportConfig(mode=mode))
    for seq in range(20):
        wire.client.send_frame(frame(seq), None, wire.now)
        wire.server.send_frame(frame(500 + seq), None, wire.now)
        wire.advance(0.05)
    up = [e.frame for e in wire.of("server", FrameReceived)]
    down = [e.frame for e in wire.of("client", FrameReceived)]
    assert [f.seq for f in up] == list(range(20)) and [f.seq for f in down] == list(range(500, 520))
    assert [f.data for f in up] == [frame(s).data for s in range(20)]
    stats = wire.server.stats()
    assert stats.frames_received == 20 and stats.payload_bytes_received == sum(len(frame(s).data) for s in range(20))


def test_a_wrong_token_is_refused_on_both_sides_and_closes():
    wire = Wire(client_token="wrong", server_token="right")
    wire.advance(0.01)
    assert wire.of("server", Refused) == [Refused("wrong room token")]
    assert wire.of("client", Refused) == [Refused("the server refused this peer: wrong room token")]
    assert not wire.of("server", Opened) and not wire.of("client", Opened)
    wire.advance(5.0)  # aioquic's closing period
    assert wire.client.state == wire.server.state == State.CLOSED
    with pytest.raises(ConnectionClosedError, match="wrong room token"):
        wire.client.send_frame(frame(1), None, wire.now)


def test_a_foreign_protocol_version_is_refused():
    wire = Wire(raw_client=True)
    wire.advance(0.01)
    wire.client_quic.send_stream_data(CONTROL_STREAM, encode_message(Hello("room", 3, version=99)))
    wire.advance(0.01)
    (refused,) = wire.of("server", Refused)
    assert "protocol version 99 is not supported" in refused.reason


def test_a_silent_peer_is_dropped_after_the_auth_timeout():
    config = TransportConfig(auth_timeout=0.5)
    wire = Wire(config, raw_client=True)  # completes TLS, never says HELLO
    wire.advance(0.4)
    assert wire.server.state == State.AUTHENTICATING
    wire.advance(0.2)
    assert wire.server.state in (State.CLOSING, State.CLOSED)
    assert wire.server.close_reason == "the peer did not authenticate in time"
    wire.advance(5.0)
    assert wire.of("server", Closed)


def test_frames_before_authentication_are_not_delivered():
    wire = Wire(raw_client=True)
    wire.advance(0.01)
    wire.client_quic.send_datagram_frame(b"\x00" * 40)
    stream = wire.client_quic.get_next_available_stream_id(is_unidirectional=True)
    wire.client_quic.send_stream_data(stream, b"\x00" * 40)
    wire.advance(0.01)
    assert not wire.of("server", FrameReceived) and wire.server.state == State.AUTHENTICATING


@pytest.mark.parametrize("mode", ["datagram", "stream"])
def test_acks_wait_to_ride_with_the_next_frame(mode):
    wire = opened(TransportConfig(mode=mode, feedback_delay=0.06))
    sink = Sink()
    wire.client.feedback_sink = sink
    before = wire.datagrams["down"]
    control_before = wire.server.stats().control_bytes_sent
    wire.server.send_feedback(Feedback(acks=(5, 6)), wire.now)
    wire.advance(0.03)
    assert sink.acks == [] and wire.datagrams["down"] == before  # held back
    wire.server.send_frame(frame(1), None, wire.now)
    wire.pump()
    assert wire.datagrams["down"] == before + 1  # one packet: frame and acks
    control = wire.server.stats().control_bytes_sent - control_before
    if mode == "datagram":  # the newest ack, in the frame's datagram: 3 bytes, no control message
        assert sink.acks == [6] and control == 0
    else:
        assert sink.acks == [5, 6] and control > 0
    assert wire.of("client", FeedbackReceived)[0].feedback.acks == tuple(sink.acks)


def test_acks_leave_after_the_feedback_delay_without_a_frame():
    wire = opened(TransportConfig(feedback_delay=0.06))
    sink = Sink()
    wire.client.feedback_sink = sink
    wire.server.send_feedback(Feedback(acks=(9,)), wire.now)
    wire.advance(0.05)
    assert sink.acks == []
    wire.advance(0.02)
    assert sink.acks == [9]


def _call(wire: Wire, frames: range) -> None:
    """Both ends send a frame every 50 ms, the server half a frame after the client; each acks what it gets."""
    seen = {"client": 0, "server": 0}
    for k in frames:
        for name in ("client", "server"):
            getattr(wire, name).send_frame(frame(k), None, wire.now)
            wire.advance(0.025)
            for end in ("client", "server"):
                got = wire.of(end, FrameReceived)[seen[end]:]
                seen[end] += len(got)
                if got:
                    getattr(wire, end).send_feedback(Feedback(acks=tuple(e.frame.seq for e in got)), wire.now)


def test_a_two_way_call_on_a_clean_link_sends_one_packet_per_frame():
    wire = opened()
    sinks = {"client": Sink(), "server": Sink()}
    wire.client.feedback_sink, wire.server.feedback_sink = sinks["client"], sinks["server"]
    _call(wire, range(20))  # the first second, copies included
    packets, duplicates = dict(wire.datagrams), wire.server.stats().duplicates + wire.client.stats().duplicates
    _call(wire, range(20, 60))
    # one packet per frame each way: the QUIC ACK and the peer's ack ride in it, and no copies
    assert wire.datagrams["up"] - packets["up"] == 40 and wire.datagrams["down"] - packets["down"] == 40
    assert wire.server.stats().duplicates + wire.client.stats().duplicates == duplicates
    assert wire.server.stats().frames_received == wire.client.stats().frames_received == 60
    # acks reached the encoders; the server's last frame's ack still waits for a frame to ride with
    assert sinks["client"].acks[-1] == 59 and sinks["server"].acks[-1] == 58


def test_a_lost_datagram_turns_the_peers_copies_on():
    wire = opened()
    wire.advance(1.0)  # past the call's start, when every datagram carries copies
    lost = {"armed": False}

    def drop(direction: str, data: bytes) -> bool:
        if direction == "up" and lost["armed"] and len(data) > 40:  # the frame's packet, not an ACK
            lost["armed"] = False
            return True
        return False

    wire.drop = drop
    for seq in range(12):
        lost["armed"] = seq == 4
        wire.client.send_frame(frame(seq), None, wire.now)
        wire.advance(0.05)
    stats = wire.server.stats()
    assert sorted(e.frame.seq for e in wire.of("server", FrameReceived)) == list(range(12))
    assert stats.nacks_sent == 1  # 4 NACKed at 5: no copy could bring it
    assert stats.duplicates > 0  # 4 resent and in copies, and copies of every frame after the report


@pytest.mark.parametrize(("mode", "max_ack_delay"), [("datagram", 0.06), ("stream", 0.025)])
def test_our_ack_delay_is_the_peers_max_ack_delay(mode, max_ack_delay):
    # in stream mode the peer retransmits frames on our ACKs: they keep aioquic's timing (25 ms at most)
    wire = opened(TransportConfig(mode=mode, feedback_delay=0.06))
    assert wire.client.quic._loss.max_ack_delay == pytest.approx(max_ack_delay)
    assert wire.server.quic._loss.max_ack_delay == pytest.approx(max_ack_delay)


def test_a_packet_waits_for_its_ack_and_a_burst_does_not():
    wire = opened(TransportConfig(feedback_delay=0.06))
    wire.advance(1.0)
    up = wire.datagrams["up"]
    wire.server.send_frame(frame(1), None, wire.now)
    wire.pump()
    assert wire.datagrams["up"] == up  # its ACK waits to ride with the client's next packet
    wire.advance(0.061)
    assert wire.datagrams["up"] == up + 1  # none came: it leaves alone after the delay
    wire.server.send_frame(frame(2), None, wire.now)
    wire.pump()
    wire.server.send_frame(frame(3), None, wire.now)
    wire.pump()
    assert wire.datagrams["up"] == up + 2  # two packets: acknowledged at once


def test_a_packet_after_a_lost_one_is_acknowledged_at_once():
    wire = opened(TransportConfig(feedback_delay=0.06))
    wire.advance(1.0)
    lose = {"next": False}

    def drop(direction: str, data: bytes) -> bool:
        lost, lose["next"] = lose["next"], False
        return direction == "down" and lost

    wire.drop = drop
    lose["next"] = True
    wire.server.send_frame(frame(1), None, wire.now)
    wire.pump()
    up = wire.datagrams["up"]
    wire.advance(0.05)
    assert wire.datagrams["up"] == up  # nothing came: nothing to acknowledge
    wire.server.send_frame(frame(2), None, wire.now)
    wire.pump()
    assert wire.datagrams["up"] == up + 1  # a gap before it: its ACK leaves at once


def test_a_control_message_is_acknowledged_at_once_a_frame_datagram_waits():
    wire = opened(TransportConfig(feedback_delay=0.06))
    wire.advance(1.0)
    up = wire.datagrams["up"]
    wire.server.send_frame(frame(1), None, wire.now)
    wire.pump()
    assert wire.datagrams["up"] == up
    wire.advance(0.1)
    up = wire.datagrams["up"]
    wire.server.send_feedback(Feedback(iframe_request=True), wire.now)  # the peer retransmits it on our ACK
    wire.pump()
    assert wire.datagrams["up"] == up + 1


def test_an_iframe_request_leaves_at_once():
    wire = opened(TransportConfig(feedback_delay=1.0))
    sink = Sink()
    wire.client.feedback_sink = sink
    wire.server.send_feedback(Feedback(iframe_request=True), wire.now)
    wire.pump()
    assert sink.iframes == 1
    assert wire.server.stats().iframe_requests_sent == 1 and wire.client.stats().iframe_requests_received == 1


def test_a_lost_frame_is_nacked_and_retransmitted():
    wire = opened(TransportConfig(copies=1))  # no redundant copies: only a retransmission recovers it
    lost = {"armed": False}

    def drop(direction: str, data: bytes) -> bool:
        if direction == "up" and lost["armed"]:
            lost["armed"] = False
            return True
        return False

    wire.drop = drop
    for seq in range(6):
        lost["armed"] = seq == 2
        wire.client.send_frame(frame(seq), None, wire.now)
        wire.advance(0.02)
    got = sorted(e.frame.seq for e in wire.of("server", FrameReceived))
    assert got == list(range(6))
    assert wire.server.stats().nacks_sent >= 1 and wire.client.stats().retransmissions >= 1


def test_datagrams_past_their_deadline_leave_the_send_queue():
    wire = opened(TransportConfig(max_queued_datagrams=8))
    wire.drop = lambda direction, data: False
    quic = wire.client.quic
    # a stalled link: nothing is taken from aioquic's queue while frames keep coming
    for seq in range(30):
        wire.client.send_frame(frame(seq, body_len=200), wire.now + 0.1, wire.now)
        wire.now += 0.05
    assert len(quic._datagrams_pending) <= 8
    assert wire.client.stats().stale_datagrams_dropped >= 22


def test_a_control_stream_violation_closes_the_connection():
    wire = opened()
    wire.client.quic.send_stream_data(CONTROL_STREAM, bytes((4, 0xFF, 0xFF)))  # declares 64 KiB
    wire.advance(0.01)
    assert "protocol violation" in wire.server.close_reason
    wire.advance(5.0)
    assert wire.server.state == wire.client.state == State.CLOSED
    assert wire.of("client", Closed)


def test_a_second_media_stream_is_refused_and_the_call_goes_on():
    wire = opened(TransportConfig(mode="stream"))
    wire.client.send_frame(frame(1), None, wire.now)
    wire.advance(0.01)
    extra = wire.client.quic.get_next_available_stream_id(is_unidirectional=True)
    wire.client.quic.send_stream_data(extra, b"\x00" * 100)
    wire.advance(0.01)
    wire.client.send_frame(frame(2), None, wire.now)
    wire.advance(0.01)
    assert [e.frame.seq for e in wire.of("server", FrameReceived)] == [1, 2]
    assert wire.server.state == State.OPEN


def test_keepalives_hold_an_idle_call_open():
    config = TransportConfig(keepalive=5.0, idle_timeout=12.0)
    wire = opened(config)
    wire.advance(40.0)
    assert wire.client.state == wire.server.state == State.OPEN
    wire.client.send_frame(frame(3), None, wire.now)
    wire.advance(0.01)
    assert [e.frame.seq for e in wire.of("server", FrameReceived)] == [3]


def test_without_keepalives_the_idle_timeout_closes_it():
    config = TransportConfig(keepalive=50.0, idle_timeout=60.0)
    wire = opened(config)
    wire.client._keepalive_at = wire.server._keepalive_at = None  # as if keepalives were off
    wire.advance(90.0)
    assert wire.client.state == wire.server.state == State.CLOSED


def test_leaving_tells_the_peer_why():
    wire = opened()
    wire.client.leave("bye now", wire.now)
    wire.advance(5.0)
    assert wire.server.close_reason == "the peer left: bye now"
    assert wire.client.state == wire.server.state == State.CLOSED
    (closed,) = wire.of("server", Closed)
    assert not closed.by_peer_before_open


def test_feedback_is_not_sent_on_a_closed_call():
    wire = opened()
    wire.client.leave("done", wire.now)
    wire.advance(5.0)
    sent = wire.client.stats().acks_sent
    wire.client.send_feedback(Feedback(acks=(1,)), wire.now)
    assert wire.client.stats().acks_sent == sent


def test_a_peer_that_never_finishes_tls_is_dropped_after_the_auth_timeout():
    """The deadline runs from the connection's first packet, not from the end of TLS."""
    config = TransportConfig(auth_timeout=0.5)
    wire = Wire(config, drop=lambda direction, data: direction == "down")  # the client never hears the server
    wire.advance(0.4)
    assert wire.server.state == State.HANDSHAKE
    wire.advance(0.2)
    assert wire.server.state in (State.CLOSING, State.CLOSED)
    assert wire.server.close_reason == "the peer did not authenticate in time"
    wire.advance(5.0)
    assert wire.server.state == State.CLOSED


def _policy_gate(policy: AdmissionPolicy, key: str, source: str = CLIENT_ADDR[0]) -> HelloGate:
    policy.opened(key, source)
    return policy.gate(key, source)


def test_a_peer_the_application_cannot_take_is_refused_as_busy_not_welcomed():
    policy = AdmissionPolicy(AdmissionLimits(max_peers=1))
    assert _policy_gate(policy, "the peer in the call", "10.0.0.9").refuse_peer() is None
    wire = Wire(gate=_policy_gate(policy, "late peer"))
    wire.advance(0.01)
    assert not wire.of("client", Opened) and not wire.of("server", Opened)
    (refused,) = wire.of("server", Refused)
    assert "already in a call" in refused.reason
    wire.advance(5.0)
    (closed,) = wire.of("client", Closed)
    assert closed.by_peer_before_open and closed.code == CloseCode.BUSY
    assert closed.reason.startswith("the server cannot take this peer now: this host is already in a call")
    assert policy.peers == 1 and policy.half_open == 1  # counted until the endpoint reports it gone


def test_a_source_past_its_wrong_token_budget_is_refused_unread():
    policy = AdmissionPolicy(AdmissionLimits(max_token_failures=2, token_failure_window=60.0))
    for attempt in range(2):
        wire = Wire(client_token="guess-%d" % attempt, server_token="right", gate=_policy_gate(policy, attempt))
        wire.advance(0.01)
        assert wire.of("client", Refused) == [Refused("the server refused this peer: wrong room token")]
    wire = Wire(client_token="right", server_token="right", gate=_policy_gate(policy, "third"))
    wire.advance(0.01)
    (refused,) = wire.of("client", Refused)
    assert "too many wrong room tokens from 10.0.0.1; try again in 60 s" in refused.reason
    assert not wire.of("server", Opened)
    # another source is not held back
    wire = Wire(client_token="right", server_token="right", gate=_policy_gate(policy, "other", "10.0.0.7"))
    wire.advance(0.01)
    assert wire.of("server", Opened)

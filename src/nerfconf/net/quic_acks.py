"""QUIC ACKs that ride with our own packets instead of costing one packet each.

aioquic acknowledges every ack-eliciting packet 1 ms after it arrives and advertises a
max_ack_delay of 25 ms. In a call both peers send a frame every 50 ms, so each frame drew
a packet of its own back: an ACK-only packet of 62 bytes on the wire, 10 kbps per direction
at 20 fps, as much as the frames themselves. :class:`AckTiming` lets an ACK wait up to
``delay`` (one frame interval and some slack) and puts a pending one into each packet we
send anyway. The delay is advertised as the transport parameter max_ack_delay, so the
peer's loss detection allows for it. Only packets of datagrams wait: any other (stream
data: a control message, frames in stream mode, bytes held back behind a lost packet) is
acknowledged at once, since the peer retransmits its content on our ACKs and its time runs
on how fast they come; so is a second packet before we send (a burst: a video frame's
fragments, a retransmission), as RFC 9000 section 13.2.2 suggests, and a packet after a gap
(section 13.2.1), so the peer learns of a loss without the wait.

aioquic has no setting for either, so these reach into its connection: the ACK timer
(``_ack_delay``, each packet space's ``ack_at``) and the transport parameters it serializes.
"""

from __future__ import annotations

from aioquic.buffer import Buffer
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters
from aioquic.tls import Epoch

#: RFC 9000 section 18.2: max_ack_delay values of 2^14 ms or more are invalid
MAX_ACK_DELAY_MS = (1 << 14) - 1


#: packets that make a pending ACK due at once
ACK_EVERY = 2


class AckTiming:
    """When our QUIC ACKs leave (sans-I/O: it only sets aioquic's ACK timer; its owner transmits).

    ``delay`` None keeps aioquic's timing (1 ms, max_ack_delay 25 ms), as a peer sending frames on a
    stream wants: a longer advertised delay lengthens its probe timeout, and its tail recovery with it
    (p99 at 10 % loss 132 -> 182 ms)."""

    def __init__(self, quic: QuicConnection, delay: float | None) -> None:
        self.quic = quic
        self.delay = delay
        self._packets = 0
        self._cycle: float | None = None  # the ack_at of the ACK the packets counted wait for
        self._last_packet = -1
        if delay is not None:
            advertise_ack_delay(quic, delay)

    def handshake_done(self) -> None:
        if self.delay is not None:
            delay_acks(self.quic, self.delay)

    def packet_received(self, datagrams_only: bool) -> None:
        """A packet came and its events were handled; ``datagrams_only``: it brought DATAGRAM frames and
        nothing the peer retransmits (a packet not newer than the last one counts nothing)."""
        space = self.quic._spaces.get(Epoch.ONE_RTT)
        if space is None or space.largest_received_packet == self._last_packet:
            return
        self._last_packet = space.largest_received_packet
        if space.ack_at != self._cycle:  # a new ACK is pending: aioquic sent the last one on its timer
            self._cycle, self._packets = space.ack_at, 0
        self._packets += 1
        gap = self._last_packet > 0 and self._last_packet - 1 not in space.received_packets
        if not datagrams_only or self._packets >= ACK_EVERY or gap:
            ack_in_next_packet(self.quic)
            self._packets = 0  # the owner transmits now: what comes next waits for a new ACK

    def sending(self) -> None:
        """We queued something: the pending ACK goes in the same packet."""
        self._packets = 0
        ack_in_next_packet(self.quic)


def advertise_ack_delay(quic: QuicConnection, delay: float) -> None:
    """Makes ``quic`` tell its peer it may delay ACKs by ``delay`` seconds; call before the handshake."""
    ms = min(MAX_ACK_DELAY_MS, max(1, round(delay * 1000)))
    serialize = quic._serialize_transport_parameters

    def with_max_ack_delay() -> bytes:
        params = pull_quic_transport_parameters(Buffer(data=serialize()))
        params.max_ack_delay = ms
        buf = Buffer(capacity=4096)
        push_quic_transport_parameters(buf, params)
        return buf.data

    quic._serialize_transport_parameters = with_max_ack_delay  # type: ignore[method-assign]


def delay_acks(quic: QuicConnection, delay: float) -> None:
    """An ack-eliciting packet is acknowledged at most ``delay`` s after it arrives (once the handshake
    is done: aioquic's handshake ACKs must not wait)."""
    quic._ack_delay = delay


def ack_in_next_packet(quic: QuicConnection) -> None:
    """A pending ACK of 1-RTT packets goes into the next packet ``quic`` sends (aioquic only writes
    an ACK whose time has come)."""
    space = quic._spaces.get(Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.largest_received_time is not None:
        space.ack_at = min(space.ack_at, space.largest_received_time)

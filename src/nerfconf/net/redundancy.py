"""Datagram redundancy (sans-I/O): each datagram carries a frame and copies of the frames before it.

The sender's :class:`RedundantPacker` puts the newest frame first, then up to
``copies - 1`` earlier frames that are still before their playout deadline,
as long as the datagram stays under the size cap. The receiver's
:class:`FrameReassembler` delivers every sequence number once, whichever
datagram brought it, and names the frames that no later datagram can bring
any more, so the sender may retransmit them (a NACK).

Copies cost most of a datagram on a clean path, so the :class:`RedundancyPolicy`
adds them only while loss is seen: the receiver counts the sender's datagrams
that never came (a gap in the newest frames it received first-hand, recovered
or not), reports the count, and the sender carries copies for ``LOSS_HOLD_S``
after a report (and for ``START_HOLD_S`` after the call opens). The receiver's
NACK horizon follows the copies each datagram actually carries, so a lost frame
is NACKed at the next datagram when there are none; a NACKed frame is resent at
once and rides as a copy in the next datagrams too, so one more loss cannot take it.

A datagram may also carry the newest of the peer's frames its sender decoded, the
ack the peer's anchor prediction waits for: ``0xF2 | sequence number:2 | frames``.
That is 3 bytes where an ack on the control stream costs ~13 (a STREAM frame and
a FEEDBACK message) in every packet; a lost one is superseded by the next. A
frame datagram's first byte is a length (0x01..0x7F, 0x81..0x88) and a video
datagram's 0xF1 (:mod:`nerfconf.net.video_channel`), so 0xF2 is neither.

Sequence numbers are 16 bits and wrap; both sides extend them to unbounded
integers relative to the newest one seen, as RTP receivers do.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from nerfconf.codec.errors import BitstreamError
from nerfconf.codec.frame import (
    MAX_FRAME_BYTES,
    MAX_FRAMES_PER_DATAGRAM,
    SEQ_MODULO,
    pack_datagram,
    read_frame,
    unpack_datagram,
)

#: aioquic fits at most ~1170 B of DATAGRAM payload in a 1200 B packet; a bigger one blocks the queue forever
MAX_DATAGRAM_PAYLOAD = 1150
#: seconds datagrams keep carrying copies after the peer last reported a loss: on a lossy path the
#: next loss comes well within it (every ~1 s at 5 % and 20 datagrams/s), so copies stay while needed
LOSS_HOLD_S = 10.0
#: seconds a call starts with copies, before any report: a receiver cannot NACK frames older than
#: the first it sees, so only copies recover the first ones (later losses are NACKed, and the
#: report that comes with the NACK turns copies on)
START_HOLD_S = 0.5
#: the most datagrams one report counts (it travels in a byte)
MAX_REPORTED_LOSSES = 255
#: first byte of a frame datagram that starts with an ack
ACK_PREFIX = 0xF2


def _packed_size(frame: bytes) -> int:
    return len(frame) + (1 if len(frame) < 0x80 else 2)


@dataclass(frozen=True)
class _Sent:
    data: bytes
    deadline: float


class RedundancyPolicy:
    """Frames per datagram: the new one alone while the peer reports no loss, ``copies`` for
    ``hold_s`` after it reports some (``adaptive=False``: always ``copies``). Time is passed in."""

    def __init__(self, copies: int, *, adaptive: bool = True, hold_s: float = LOSS_HOLD_S) -> None:
        self.copies = copies
        self.adaptive = adaptive
        self.hold_s = hold_s
        self._copies_until = -math.inf

    def opened(self, now: float) -> None:
        self._copies_until = max(self._copies_until, now + START_HOLD_S)

    def loss_reported(self, lost: int, now: float) -> None:
        if lost > 0:
            self._copies_until = max(self._copies_until, now + self.hold_s)

    def copies_at(self, now: float) -> int:
        return self.copies if not self.adaptive or now < self._copies_until else 1


class RedundantPacker:
    """Builds the datagram for each new frame and answers retransmission requests."""

    def __init__(self, copies: int = 3, max_datagram: int = MAX_DATAGRAM_PAYLOAD, history: int = 64) -> None:
        if not 1 <= copies <= 16:
            raise ValueError(f"copies must be 1..16, got {copies}")
        if max_datagram < MAX_FRAME_BYTES + 2:
            raise ValueError(f"max_datagram must hold one whole frame ({MAX_FRAME_BYTES + 2} B)")
        self.copies = copies
        self.max_datagram = max_datagram
        self._history: OrderedDict[int, _Sent] = OrderedDict()
        self._capacity = max(history, copies)
        #: NACKed frames (16-bit sequence numbers) to add to the next datagrams, and how many more times
        self._resend: dict[int, int] = {}
        self.copies_skipped_stale = 0

    def pack(self, seq: int, data: bytes, deadline: float, now: float, copies: int | None = None,
             ack: int | None = None) -> bytes:
        """The datagram for new frame ``seq``: it, then the previous frames still worth sending, up to
        ``copies`` frames in all (default, and at most, the packer's ``copies``); ``ack`` (the newest
        of the peer's frames decoded here) goes in front."""
        if not 0 < len(data) <= MAX_FRAME_BYTES:
            raise ValueError(f"a frame is 1..{MAX_FRAME_BYTES} bytes, got {len(data)}")
        copies = self.copies if copies is None else max(1, min(copies, self.copies))
        frames = [data]
        size = _packed_size(data)
        for prev_seq in range(seq - 1, seq - copies, -1):
            sent = self._history.get(prev_seq % SEQ_MODULO)
            if sent is None:
                continue
            if sent.deadline < now:
                self.copies_skipped_stale += 1
                continue
            if size + _packed_size(sent.data) > self.max_datagram:
                break
            frames.append(sent.data)
            size += _packed_size(sent.data)
        for prev_seq in list(self._resend):
            sent = self._history.get(prev_seq)
            if sent is None or sent.deadline < now or sent.data in frames:
                del self._resend[prev_seq]
                continue
            if len(frames) == MAX_FRAMES_PER_DATAGRAM or size + _packed_size(sent.data) > self.max_datagram:
                break
            frames.append(sent.data)
            size += _packed_size(sent.data)
            self._resend[prev_seq] -= 1
            if self._resend[prev_seq] == 0:
                del self._resend[prev_seq]
        self._remember(seq, _Sent(data, deadline))
        if ack is None:
            return pack_datagram(frames)
        return bytes((ACK_PREFIX,)) + (ack % SEQ_MODULO).to_bytes(2, "big") + pack_datagram(frames)

    def retransmission(self, seqs: tuple[int, ...], now: float) -> bytes | None:
        """A datagram with those NACKed frames that can still make their deadline, if any."""
        frames: list[bytes] = []
        size = 0
        for seq in sorted(set(seqs), reverse=True):
            sent = self._history.get(seq % SEQ_MODULO)
            if sent is None or sent.deadline < now or size + _packed_size(sent.data) > self.max_datagram:
                continue
            frames.append(sent.data)
            size += _packed_size(sent.data)
            if self.copies > 1:
                self._resend[seq % SEQ_MODULO] = self.copies - 1
            if len(frames) == MAX_FRAMES_PER_DATAGRAM:
                break
        return pack_datagram(frames) if frames else None

    def _remember(self, seq: int, sent: _Sent) -> None:
        self._history.pop(seq, None)
        self._history[seq] = sent
        while len(self._history) > self._capacity:
            self._history.popitem(last=False)


@dataclass
class ReassemblyStats:
    datagrams: int = 0
    frames_new: int = 0
    #: new frames that arrived as a copy, not as the datagram's newest frame
    recovered_from_copies: int = 0
    duplicates: int = 0
    #: frames older than the dedupe window behind the newest one
    too_old: int = 0
    #: frames delivered after a newer one (reordered by the network, or recovered)
    out_of_order: int = 0
    malformed_datagrams: int = 0
    malformed_frames: int = 0
    nacks_sent: int = 0
    #: the sender's datagrams that never came: gaps in the frames that arrived first-hand
    datagrams_lost: int = 0


@dataclass(frozen=True)
class Reassembled:
    #: (sequence number, frame bytes) of frames never delivered before, oldest first
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    #: sequence numbers to NACK: missing, and too old for any later datagram's copies
    nacks: tuple[int, ...] = ()
    #: the newest of our frames the peer decoded, when the datagram carried it
    ack: int | None = None


class FrameReassembler:
    """Receiver side of datagram mode (and the dedupe for stream mode); memory bounded by ``window``."""

    def __init__(self, copies: int = 3, window: int = 512, nack_window: int = 16) -> None:
        self.copies = copies
        self.window = window
        self.nack_window = nack_window
        self._newest: int | None = None  # extended sequence number
        self._first: int | None = None
        self._seen: set[int] = set()
        self._nacked: set[int] = set()
        #: the newest frame that arrived first in its datagram, and how many frames that datagram held
        self._newest_primary: int | None = None
        self._span = copies
        self._unreported_losses = 0
        self.stats = ReassemblyStats()

    def receive_datagram(self, datagram: bytes) -> Reassembled:
        self.stats.datagrams += 1
        ack = None
        if datagram[:1] == bytes((ACK_PREFIX,)):
            ack, datagram = int.from_bytes(datagram[1:3], "big"), datagram[3:]
        try:
            frames = unpack_datagram(datagram)
        except BitstreamError:
            self.stats.malformed_datagrams += 1
            return Reassembled()
        result = self.receive_frames(frames, datagram_mode=True)
        return Reassembled(result.frames, result.nacks, ack)

    def receive_frames(self, frames: list[bytes], *, datagram_mode: bool = False) -> Reassembled:
        fresh: list[tuple[int, int, bytes]] = []
        for position, data in enumerate(frames):
            try:
                seq = read_frame(data)[0].seq
            except BitstreamError:
                self.stats.malformed_frames += 1
                continue
            ext = self._extend(seq)
            if datagram_mode and position == 0:
                self._count_gap(ext, len(frames))
            if ext in self._seen:
                self.stats.duplicates += 1
                continue
            if self._newest is not None and ext <= self._newest - self.window:
                self.stats.too_old += 1
                continue
            if self._newest is not None and ext < self._newest:
                self.stats.out_of_order += 1
            self._seen.add(ext)
            if self._first is None:
                self._first = ext
            if self._newest is None or ext > self._newest:
                self._newest = ext
            if position > 0:
                self.stats.recovered_from_copies += 1
            fresh.append((ext, seq, data))
        self.stats.frames_new += len(fresh)
        self._prune()
        fresh.sort()
        nacks = self._nacks() if datagram_mode and fresh else ()
        return Reassembled([(seq, data) for _, seq, data in fresh], nacks)

    def take_losses(self) -> int:
        """The sender's datagrams found missing since the last call (at most MAX_REPORTED_LOSSES)."""
        lost = min(self._unreported_losses, MAX_REPORTED_LOSSES)
        self._unreported_losses = 0
        return lost

    def _count_gap(self, ext: int, span: int) -> None:
        # A datagram's first frame is the one it was sent for: frames skipped between two such
        # firsts are datagrams the network lost, whether or not a copy brought their frame later.
        # A retransmission's first frame is older than the newest first-hand one, so it counts nothing.
        if self._newest_primary is not None and ext <= self._newest_primary:
            return
        if self._newest_primary is not None:
            gap = min(ext - self._newest_primary - 1, self.window)
            self._unreported_losses += gap
            self.stats.datagrams_lost += gap
        self._newest_primary = ext
        self._span = span

    def _extend(self, seq: int) -> int:
        if self._newest is None:
            return seq
        delta = (seq - self._newest) % SEQ_MODULO
        if delta >= SEQ_MODULO // 2:
            delta -= SEQ_MODULO
        return self._newest + delta

    def _prune(self) -> None:
        if self._newest is None or len(self._seen) <= 2 * self.window:
            return
        floor = self._newest - self.window
        self._seen = {s for s in self._seen if s > floor}
        self._nacked = {s for s in self._nacked if s > floor}

    def _nacks(self) -> tuple[int, ...]:
        assert self._newest is not None and self._first is not None
        # Copies of frame s ride in datagrams up to s + copies - 1; once the newest
        # frame is past that, only a retransmission can bring s. The sender adds copies
        # only while it sees loss: the newest datagram's frame count says how many it sends now.
        hi = self._newest - max(1, min(self.copies, self._span))
        lo = max(self._first, self._newest - self.nack_window)
        missing = [s for s in range(lo, hi + 1) if s not in self._seen and s not in self._nacked]
        self._nacked.update(missing)
        if len(self._nacked) > 4 * self.window:
            self._nacked = {s for s in self._nacked if s > self._newest - self.window}
        self.stats.nacks_sent += len(missing)
        return tuple(s % SEQ_MODULO for s in missing)

    @property
    def newest(self) -> int | None:
        return None if self._newest is None else self._newest % SEQ_MODULO

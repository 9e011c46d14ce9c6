"""Datagram redundancy (sans-I/O): each datagram carries a frame and copies of the frames before it.

The sender's :class:`RedundantPacker` puts the newest frame first, then up to
``copies - 1`` earlier frames that are still before their playout deadline,
as long as the datagram stays under the size cap. The receiver's
:class:`FrameReassembler` delivers every sequence number once, whichever
datagram brought it, and names the frames that no later datagram can bring
any more, so the sender may retransmit them (a NACK).

Sequence numbers are 16 bits and wrap; both sides extend them to unbounded
integers relative to the newest one seen, as RTP receivers do.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from nerfconf.codec.errors import BitstreamError
from nerfconf.codec.frame import (
    MAX_FRAME_BYTES,
    SEQ_MODULO,
    pack_datagram,
    read_frame,
    unpack_datagram,
)

#: aioquic fits at most ~1170 B of DATAGRAM payload in a 1200 B packet; a bigger one blocks the queue forever
MAX_DATAGRAM_PAYLOAD = 1150


def _packed_size(frame: bytes) -> int:
    return len(frame) + (1 if len(frame) < 0x80 else 2)


@dataclass(frozen=True)
class _Sent:
    data: bytes
    deadline: float


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
        self.copies_skipped_stale = 0

    def pack(self, seq: int, data: bytes, deadline: float, now: float) -> bytes:
        """The datagram for new frame ``seq``: it, then the previous frames still worth sending."""
        if not 0 < len(data) <= MAX_FRAME_BYTES:
            raise ValueError(f"a frame is 1..{MAX_FRAME_BYTES} bytes, got {len(data)}")
        frames = [data]
        size = _packed_size(data)
        for prev_seq in range(seq - 1, seq - self.copies, -1):
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
        self._remember(seq, _Sent(data, deadline))
        return pack_datagram(frames)

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
            if len(frames) == 16:
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


@dataclass(frozen=True)
class Reassembled:
    #: (sequence number, frame bytes) of frames never delivered before, oldest first
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    #: sequence numbers to NACK: missing, and too old for any later datagram's copies
    nacks: tuple[int, ...] = ()


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
        self.stats = ReassemblyStats()

    def receive_datagram(self, datagram: bytes) -> Reassembled:
        self.stats.datagrams += 1
        try:
            frames = unpack_datagram(datagram)
        except BitstreamError:
            self.stats.malformed_datagrams += 1
            return Reassembled()
        return self.receive_frames(frames, datagram_mode=True)

    def receive_frames(self, frames: list[bytes], *, datagram_mode: bool = False) -> Reassembled:
        fresh: list[tuple[int, int, bytes]] = []
        for position, data in enumerate(frames):
            try:
                seq = read_frame(data)[0].seq
            except BitstreamError:
                self.stats.malformed_frames += 1
                continue
            ext = self._extend(seq)
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
        # frame is past that, only a retransmission can bring s.
        hi = self._newest - self.copies
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

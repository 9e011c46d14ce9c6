"""The sender's parameter encoder: quantize, pick a reference, entropy-code, frame.

It is a pure state machine (no clocks, no sockets): the caller passes each
frame's parameters with their capture time, and feeds back receiver events
(acknowledgements, I-frame requests) as method calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerfconf.codec.config import CodecConfig, Reference
from nerfconf.codec.frame import (
    MAX_REF_DISTANCE,
    SEQ_MODULO,
    TIMESTAMP_MODULO,
    FrameHeader,
    write_frame,
)
from nerfconf.codec.references import ReferenceFrame, ReferenceStore, seq_distance, seq_is_newer
from nerfconf.types import EncodedFrame, FaceParams, FrameType


@dataclass
class EncoderStats:
    frames: int = 0
    i_frames: int = 0
    p_frames: int = 0
    empty_frames: int = 0
    bytes_total: int = 0
    bytes_header: int = 0
    bytes_i: int = 0
    bytes_p: int = 0
    forced_i_frames: int = 0
    acks_used: int = 0
    acks_ignored: int = 0
    clamped_values: int = 0


class ParamEncoder:
    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.quantizer = config.make_quantizer()
        self.coder = config.make_coder()
        self._refs = ReferenceStore(MAX_REF_DISTANCE + 1)
        self._next_seq = 0
        self._t0: float | None = None
        self._last_ts = 0
        self._since_i = 0
        self._need_i = True
        self._gop = 0
        self._last_seq: int | None = None
        self._anchor: int | None = None
        self.stats = EncoderStats()

    # -- receiver feedback ----------------------------------------------------------

    def request_iframe(self) -> None:
        """The next frame with a face is an I-frame (a receiver joined or lost its reference)."""
        if not self._need_i:
            self.stats.forced_i_frames += 1
        self._need_i = True

    def acknowledge(self, seq: int) -> None:
        """The receiver decoded ``seq``; in anchor mode later P-frames may predict from it.

        Acks for frames this encoder never sent, or from an older GOP, are
        ignored, so a lying peer can at worst stall the anchor, never corrupt it.
        """
        ref = self._refs.get(seq % SEQ_MODULO)
        if ref is None or ref.gop != self._gop or self._anchor is None:
            self.stats.acks_ignored += 1
            return
        if seq_is_newer(seq, self._anchor):
            self._anchor = seq
            self.stats.acks_used += 1

    # -- encoding -------------------------------------------------------------------

    def encode(self, params: FaceParams) -> EncodedFrame:
        if not params.face_found:
            return self._encode_empty(params.t_capture)
        q = self.quantizer.quantize(params.to_vector(self.config.layout))
        self.stats.clamped_values = self.quantizer.stats.clamped
        return self.encode_levels(q, params.t_capture)

    def encode_levels(self, levels: np.ndarray | list[int], t_capture: float) -> EncodedFrame:
        """Codes already-quantized levels (what the property tests drive directly)."""
        q = [int(v) for v in levels]
        top = self.quantizer.top
        if len(q) != self.config.layout.dims or not all(0 <= v <= t for v, t in zip(q, top)):
            raise ValueError(f"expected {self.config.layout.dims} levels, each in 0..2**bits-1 of its dimension")
        seq, ts = self._stamp(t_capture)
        ref_seq = self._choose_reference(seq)
        if ref_seq is None:
            body, state = self.coder.encode_intra(q)
            self._gop += 1
            self._since_i = 0
            self._need_i = False
            self._anchor = seq
            header = FrameHeader(FrameType.I, True, self.coder.coder_id, seq, ts, self.config.tag)
        else:
            ref = self._refs.get(ref_seq)
            assert ref is not None
            body, state = self.coder.encode_inter(q, ref.levels, ref.state)
            delta = (ts - ref.timestamp_ms) % TIMESTAMP_MODULO
            header = FrameHeader(
                FrameType.P, True, self.coder.coder_id, seq,
                timestamp_ms=None if delta <= 255 else ts,
                ref_distance=seq_distance(seq, ref_seq),
                time_delta_ms=delta if delta <= 255 else None,
            )
        self._refs.put(seq, ReferenceFrame(tuple(q), self.coder.coder_id, state, self._gop, ts))
        self._last_seq = seq
        self._since_i += 1
        return self._finish(header, body, ref_seq)

    def _encode_empty(self, t_capture: float) -> EncodedFrame:
        seq, ts = self._stamp(t_capture)
        # A face-less frame holds no values and is never a reference, but it still
        # advances the GOP clock so the next face frame is an I-frame when one is due.
        self._since_i += 1
        header = FrameHeader(FrameType.P, False, 0, seq, ts)
        return self._finish(header, b"", None)

    def _stamp(self, t_capture: float) -> tuple[int, int]:
        seq = self._next_seq
        self._next_seq = (seq + 1) % SEQ_MODULO
        if self._t0 is None:
            self._t0 = t_capture
        ts = int(round((t_capture - self._t0) * 1000.0)) % TIMESTAMP_MODULO
        self._last_ts = ts
        return seq, ts

    def _choose_reference(self, seq: int) -> int | None:
        """The frame to predict from, or None for an I-frame."""
        if self._need_i or self._since_i >= self.config.gop_frames:
            return None
        ref = self._last_seq if self.config.reference == Reference.PREV else self._anchor
        if ref is None or ref not in self._refs or seq_distance(seq, ref) > MAX_REF_DISTANCE:
            return None
        return ref

    def _finish(self, header: FrameHeader, body: bytes, ref_seq: int | None) -> EncodedFrame:
        data = write_frame(header, body)
        s = self.stats
        s.frames += 1
        s.bytes_total += len(data)
        s.bytes_header += len(data) - len(body)
        if not header.face_found:
            s.empty_frames += 1
        elif header.frame_type == FrameType.I:
            s.i_frames += 1
            s.bytes_i += len(data)
        else:
            s.p_frames += 1
            s.bytes_p += len(data)
        return EncodedFrame(
            data=data,
            frame_type=header.frame_type,
            seq=header.seq,
            timestamp_ms=self._last_ts,
            face_found=header.face_found,
            ref_seq=ref_seq,
        )

"""The receiver's parameter decoder.

Frames may arrive out of order, twice, or not at all (datagram mode). Each
frame names its reference, so any frame whose reference is held decodes,
whatever order it came in. Decoder state changes only after a frame decoded
completely, so a bad frame never poisons the frames after it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from nerfconf.codec.config import CodecConfig
from nerfconf.codec.entropy import CoderId, EntropyCoder
from nerfconf.codec.errors import (
    BitstreamError,
    DuplicateFrameError,
    IncompatibleStreamError,
    MissingReferenceError,
)
from nerfconf.codec.frame import MAX_REF_DISTANCE, SEQ_MODULO, TIMESTAMP_MODULO, read_frame
from nerfconf.codec.references import ReferenceFrame, ReferenceStore, seq_distance, seq_is_newer
from nerfconf.types import FaceParams, FrameType

#: how far behind the newest frame a frame may arrive and still be decoded
REORDER_WINDOW = MAX_REF_DISTANCE + 1


@dataclass(frozen=True)
class DecodedFrame:
    params: FaceParams
    seq: int
    frame_type: FrameType
    timestamp_ms: int
    #: quantized levels, None for a frame without a face
    levels: np.ndarray | None
    ref_seq: int | None


class ParamDecoder:
    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.quantizer = config.make_quantizer()
        self._coders: dict[int, EntropyCoder] = {c: config.make_coder(c) for c in CoderId}
        self._refs = ReferenceStore(REORDER_WINDOW)
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._newest: int | None = None
        self._newest_ts: int | None = None
        self._newest_index = 0

    def reset(self) -> None:
        """Forget every reference, e.g. when the sender restarted its stream."""
        self._refs.clear()
        self._seen.clear()
        self._newest = self._newest_ts = None
        self._newest_index = 0

    def decode(self, data: bytes) -> DecodedFrame:
        """Decodes one frame or raises :class:`BitstreamError`; never anything else."""
        try:
            return self._decode(data)
        except BitstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is one error type
            raise BitstreamError(f"undecodable frame ({type(exc).__name__}: {exc})") from exc

    def _decode(self, data: bytes) -> DecodedFrame:
        header, body = read_frame(data)
        seq = header.seq
        if seq in self._seen:
            raise DuplicateFrameError(f"frame {seq} was already decoded")
        if self._newest is not None and not seq_is_newer(seq, self._newest):
            if seq_distance(self._newest, seq) >= REORDER_WINDOW:
                raise BitstreamError(
                    f"frame {seq} is older than the {REORDER_WINDOW}-frame window behind {self._newest}"
                )
        ref_seq = None
        levels: list[int] | None = None
        if header.frame_type == FrameType.I:
            if header.config_tag != self.config.tag:
                raise IncompatibleStreamError(
                    f"stream configuration {header.config_tag:04x} does not match this decoder's "
                    f"{self.config.tag:04x}: the sender uses another face model, bounds or bit depth"
                )
            levels, state = self._coders[header.coder].decode_intra(body)
            gop = seq
            timestamp = header.timestamp_ms
        elif header.face_found:
            assert header.ref_distance is not None
            ref_seq = (seq - header.ref_distance) % SEQ_MODULO
            ref = self._refs.get(ref_seq)
            if ref is None:
                raise MissingReferenceError(
                    f"frame {seq} predicts from frame {ref_seq}, which this decoder does not hold",
                    seq=seq,
                    ref_seq=ref_seq,
                )
            if ref.coder != header.coder:
                raise BitstreamError(f"frame {seq} uses another entropy coder than its reference {ref_seq}")
            levels, state = self._coders[header.coder].decode_inter(body, ref.levels, ref.state)
            gop = ref.gop
            timestamp = header.timestamp_ms
            if header.time_delta_ms is not None:
                timestamp = (ref.timestamp_ms + header.time_delta_ms) % TIMESTAMP_MODULO
        else:
            timestamp = header.timestamp_ms
        assert timestamp is not None
        # Everything checked: only now does the frame change decoder state.
        if levels is not None:
            self._refs.put(seq, ReferenceFrame(tuple(levels), CoderId(header.coder), state, gop, timestamp))
        self._remember(seq)
        index, ts = self._unwrap(seq, timestamp)
        layout = self.config.layout
        if levels is None:
            params = FaceParams.no_face(layout, t_capture=ts / 1000.0, index=index)
            arr = None
        else:
            arr = np.asarray(levels, dtype=np.int64)
            params = FaceParams.from_vector(
                self.quantizer.dequantize(arr), layout, t_capture=ts / 1000.0, index=index
            )
        return DecodedFrame(params, seq, header.frame_type, ts, arr, ref_seq)

    def _remember(self, seq: int) -> None:
        self._seen[seq] = None
        while len(self._seen) > REORDER_WINDOW:
            self._seen.popitem(last=False)

    def _unwrap(self, seq: int, ts: int) -> tuple[int, int]:
        """Extends the wrapped sequence number and timestamp relative to the newest frame."""
        if self._newest is None:
            self._newest, self._newest_ts, self._newest_index = seq, ts, seq
            return seq, ts
        assert self._newest_ts is not None
        step = seq_distance(seq, self._newest)
        delta_index = step if step < SEQ_MODULO // 2 else step - SEQ_MODULO
        dts = (ts - self._newest_ts) % TIMESTAMP_MODULO
        delta_ts = dts if dts < TIMESTAMP_MODULO // 2 else dts - TIMESTAMP_MODULO
        index = self._newest_index + delta_index
        full_ts = self._newest_ts + delta_ts
        if delta_index > 0:
            self._newest, self._newest_ts, self._newest_index = seq, full_ts, index
        return index, full_ts

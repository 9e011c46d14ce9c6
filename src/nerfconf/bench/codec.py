"""``nerfconf bench codec``: bitrate and speed of every coder and prediction mode.

Protocol, matching the avatar's train/test split: quantization bounds (and the
arithmetic coder's priors) come from the training frames, and everything is
measured on the held-out frames after them, so clamping of unseen values is
part of the result.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nerfconf.codec.config import Allocation, CodecConfig, Reference
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.report import INLINE
from nerfconf.tracks import HELD_OUT_FRAMES, ParamTrack


@dataclass(frozen=True)
class CodecRun:
    coder: str
    reference: str
    #: frames between a frame's send and its ack reaching the encoder (None: no acks)
    ack_delay_frames: int | None
    payload_kbps: float
    body_kbps: float
    bytes_per_i_frame: float
    bytes_per_p_frame: float
    encode_us_median: float
    decode_us_median: float
    frames: int
    i_frames: int


@dataclass(frozen=True)
class QuantizationError:
    """What quantization alone costs on the test frames (values clamped to the bounds first)."""

    #: L2 norm of the expression error: the landmark displacement in mm, summed over all 478 points
    expression_l2_mean: float
    rotation_deg_max: float


@dataclass(frozen=True)
class AllocationBits:
    """One way of spending the bits over the dimensions, as fitted on the training frames."""

    bits: list[int]
    #: every dimension at its bit depth, every frame, no entropy coding
    fixed_bits_kbps: float
    quantization_error: QuantizationError


@dataclass(frozen=True)
class ModeResult:
    """One allocation, coder and reference mode; speeds are medians over the repeats."""

    allocation: str
    run: CodecRun = field(metadata=INLINE)
    #: the decoded levels equal those of the allocation's first mode (every mode must decode the same)
    decoded_identical: bool


@dataclass(frozen=True)
class CodecBench:
    """``nerfconf bench codec``: every coder and prediction mode on the held-out frames of a track."""

    source: str
    fps: float
    dims: int
    bits: int
    gop_frames: int
    rtt_ms: float
    train_frames: int
    test_frames: int
    repeats: int
    #: share of the test values outside the bounds fitted on the training frames
    clamped_fraction: float
    unquantized_kbps: float
    #: by allocation name
    allocations: dict[str, AllocationBits]
    results: list[ModeResult]


def extracted_track(video: Path, *, test_frames: int = HELD_OUT_FRAMES, fps: float = 20.0, progress: bool = False) -> ParamTrack:
    """The real parameter track of a video: face model fitted on all but its last
    ``test_frames`` frames, then extraction at the call's frame rate."""
    from nerfconf.face.enroll import fit_from_video  # noqa: PLC0415
    from nerfconf.face.extract import extract_video  # noqa: PLC0415

    model, _, _ = fit_from_video(video, test_frames=test_frames, progress=progress)
    track, _ = extract_video(video, model, fps=fps, progress=progress)
    track.source = f"{video.name} at {fps:g} fps, face model fitted on all but its last {test_frames} frames"
    return track


def split_track(track: ParamTrack, test_frames: int) -> tuple[ParamTrack, ParamTrack]:
    if len(track) <= test_frames + 1:
        raise ValueError(f"track has {len(track)} frames; need more than the {test_frames} held out")
    return track.slice(0, len(track) - test_frames), track.slice(len(track) - test_frames)


def make_config(
    train: ParamTrack,
    bits: int,
    coder: CoderId,
    reference: Reference,
    gop_frames: int,
    allocation: Allocation = Allocation.EQUAL_STEP,
) -> CodecConfig:
    rows = train.values[train.face_found]
    return CodecConfig.fit(train.layout, rows, bits=bits, allocation=allocation, coder=coder, reference=reference,
                           gop_frames=gop_frames)


def quantization_error(config: CodecConfig, test: ParamTrack) -> QuantizationError:
    """What quantization alone costs on the test frames (values clamped to the bounds first).

    Expression coefficients are millimetres along orthonormal landmark
    directions, so the L2 norm of their error is the landmark displacement
    error in millimetres, summed over all 478 points.
    """
    q = config.make_quantizer()
    rows = test.values[test.face_found]
    clipped = np.clip(rows, config.bounds.lo, config.bounds.hi)
    error = np.stack([q.dequantize(q.quantize(v)) for v in clipped]) - clipped
    k = config.layout.n_expression
    return QuantizationError(
        expression_l2_mean=float(np.linalg.norm(error[:, :k], axis=1).mean()),
        rotation_deg_max=float(np.degrees(np.abs(error[:, k : k + 3]).max())),
    )


def run_once(config: CodecConfig, test: ParamTrack, ack_delay_frames: int | None) -> tuple[CodecRun, np.ndarray]:
    """Codes the test track once; returns the figures and the decoded levels."""
    enc, dec = ParamEncoder(config), ParamDecoder(config)
    enc_ns, dec_ns, decoded = [], [], []
    sent: list[int] = []
    for i in range(len(test)):
        if ack_delay_frames is not None and i - ack_delay_frames >= 0:
            enc.acknowledge(sent[i - ack_delay_frames])
        params = test.params(i)
        t0 = time.perf_counter_ns()
        frame = enc.encode(params)
        t1 = time.perf_counter_ns()
        out = dec.decode(frame.data)
        t2 = time.perf_counter_ns()
        enc_ns.append(t1 - t0)
        dec_ns.append(t2 - t1)
        sent.append(frame.seq)
        decoded.append(out.levels)
    s = enc.stats
    fps = test.fps
    seconds = len(test) / fps
    run = CodecRun(
        coder=config.coder.name.lower(),
        reference=config.reference.value,
        ack_delay_frames=ack_delay_frames,
        payload_kbps=s.bytes_total * 8 / seconds / 1000,
        body_kbps=(s.bytes_total - s.bytes_header) * 8 / seconds / 1000,
        bytes_per_i_frame=s.bytes_i / max(1, s.i_frames),
        bytes_per_p_frame=s.bytes_p / max(1, s.p_frames),
        encode_us_median=statistics.median(enc_ns) / 1000,
        decode_us_median=statistics.median(dec_ns) / 1000,
        frames=s.frames,
        i_frames=s.i_frames,
    )
    return run, np.array([d if d is not None else np.full(config.layout.dims, -1) for d in decoded])


def bench_codec(
    track: ParamTrack,
    *,
    test_frames: int = HELD_OUT_FRAMES,
    bits: int = 8,
    gop_seconds: float = 1.0,
    rtt_ms: float = 20.0,
    repeats: int = 5,
) -> CodecBench:
    fps = track.fps
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError("track needs at least two frames with increasing timestamps")
    train, test = split_track(track, test_frames)
    gop = CodecConfig.gop_from_seconds(gop_seconds, fps)
    ack_delay = max(1, math.ceil(rtt_ms / 1000 * fps))
    modes = [
        (Reference.PREV, None),
        (Reference.ANCHOR, ack_delay),
        (Reference.ANCHOR, None),
    ]
    results: list[ModeResult] = []
    allocations: dict[str, AllocationBits] = {}
    for allocation in (Allocation.UNIFORM, Allocation.EQUAL_STEP):
        reference_levels = None
        for coder in (CoderId.EXP_GOLOMB, CoderId.ARITHMETIC):
            for reference, delay in modes:
                config = make_config(train, bits, coder, reference, gop, allocation)
                runs = []
                for _ in range(repeats):
                    run, levels = run_once(config, test, delay)
                    runs.append(run)
                if reference_levels is None:
                    reference_levels = levels
                    allocations[allocation.value] = AllocationBits(
                        bits=list(config.bits),
                        fixed_bits_kbps=sum(config.bits) * fps / 1000,
                        quantization_error=quantization_error(config, test),
                    )
                speed = {
                    k: statistics.median(getattr(r, k) for r in runs)
                    for k in ("encode_us_median", "decode_us_median")
                }
                results.append(ModeResult(
                    allocation=allocation.value,
                    run=replace(runs[0], **speed),
                    decoded_identical=bool(np.array_equal(levels, reference_levels)),
                ))
    q = make_config(train, bits, CoderId.EXP_GOLOMB, Reference.PREV, gop).make_quantizer()
    for v in test.values[test.face_found]:
        q.quantize(v)
    dims = track.layout.dims
    return CodecBench(
        source=track.source,
        fps=round(fps, 3),
        dims=dims,
        bits=bits,
        gop_frames=gop,
        rtt_ms=rtt_ms,
        train_frames=len(train),
        test_frames=len(test),
        repeats=repeats,
        clamped_fraction=q.stats.clamped / max(1, q.stats.values),
        unquantized_kbps=dims * 32 * fps / 1000,
        allocations=allocations,
        results=results,
    )

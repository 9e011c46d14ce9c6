"""Hostile, damaged, lost, replayed and reordered input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfconf.codec.config import Reference
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.errors import (
    BitstreamError,
    DuplicateFrameError,
    IncompatibleStreamError,
    MissingReferenceError,
)
from nerfconf.types import FrameType

from .helpers import LAYOUT, config, smooth_levels

CODERS = pytest.mark.parametrize("coder", list(CoderId))


def encoded(cfg, n=30, seed=0, ack=False):
    enc = ParamEncoder(cfg)
    frames = []
    for i, q in enumerate(smooth_levels(n, LAYOUT.dims, cfg.bits, seed)):
        f = enc.encode_levels(q, i / 20)
        frames.append((f, q))
        if ack:
            enc.acknowledge(f.seq)
    return frames


def assert_valid_or_bitstream_error(dec, data, top):
    try:
        out = dec.decode(data)
    except BitstreamError:
        return
    if out.levels is not None:
        assert out.levels.min() >= 0 and out.levels.max() <= top


@CODERS
@given(data=st.binary(max_size=120))
def test_random_bytes_only_raise_bitstream_error(coder, data):
    cfg = config(coder)
    dec = ParamDecoder(cfg)
    dec.decode(encoded(cfg, 1)[0][0].data)  # hold a reference so P-frames get parsed deeper
    assert_valid_or_bitstream_error(dec, data, 255)


@CODERS
@given(st.data())
def test_mutated_frames_only_raise_bitstream_error(coder, data):
    cfg = config(coder, gop_frames=8)
    frames = encoded(cfg, 12)
    dec = ParamDecoder(cfg)
    k = data.draw(st.integers(0, len(frames) - 1))
    for f, _ in frames[:k]:
        dec.decode(f.data)
    target = bytearray(frames[k][0].data)
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(target) - 1))
            target[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        target = target[: data.draw(st.integers(0, len(target) - 1))]
    elif op == "extend":
        target += data.draw(st.binary(min_size=1, max_size=8))
    else:
        other = frames[data.draw(st.integers(0, len(frames) - 1))][0].data
        target = target[:6] + other[6:]
    assert_valid_or_bitstream_error(dec, bytes(target), 255)


@CODERS
def test_failed_frame_leaves_decoder_state_intact(coder):
    cfg = config(coder)
    frames = encoded(cfg, 10)
    dec = ParamDecoder(cfg)
    for f, q in frames[:5]:
        dec.decode(f.data)
    with pytest.raises(BitstreamError):
        dec.decode(frames[5][0].data[:-1] + b"\xff\xff\xff")
    for f, q in frames[5:]:
        assert dec.decode(f.data).levels.tolist() == q.tolist()


@CODERS
def test_truncation_is_always_detected(coder):
    cfg = config(coder)
    dec = ParamDecoder(cfg)
    frames = encoded(cfg, 6)
    for f, q in frames:
        for cut in range(len(f.data)):
            with pytest.raises(BitstreamError):
                ParamDecoder(cfg).decode(f.data[:cut]) if f.frame_type == FrameType.I else dec.decode(f.data[:cut])
        dec.decode(f.data)


@CODERS
def test_replay_is_refused(coder):
    cfg = config(coder)
    frames = encoded(cfg, 3)
    dec = ParamDecoder(cfg)
    for f, _ in frames:
        dec.decode(f.data)
    with pytest.raises(DuplicateFrameError, match="already decoded"):
        dec.decode(frames[1][0].data)


@CODERS
def test_prev_mode_loss_reports_missing_reference_until_next_i_frame(coder):
    cfg = config(coder, Reference.PREV, gop_frames=10)
    frames = encoded(cfg, 20)
    dec = ParamDecoder(cfg)
    errors = 0
    for i, (f, q) in enumerate(frames):
        if i == 3:
            continue  # lost
        try:
            assert dec.decode(f.data).levels.tolist() == q.tolist()
        except MissingReferenceError as exc:
            assert exc.ref_seq == (f.seq - 1) % 65536
            errors += 1
    assert errors == 6  # frames 4..9; frame 10 is the next I-frame


@CODERS
def test_anchor_mode_loss_costs_one_frame(coder):
    cfg = config(coder, Reference.ANCHOR, gop_frames=20)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    lost = {3, 7, 8}
    decoded = 0
    for i, q in enumerate(smooth_levels(20, LAYOUT.dims)):
        f = enc.encode_levels(q, i / 20)
        if i in lost:
            continue
        assert dec.decode(f.data).levels.tolist() == q.tolist()
        decoded += 1
        enc.acknowledge(f.seq)  # the receiver acks what it got
    assert decoded == 20 - len(lost)


@CODERS
def test_anchor_mode_decodes_out_of_order(coder):
    cfg = config(coder, Reference.ANCHOR, gop_frames=20)
    frames = encoded(cfg, 10)  # no acks: every P-frame predicts from the I-frame
    dec = ParamDecoder(cfg)
    order = [0, 5, 2, 9, 1, 3, 8, 4, 7, 6]
    for i in order:
        f, q = frames[i]
        assert dec.decode(f.data).levels.tolist() == q.tolist()


def test_acks_for_unknown_or_old_frames_are_ignored():
    cfg = config(CoderId.EXP_GOLOMB, Reference.ANCHOR, gop_frames=4)
    enc = ParamEncoder(cfg)
    levels = smooth_levels(6, LAYOUT.dims)
    f0 = enc.encode_levels(levels[0], 0)
    enc.acknowledge(12345)  # never sent
    f1 = enc.encode_levels(levels[1], 0.05)
    assert f1.ref_seq == f0.seq
    for i in range(2, 5):
        enc.encode_levels(levels[i], i / 20)  # frame 4 starts a new GOP
    enc.acknowledge(f1.seq)  # from the old GOP
    assert enc.encode_levels(levels[5], 0.25).ref_seq == 4
    assert enc.stats.acks_ignored == 2 and enc.stats.acks_used == 0


def test_wrong_configuration_is_an_incompatible_stream():
    a = config(bits=8)
    b = config(bits=9)
    with pytest.raises(IncompatibleStreamError, match="another face model, bounds or bit depth"):
        ParamDecoder(b).decode(encoded(a, 1)[0][0].data)


def test_frames_beyond_the_reorder_window_are_stale():
    cfg = config(CoderId.EXP_GOLOMB, gop_frames=1)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    levels = smooth_levels(300, LAYOUT.dims)
    frames = [enc.encode_levels(q, i / 20) for i, q in enumerate(levels)]
    dec.decode(frames[-1].data)
    with pytest.raises(BitstreamError, match="older than"):
        dec.decode(frames[0].data)
    assert dec.decode(frames[-10].data).levels.tolist() == levels[-10].tolist()


def test_non_bytes_input_is_a_bitstream_error():
    with pytest.raises(BitstreamError, match="must be bytes"):
        ParamDecoder(config()).decode("not bytes")  # type: ignore[arg-type]


@pytest.mark.fuzz
@CODERS
@settings(max_examples=50_000)
@given(data=st.binary(max_size=200))
def test_fuzz_random_frames_large_budget(coder, data):
    cfg = config(coder)
    dec = ParamDecoder(cfg)
    dec.decode(encoded(cfg, 1)[0][0].data)
    assert_valid_or_bitstream_error(dec, data, 255)

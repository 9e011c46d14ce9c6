"""decode(encode(q)) == q, for every coder, reference mode and GOP length."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.config import Reference
from nerfconf.codec.decoder import ParamDecoder
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.entropy import CoderId
from nerfconf.types import FaceParams, FrameType

from .helpers import LAYOUT, config, smooth_levels

DIMS = LAYOUT.dims


@st.composite
def sequences(draw):
    # one depth for all dimensions, or one per dimension (equal-step allocation)
    bits = draw(st.one_of(st.integers(4, 10), st.tuples(*(st.integers(4, 10),) * DIMS)))
    tops = [(1 << b) - 1 for b in (bits if isinstance(bits, tuple) else (bits,) * DIMS)]
    n = draw(st.integers(1, 40))
    style = draw(st.sampled_from(["any", "smooth"]))
    if style == "any":
        levels = draw(st.lists(st.tuples(*(st.integers(0, t) for t in tops)), min_size=n, max_size=n))
    else:
        levels = smooth_levels(n, DIMS, bits, seed=draw(st.integers(0, 1000))).tolist()
    # per frame: has a face, the encoder is told to force an I-frame, the receiver acks it
    events = draw(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=n, max_size=n))
    return bits, levels, events


@pytest.mark.parametrize("coder", list(CoderId))
@pytest.mark.parametrize("reference", list(Reference))
@given(seq=sequences(), gop=st.integers(1, 30), fitted=st.booleans())
def test_decode_of_encode_is_identity(coder, reference, seq, gop, fitted):
    bits, levels, events = seq
    cfg = config(coder, reference, gop, bits, fitted=fitted)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    for i, (q, (face, force, ack)) in enumerate(zip(levels, events)):
        if force:
            enc.request_iframe()
        if face or i == 0:
            frame = enc.encode_levels(q, i / 20)
        else:
            frame = enc.encode(FaceParams.no_face(LAYOUT, t_capture=i / 20))
        out = dec.decode(frame.data)
        assert out.seq == frame.seq and out.frame_type == frame.frame_type
        assert out.timestamp_ms == round(i * 50)
        if frame.face_found:
            assert out.levels.tolist() == list(q)
            assert out.params.face_found
        else:
            assert out.levels is None and not out.params.face_found
        if ack:
            enc.acknowledge(frame.seq)


@pytest.mark.parametrize("coder", list(CoderId))
def test_float_params_decode_to_their_quantized_values(coder):
    cfg = config(coder)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    rng = np.random.default_rng(5)
    for i in range(60):
        x = np.clip(np.sin(np.arange(DIMS) + i / 7) * 1.1 + rng.normal(0, 0.01, DIMS), -1.2, 1.2)
        out = dec.decode(enc.encode(FaceParams.from_vector(x, LAYOUT, t_capture=1000 + i / 20)).data)
        assert np.all(np.abs(out.params.to_vector(LAYOUT) - np.clip(x, -1, 1)) <= cfg.make_quantizer().step / 2 + 1e-9)
    assert enc.stats.clamped_values > 0  # values beyond ±1 were clamped and counted


def test_gop_length_sets_the_i_frame_rhythm():
    cfg = config(gop_frames=5)
    enc = ParamEncoder(cfg)
    types = [enc.encode_levels(q, i / 20).frame_type for i, q in enumerate(smooth_levels(12, DIMS))]
    assert [i for i, t in enumerate(types) if t == FrameType.I] == [0, 5, 10]


def test_i_frame_waits_for_a_face_and_request_forces_one():
    cfg = config(gop_frames=3)
    enc = ParamEncoder(cfg)
    levels = smooth_levels(10, DIMS)
    assert enc.encode_levels(levels[0], 0).frame_type == FrameType.I
    enc.encode_levels(levels[1], 0.05)
    enc.encode(FaceParams.no_face(LAYOUT, t_capture=0.1))
    enc.encode(FaceParams.no_face(LAYOUT, t_capture=0.15))
    assert enc.encode_levels(levels[2], 0.2).frame_type == FrameType.I  # due while no face
    assert enc.encode_levels(levels[3], 0.25).frame_type == FrameType.P
    enc.request_iframe()
    assert enc.encode_levels(levels[4], 0.3).frame_type == FrameType.I


def test_sequence_numbers_and_timestamps_wrap():
    cfg = config(gop_frames=50)
    enc, dec = ParamEncoder(cfg), ParamDecoder(cfg)
    enc._next_seq = 65530  # start near the wrap without coding 65 530 frames
    levels = smooth_levels(12, DIMS)
    t0 = 0.0
    for i, q in enumerate(levels):
        t = t0 + i * 3600.0  # an hour apart: the 24-bit ms clock wraps every 4.66 h
        out = dec.decode(enc.encode_levels(q, t).data)
        assert out.levels.tolist() == q.tolist()
        assert out.params.index == 65530 + i
        assert out.timestamp_ms == round(i * 3600_000)

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.errors import BitstreamError, IncompatibleStreamError
from nerfconf.codec.frame import (
    DELIMITER,
    FORMAT_VERSION,
    MAX_FRAMES_PER_DATAGRAM,
    FrameHeader,
    StreamDeframer,
    pack_datagram,
    read_frame,
    stuff,
    unpack_datagram,
    unstuff,
    write_frame,
)
from nerfconf.types import FrameType

payloads = st.binary(min_size=1, max_size=300)


@given(payloads)
def test_stuffed_payload_never_contains_the_delimiter(payload):
    stuffed = stuff(payload)
    assert stuffed.endswith(DELIMITER)
    assert DELIMITER not in stuffed[:-2]
    assert unstuff(stuffed[:-2]) == payload


@given(st.lists(payloads, min_size=1, max_size=20), st.data())
def test_deframer_recovers_frames_from_any_chunking(frames, data):
    stream = b"".join(stuff(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    d = StreamDeframer()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        out += d.feed(stream[a:b])
    assert out == frames
    assert d.buffered == 0


def test_deframer_resynchronises_after_garbage():
    d = StreamDeframer(max_frame_bytes=16)
    out = d.feed(b"\xff\x7f" + DELIMITER + stuff(b"ok1"))
    assert isinstance(out[0], BitstreamError) and out[1] == b"ok1"
    out = d.feed(b"x" * 100)  # a flood with no delimiter is bounded and reported once
    assert len(out) == 1 and isinstance(out[0], BitstreamError)
    assert d.buffered <= 32
    out = d.feed(b"y" * 100 + DELIMITER + stuff(b"ok2"))
    assert out == [b"ok2"]


def test_header_round_trip_and_sizes():
    i = FrameHeader(FrameType.I, True, 1, 65535, (1 << 24) - 1, config_tag=0xBEEF)
    p1 = FrameHeader(FrameType.P, True, 0, 7, None, ref_distance=1, time_delta_ms=50)
    p9 = FrameHeader(FrameType.P, True, 0, 7, None, ref_distance=9, time_delta_ms=255)
    p_long = FrameHeader(FrameType.P, True, 1, 7, 12345, ref_distance=1)
    empty = FrameHeader(FrameType.P, False, 0, 8, 100)
    for h, size in ((i, 8), (p1, 4), (p9, 5), (p_long, 6)):
        data = write_frame(h, b"\x12")
        assert len(data) == size + 1
        assert read_frame(data) == (h, b"\x12")
    assert read_frame(write_frame(empty, b"")) == (empty, b"")


V = FORMAT_VERSION << 5
I_, FACE, AC, NEAR, SHORT = 0x00, 0x08, 0x04, 0x02, 0x01
P_ = 0x10


@pytest.mark.parametrize(
    "data, message",
    [
        (bytes([V, 0]), "shorter than"),
        (bytes([V | I_ | FACE, 0, 0, 0, 0]), "truncated inside its timestamp"),
        (bytes([V | I_, 0, 0, 0, 0, 0]), "I-frames always carry a face"),
        (bytes([V | I_ | FACE, 0, 0, 0, 0, 0, 1]), "configuration tag"),
        (bytes([V | P_ | FACE, 0, 0, 0, 0, 0]), "reference distance"),
        (bytes([V | P_ | FACE, 0, 0, 0, 0, 0, 1, 5]), "distance 1"),
        (bytes([V | P_ | FACE | NEAR, 0, 0, 0, 0, 0]), "carries no parameters"),
        (bytes([V | P_, 0, 0, 0, 0, 0, 9]), "carries a body"),
        (bytes([V | P_ | NEAR, 0, 0, 0, 0, 0]), "malformed header"),
        (bytes([V | P_ | SHORT, 0, 0, 10]), "relative timestamp"),
        (bytes([V | I_ | FACE | SHORT, 0, 0, 10, 0, 0, 1]), "relative timestamp"),
        (bytes([V]) + bytes(2000), "limit"),
    ],
)
def test_malformed_headers_are_named(data, message):
    with pytest.raises(BitstreamError, match=message):
        read_frame(data)


def test_other_format_version_is_an_incompatible_stream():
    with pytest.raises(IncompatibleStreamError, match=f"version {FORMAT_VERSION + 1}"):
        read_frame(bytes([((FORMAT_VERSION + 1) << 5) | 0x1A, 0, 0, 0, 0, 0, 1]))


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=MAX_FRAMES_PER_DATAGRAM))
def test_datagram_round_trip(frames):
    assert unpack_datagram(pack_datagram(frames)) == frames


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty datagram"),
        (b"\x05ab", "truncated"),
        (b"\x00", "outside"),
        (b"\x81", "inside a frame length"),
        (b"\x80\x05", "non-canonical"),
        (b"\x01a" * (MAX_FRAMES_PER_DATAGRAM + 1), "more than"),
    ],
)
def test_bad_datagrams_are_named(data, message):
    with pytest.raises(BitstreamError, match=message):
        unpack_datagram(data)

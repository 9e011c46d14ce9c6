import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.codec.errors import BitstreamError, IncompatibleStreamError
from nerfconf.codec.frame import (
    DELIMITER,
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
    p1 = FrameHeader(FrameType.P, True, 0, 7, 50, ref_distance=1)
    p9 = FrameHeader(FrameType.P, True, 0, 7, 50, ref_distance=9)
    empty = FrameHeader(FrameType.P, False, 0, 8, 100)
    for h, size in ((i, 8), (p1, 6), (p9, 7)):
        data = write_frame(h, b"\x12")
        assert len(data) == size + 1
        assert read_frame(data) == (h, b"\x12")
    assert read_frame(write_frame(empty, b"")) == (empty, b"")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x20\x00", "shorter than"),
        (bytes([0x30, 0, 0, 0, 0, 0, 1]), "unknown frame type"),
        (bytes([0x20, 0, 0, 0, 0, 0]), "I-frames always carry a face"),
        (bytes([0x24, 0, 0, 0, 0, 0, 1]), "configuration tag"),
        (bytes([0x2C, 0, 0, 0, 0, 0]), "reference distance"),
        (bytes([0x2C, 0, 0, 0, 0, 0, 1, 5]), "distance 1"),
        (bytes([0x2D, 0, 0, 0, 0, 0]), "carries no parameters"),
        (bytes([0x28, 0, 0, 0, 0, 0, 9]), "carries a body"),
        (bytes([0x29, 0, 0, 0, 0, 0]), "malformed header"),
        (b"\x20" + bytes(2000), "limit"),
    ],
)
def test_malformed_headers_are_named(data, message):
    with pytest.raises(BitstreamError, match=message):
        read_frame(data)


def test_other_format_version_is_an_incompatible_stream():
    with pytest.raises(IncompatibleStreamError, match="version 2"):
        read_frame(bytes([0x40 | 0x0D, 0, 0, 0, 0, 0, 1]))


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

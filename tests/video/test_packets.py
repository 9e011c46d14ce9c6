import pytest

from nerfconf.net.messages import VideoCodec
from nerfconf.video.packets import (
    HEADER_BYTES,
    MAX_FRAGMENT_DATA,
    MAX_FRAME_BYTES,
    EncodedVideo,
    PacketError,
    packetize,
    parse,
)


def _frame(n: int, frame_no: int = 7, key: bool = True) -> EncodedVideo:
    return EncodedVideo(bytes(i % 251 for i in range(n)), frame_no, key, VideoCodec.AV1, 123456)


def test_a_frame_is_cut_into_equal_fragments_that_carry_its_header():
    frame = _frame(2 * MAX_FRAGMENT_DATA + 10)
    payloads = packetize(frame)
    assert len(payloads) == 3
    sizes = [len(p) - HEADER_BYTES for p in payloads]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= MAX_FRAGMENT_DATA
    frags = [parse(p) for p in payloads]
    assert [f.index for f in frags] == [0, 1, 2] and {f.count for f in frags} == {3}
    assert all(f.frame_no == 7 and f.keyframe and f.codec == VideoCodec.AV1 and f.timestamp_ms == 123456
               for f in frags)
    assert b"".join(f.data for f in frags) == frame.data


def test_frame_numbers_and_timestamps_wrap():
    frag = parse(packetize(EncodedVideo(b"x", 65536 + 5, False, VideoCodec.H264, (1 << 24) + 9))[0])
    assert (frag.frame_no, frag.timestamp_ms, frag.keyframe, frag.count) == (5, 9, False, 1)


def test_a_frame_over_the_limit_is_refused():
    with pytest.raises(ValueError, match="coded video frame"):
        packetize(_frame(MAX_FRAME_BYTES + 1))
    with pytest.raises(ValueError):
        packetize(_frame(0))


@pytest.mark.parametrize("header", [
    bytes((0, 1, 0, 0, 0b011, 0, 0, 0)),      # zero fragments
    bytes((0, 1, 3, 3, 0b011, 0, 0, 0)),      # index past the count
    bytes((0, 1, 0, 65, 0b011, 0, 0, 0)),     # more fragments than the limit
    bytes((0, 1, 0, 1, 0b1011, 0, 0, 0)),     # an unknown flag
    bytes((0, 1, 0, 1, 0b000, 0, 0, 0)),      # no codec
    bytes((0, 1, 0, 1, 0b110, 0, 0, 0)),      # codec 3 does not exist
])
def test_malformed_fragments_are_packet_errors(header):
    with pytest.raises(PacketError):
        parse(header + b"data")


def test_short_and_oversize_payloads_are_packet_errors():
    with pytest.raises(PacketError):
        parse(bytes(HEADER_BYTES))
    with pytest.raises(PacketError):
        parse(bytes((0, 1, 0, 1, 0b011, 0, 0, 0)) + b"x" * (MAX_FRAGMENT_DATA + 1))

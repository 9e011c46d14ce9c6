import pytest

from nerfconf.net.errors import ProtocolError
from nerfconf.net.messages import (
    MAX_BODY,
    CallMode,
    ControlDeframer,
    Feedback,
    Hello,
    LossReport,
    ModeRequest,
    ModeSwitch,
    Refuse,
    VideoCodec,
    VideoFeedback,
    Welcome,
    encode_message,
)


def test_messages_round_trip_through_any_split():
    msgs = [Hello("secret-token", copies=3), Welcome(copies=1), Feedback(acks=(1, 65535), nacks=(7,)),
            Feedback(iframe_request=True), Feedback(acks=(3,), nacks=(2,), lost=255), Feedback(lost=1),
            Refuse("wrong room token"),
            ModeRequest(CallMode.VIDEO, frozenset({VideoCodec.H264, VideoCodec.AV1}), 65535),
            ModeRequest(CallMode.AVATAR, frozenset(), 32), ModeSwitch(CallMode.VIDEO, VideoCodec.H264, 65535),
            ModeSwitch(CallMode.AVATAR, VideoCodec.NONE, 3), VideoFeedback((5, 6)),
            VideoFeedback((), LossReport(255, 40)), VideoFeedback((1,), LossReport(0, 0))]
    wire = b"".join(encode_message(m) for m in msgs)
    for step in (1, 2, 5, len(wire)):
        d = ControlDeframer()
        out = []
        for i in range(0, len(wire), step):
            out += d.feed(wire[i : i + step])
        assert out == msgs
        assert d.buffered == 0


@pytest.mark.parametrize("raw", [
    bytes((99, 0, 0)),                      # unknown type
    bytes((4, 0, 1, 5)),                    # feedback flags out of range
    bytes((4, 0, 1, 2)),                    # feedback truncated before its loss count
    bytes((4, 0, 4, 2, 0, 0, 0)),           # a loss count of 0 (the flag says one follows)
    bytes((4, 0, 2, 0, 3)),                 # feedback truncated in its seq list
    bytes((2, 0, 2, 1, 0)),                 # welcome with copies 0
    bytes((1, 0xFF, 0xFF)),                 # declared length over the limit
    bytes((5, 0, 4, 2, 1, 0, 32)),          # mode request for mode 2
    bytes((5, 0, 4, 1, 0, 0, 32)),          # video requested in no codec
    bytes((5, 0, 4, 1, 8, 0, 32)),          # video requested in codec 3
    bytes((5, 0, 4, 1, 2, 0, 0)),           # a cap of 0 kbps
    bytes((6, 0, 4, 1, 0, 0, 0)),           # a switch to video in no codec
    bytes((6, 0, 4, 0, 1, 0, 0)),           # a switch to avatar naming a codec
    bytes((6, 0, 3, 0, 0, 0)),              # switch truncated
    bytes((7, 0, 2, 1, 9)),                 # video feedback truncated in its report
    bytes((7, 0, 3, 2, 0, 0)),              # unknown video feedback flags
    bytes((7, 0, 3, 0, 1, 0)),              # video nack list truncated
    bytes((7, 0, 3, 0, 0, 9)),              # trailing bytes after the nack list
])
def test_malformed_messages_raise_protocol_error(raw):
    with pytest.raises(ProtocolError):
        ControlDeframer().feed(raw)


def test_buffer_is_bounded_by_one_message():
    d = ControlDeframer()
    d.feed(bytes((3,)) + MAX_BODY.to_bytes(2, "big") + b"x" * (MAX_BODY - 1))
    assert d.buffered == MAX_BODY + 2


def test_feedback_validates_sequence_numbers():
    with pytest.raises(ValueError):
        Feedback(acks=(70000,))
    with pytest.raises(ValueError):
        Feedback(nacks=tuple(range(300)))
    with pytest.raises(ValueError, match="lost"):
        Feedback(lost=256)


def test_a_loss_count_costs_one_byte_and_only_when_there_is_one():
    assert len(encode_message(Feedback(acks=(1,), lost=3))) == len(encode_message(Feedback(acks=(1,)))) + 1
    assert bool(Feedback(lost=1)) and not bool(Feedback())

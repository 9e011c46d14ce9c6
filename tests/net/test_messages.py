import pytest

from nerfconf.net.errors import ProtocolError
from nerfconf.net.messages import (
    MAX_BODY,
    ControlDeframer,
    Feedback,
    Hello,
    Refuse,
    Welcome,
    encode_message,
)


def test_messages_round_trip_through_any_split():
    msgs = [Hello("secret-token", copies=3), Welcome(copies=1), Feedback(acks=(1, 65535), nacks=(7,)),
            Feedback(iframe_request=True), Refuse("wrong room token")]
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
    bytes((4, 0, 2, 0, 3)),                 # feedback truncated in its seq list
    bytes((2, 0, 2, 1, 0)),                 # welcome with copies 0
    bytes((1, 0xFF, 0xFF)),                 # declared length over the limit
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

import pytest

from nerfconf.net import JoinInfo, JoinStringError, new_token

FP = "ab" * 32


def test_round_trip():
    join = JoinInfo("127.0.0.1", 4433, FP.upper(), "room-token_123")
    text = str(join)
    assert text == f"nerfconf://127.0.0.1:4433#sha256={FP}&token=room-token_123"
    assert JoinInfo.parse(text) == join


def test_ipv6_and_colon_fingerprint():
    fp = ":".join(FP[i : i + 2] for i in range(0, 64, 2))
    join = JoinInfo.parse(f"nerfconf://[::1]:9000#sha256={fp}&token={'t' * 22}")
    assert join.connect_host == "::1" and join.fingerprint == FP


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:1#sha256=" + FP + "&token=abcdefgh",
    "nerfconf://127.0.0.1#sha256=" + FP + "&token=abcdefgh",
    "nerfconf://127.0.0.1:70000#sha256=" + FP + "&token=abcdefgh",
    "nerfconf://127.0.0.1:1#sha256=abc&token=abcdefgh",
    "nerfconf://127.0.0.1:1#sha256=" + FP,
    "nerfconf://127.0.0.1:1#sha256=" + FP + "&token=short",
    "nerfconf://127.0.0.1:1#sha256=" + FP + "&token=abcdefgh&token=abcdefgh",
    "nerfconf://127.0.0.1:1#sha256=" + FP + "&token=abc defgh",
])
def test_malformed_join_strings_are_named(text):
    with pytest.raises(JoinStringError):
        JoinInfo.parse(text)


def test_new_tokens_are_valid_and_distinct():
    a, b = new_token(), new_token()
    assert a != b
    JoinInfo("h", 1, FP, a)

"""Coverage-guided fuzzing of the control-stream parser (``nerfconf.net.messages``): the
handshake and feedback messages a peer sends before and during a call.

    make fuzz            # or: python fuzz/fuzz_messages.py -max_total_time=600

The one allowed failure is ProtocolError. Beyond not crashing, the parser must
not depend on how the stream was cut into reads, and whatever it accepts must
encode and parse back to the same message.
"""

import sys

import atheris

with atheris.instrument_imports(include=["nerfconf"]):
    from nerfconf.net.errors import ProtocolError
    from nerfconf.net.messages import ControlDeframer, Refuse, decode_message, encode_message


def parse(chunks: list[bytes]) -> tuple[list, bool]:
    """The messages a fresh deframer returns for the stream fed in these reads, and whether it refused it."""
    deframer, out = ControlDeframer(), []
    try:
        for chunk in chunks:
            out += deframer.feed(chunk)
    except ProtocolError:
        return out, True
    return out, False


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cut = fdp.ConsumeIntInRange(0, 64)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole, refused = parse([stream])
    split, split_refused = parse([stream[:cut], stream[cut:]])
    # a refused stream ends the call, so only the refusal has to agree, not what came before it
    assert split_refused == refused and (refused or split == whole), "the parse depends on how the stream was read"
    for msg in whole:
        if isinstance(msg, Refuse):
            continue  # a reason is free text, decoded with replacement characters: not byte-exact
        wire = encode_message(msg)
        assert decode_message(wire[0], wire[3:]) == msg, msg


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()

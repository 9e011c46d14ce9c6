"""Coverage-guided fuzzing of everything a peer's bytes reach: datagram unpacking,
stream deframing, frame parsing and both entropy decoders.

    make fuzz            # or: python fuzz/fuzz_decoder.py -max_total_time=600

The one allowed failure is BitstreamError; anything else, or an out-of-range
level, crashes the fuzzer with the input saved.

Everything costly happens once: only nerfconf is instrumented (numpy's own
branches are not what is under test), and the decoders are primed with valid
frames at start-up. A decoder changes state only when a frame decodes (a
failed decode leaves it as it was, which the decoder promises), so a primed
decoder is reused until an input decodes something, and only then replaced by
a copy of the primed one (a deep copy takes a seventh of the time of decoding
the primers again).
"""

import copy
import sys

import atheris
import numpy as np

# The arithmetic coder is left uninstrumented: it turns any bit string into symbols, so its
# branches follow the bits rather than any parsing decision, and tracing them halved the speed.
# It still runs on every input (a crash in it is caught); tests/codec/test_arith.py covers it.
with atheris.instrument_imports(include=["nerfconf"], exclude=["nerfconf.codec.arith"]):
    from nerfconf.codec.config import CodecConfig, Reference
    from nerfconf.codec.decoder import ParamDecoder
    from nerfconf.codec.encoder import ParamEncoder
    from nerfconf.codec.entropy import CoderId
    from nerfconf.codec.errors import BitstreamError
    from nerfconf.codec.frame import MAX_FRAMES_PER_DATAGRAM, StreamDeframer, unpack_datagram
    from nerfconf.tracks import synthetic_track

TRACK = synthetic_track(120, seed=3)
CONFIGS = [
    CodecConfig.fit(TRACK.layout, TRACK.values[:100], coder=c, reference=Reference.ANCHOR, gop_frames=8)
    for c in CoderId
]
# Valid frames to prime the decoder with, so fuzzed P-frames find references.
PRIMERS = []
for cfg in CONFIGS:
    enc = ParamEncoder(cfg)
    PRIMERS.append([enc.encode(TRACK.params(100 + i)).data for i in range(6)])

#: (config, frames primed) -> a decoder in exactly that state, never used itself
_templates: dict[tuple[int, int], ParamDecoder] = {}
#: the same, for the inputs to use until one of them decodes something
_primed: dict[tuple[int, int], ParamDecoder] = {}


def primed_decoder(which: int, frames: int) -> ParamDecoder:
    dec = _primed.get((which, frames))
    if dec is None:
        template = _templates.get((which, frames))
        if template is None:
            template = _templates[(which, frames)] = ParamDecoder(CONFIGS[which])
            for frame in PRIMERS[which][:frames]:
                template.decode(frame)
        dec = _primed[(which, frames)] = copy.deepcopy(template)
    return dec


def decode_checked(dec: ParamDecoder, data: bytes) -> bool:
    """Decodes one frame and checks what came out; False when it was rejected."""
    try:
        out = dec.decode(data)
    except BitstreamError:
        return False
    if out.levels is not None:
        assert np.all(out.levels >= 0) and np.all(out.levels <= dec.quantizer.top), out.levels
        assert np.all(np.isfinite(out.params.to_vector(dec.config.layout)))
    return True


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(CONFIGS) - 1)
    primed = fdp.ConsumeIntInRange(0, len(PRIMERS[which]))
    mode = fdp.ConsumeIntInRange(0, 2)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    dec = primed_decoder(which, primed)
    if mode == 0:
        frames = [rest]
    elif mode == 1:
        try:
            frames = unpack_datagram(rest)
        except BitstreamError:
            return
    else:
        # as many frames as a datagram carries: a longer stream only repeats the same decoding
        frames = [item for item in StreamDeframer().feed(rest) if not isinstance(item, BitstreamError)]
        frames = frames[:MAX_FRAMES_PER_DATAGRAM]
    # every frame is tried, even after one decoded: later ones may predict from it
    if any([decode_checked(dec, frame) for frame in frames]):
        del _primed[(which, primed)]


if __name__ == "__main__":
    for which in range(len(CONFIGS)):
        for frames in range(len(PRIMERS[which]) + 1):
            primed_decoder(which, frames)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()

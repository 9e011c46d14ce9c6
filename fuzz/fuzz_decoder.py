"""Coverage-guided fuzzing of everything a peer's bytes reach: datagram unpacking,
stream deframing, frame parsing and both entropy decoders.

    make fuzz            # or: python fuzz/fuzz_decoder.py -max_total_time=600

The one allowed failure is BitstreamError; anything else, or an out-of-range
level, crashes the fuzzer with the input saved.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from nerfconf.codec.config import CodecConfig, Reference
    from nerfconf.codec.decoder import ParamDecoder
    from nerfconf.codec.encoder import ParamEncoder
    from nerfconf.codec.entropy import CoderId
    from nerfconf.codec.errors import BitstreamError
    from nerfconf.codec.frame import StreamDeframer, unpack_datagram
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


def decode_checked(dec: ParamDecoder, data: bytes) -> None:
    try:
        out = dec.decode(data)
    except BitstreamError:
        return
    if out.levels is not None:
        assert np.all(out.levels >= 0) and np.all(out.levels <= dec.quantizer.top), out.levels
        assert np.all(np.isfinite(out.params.to_vector(dec.config.layout)))


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(CONFIGS) - 1)
    primed = fdp.ConsumeIntInRange(0, len(PRIMERS[which]))
    mode = fdp.ConsumeIntInRange(0, 2)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    dec = ParamDecoder(CONFIGS[which])
    for frame in PRIMERS[which][:primed]:
        dec.decode(frame)
    if mode == 0:
        decode_checked(dec, rest)
    elif mode == 1:
        try:
            frames = unpack_datagram(rest)
        except BitstreamError:
            return
        for frame in frames:
            decode_checked(dec, frame)
    else:
        for item in StreamDeframer().feed(rest):
            if not isinstance(item, BitstreamError):
                decode_checked(dec, item)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()

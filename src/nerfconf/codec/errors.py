"""The one error type a decoder raises, with subtypes a transport can act on."""


class BitstreamError(ValueError):
    """Input bytes are not a valid parameter frame for this decoder.

    Decoders raise this (or a subclass) for truncated, corrupted, replayed,
    reordered-beyond-repair or hostile input, and never anything else.
    """


class MissingReferenceError(BitstreamError):
    """A P-frame predicts from a frame this decoder does not hold.

    Not a corruption: the reference was lost or evicted. The receiver should
    ask the sender for an I-frame instead of guessing.
    """

    def __init__(self, message: str, *, seq: int, ref_seq: int) -> None:
        super().__init__(message)
        self.seq = seq
        self.ref_seq = ref_seq


class DuplicateFrameError(BitstreamError):
    """The frame's sequence number was already decoded (a replay or a redundant copy)."""


class IncompatibleStreamError(BitstreamError):
    """The stream was made by a codec version or configuration this decoder cannot read."""

"""Codec configuration shared by a sender's encoder and a receiver's decoder."""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from nerfconf.codec.context_coder import ArithmeticCoder, ContextPriors
from nerfconf.codec.entropy import CoderId, EntropyCoder
from nerfconf.codec.expgolomb import ExpGolombCoder
from nerfconf.codec.frame import FORMAT_VERSION, MAX_REF_DISTANCE
from nerfconf.codec.quantize import MAX_BITS, MIN_BITS, Bounds, Quantizer
from nerfconf.types import ParamLayout

DEFAULT_FPS = 20.0


class Reference(enum.Enum):
    """What a P-frame predicts from."""

    #: the previous decoded frame (the paper); one loss breaks the rest of the GOP
    PREV = "prev"
    #: the GOP's I-frame, or the newest frame the receiver acknowledged; one loss costs one frame
    ANCHOR = "anchor"


@dataclass(frozen=True)
class CodecConfig:
    layout: ParamLayout
    bounds: Bounds
    bits: int = 8
    coder: CoderId = CoderId.ARITHMETIC
    reference: Reference = Reference.PREV
    #: frames per GOP; 20 is one second at the paper's 20 fps
    gop_frames: int = 20
    priors: ContextPriors | None = None

    def __post_init__(self) -> None:
        if self.bounds.dims != self.layout.dims:
            raise ValueError(
                f"bounds have {self.bounds.dims} dimensions but the layout has {self.layout.dims}"
            )
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f"quantization depth must be {MIN_BITS}..{MAX_BITS} bits, got {self.bits}")
        if not 1 <= self.gop_frames <= MAX_REF_DISTANCE + 1:
            raise ValueError(f"GOP length must be 1..{MAX_REF_DISTANCE + 1} frames, got {self.gop_frames}")
        if self.priors is not None and self.priors.dims != self.layout.dims:
            raise ValueError(
                f"context priors are for {self.priors.dims} dimensions, the layout has {self.layout.dims}"
            )

    @classmethod
    def gop_from_seconds(cls, seconds: float, fps: float = DEFAULT_FPS) -> int:
        return max(1, min(MAX_REF_DISTANCE + 1, round(seconds * fps)))

    def make_quantizer(self) -> Quantizer:
        return Quantizer(self.bounds, self.bits)

    def make_coder(self, coder: CoderId | None = None) -> EntropyCoder:
        if (coder if coder is not None else self.coder) == CoderId.EXP_GOLOMB:
            return ExpGolombCoder(self.layout.dims, self.bits)
        return ArithmeticCoder(self.layout.dims, self.bits, self.priors)

    @property
    def tag(self) -> int:
        """16-bit fingerprint of everything both peers must agree on to decode.

        Sent in every I-frame, so a receiver holding the wrong avatar bundle
        (other bounds, other face model) fails loudly instead of rendering
        garbage. The coder and reference mode are not part of it: the coder is
        named in every frame header and the reference in every P-frame.
        """
        head = struct.pack(
            "<BBBB", FORMAT_VERSION, self.layout.n_expression, int(self.layout.translation), self.bits
        )
        priors = self.priors.canonical_bytes() if self.priors is not None else b""
        return zlib.crc32(head + self.bounds.canonical_bytes() + priors) & 0xFFFF

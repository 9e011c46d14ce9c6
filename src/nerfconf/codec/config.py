"""Codec configuration shared by a sender's encoder and a receiver's decoder."""

from __future__ import annotations

import enum
import json
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np

from nerfconf.codec.context_coder import ArithmeticCoder, ContextPriors
from nerfconf.codec.entropy import CoderId, EntropyCoder
from nerfconf.codec.expgolomb import ExpGolombCoder
from nerfconf.codec.frame import FORMAT_VERSION, MAX_REF_DISTANCE
from nerfconf.codec.priors import fit_priors
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

    # -- persistence: the codec section of an avatar bundle ---------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "n_expression": self.layout.n_expression,
                "translation": self.layout.translation,
                "bits": self.bits,
                "coder": self.coder.name.lower(),
                "reference": self.reference.value,
                "gop_frames": self.gop_frames,
                "bounds": json.loads(self.bounds.to_json()),
                "priors": json.loads(self.priors.to_json()) if self.priors else None,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        try:
            obj = json.loads(text)
            if obj["format"] != FORMAT_VERSION:
                raise ValueError(f"codec format {obj['format']}, this version reads {FORMAT_VERSION}")
            priors = obj.get("priors")
            return cls(
                layout=ParamLayout(int(obj["n_expression"]), bool(obj["translation"])),
                bounds=Bounds.from_json(json.dumps(obj["bounds"])),
                bits=int(obj["bits"]),
                coder=CoderId[str(obj["coder"]).upper()],
                reference=Reference(obj["reference"]),
                gop_frames=int(obj["gop_frames"]),
                priors=ContextPriors.from_json(json.dumps(priors)) if priors else None,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a codec configuration: {exc!r}") from exc

    @classmethod
    def fit(
        cls,
        layout: ParamLayout,
        training_values: np.ndarray,
        *,
        bits: int = 8,
        coder: CoderId = CoderId.ARITHMETIC,
        reference: Reference = Reference.PREV,
        gop_frames: int = 20,
    ) -> CodecConfig:
        """Bounds and arithmetic-coder priors from training frames (rows with a face)."""
        bounds = Bounds.from_data(training_values)
        config = cls(layout, bounds, bits=bits, coder=coder, reference=reference, gop_frames=gop_frames)
        quantizer = config.make_quantizer()
        levels = np.stack([quantizer.quantize(v) for v in training_values])
        return replace(config, priors=fit_priors(levels, gop_frames, bits))

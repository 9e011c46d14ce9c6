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
from nerfconf.codec.quantize import Bounds, Quantizer, equal_step_bits, normalize_bits
from nerfconf.file_format import format_problem
from nerfconf.types import ParamLayout

DEFAULT_FPS = 20.0


class Reference(enum.Enum):
    """What a P-frame predicts from."""

    #: the previous decoded frame (the paper); one loss breaks the rest of the GOP
    PREV = "prev"
    #: the GOP's I-frame, or the newest frame the receiver acknowledged; one loss costs one frame
    ANCHOR = "anchor"


class Allocation(enum.Enum):
    """How quantization depth is spread over the dimensions."""

    #: every dimension gets the same depth between its own bounds (the paper)
    UNIFORM = "uniform"
    #: expression components share one step size; pose keeps the full depth
    EQUAL_STEP = "equal-step"


@dataclass(frozen=True)
class CodecConfig:
    layout: ParamLayout
    bounds: Bounds
    #: quantization depth: one for every dimension, or one per dimension (normalised to a tuple)
    bits: int | tuple[int, ...] = 8
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
        object.__setattr__(self, "bits", normalize_bits(self.bits, self.layout.dims))
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
            return ExpGolombCoder(self.bits)
        return ArithmeticCoder(self.bits, self.priors)

    @property
    def tag(self) -> int:
        """16-bit fingerprint of everything both peers must agree on to decode.

        Sent in every I-frame, so a receiver holding the wrong avatar bundle
        (other bounds, other face model) fails loudly instead of rendering
        garbage. The coder and reference mode are not part of it: the coder is
        named in every frame header and the reference in every P-frame.
        """
        head = struct.pack("<BBB", FORMAT_VERSION, self.layout.n_expression, int(self.layout.translation))
        head += bytes(self.bits)
        priors = self.priors.canonical_bytes() if self.priors is not None else b""
        return zlib.crc32(head + self.bounds.canonical_bytes() + priors) & 0xFFFF

    # -- persistence: the codec section of an avatar bundle ---------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "n_expression": self.layout.n_expression,
                "translation": self.layout.translation,
                "bits": list(self.bits),
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
            if problem := format_problem(obj["format"], FORMAT_VERSION):
                raise ValueError(f"codec {problem}")
            priors = obj.get("priors")
            return cls(
                layout=ParamLayout(int(obj["n_expression"]), bool(obj["translation"])),
                bounds=Bounds.from_json(json.dumps(obj["bounds"])),
                bits=obj["bits"] if isinstance(obj["bits"], int) else tuple(int(b) for b in obj["bits"]),
                coder=CoderId[str(obj["coder"]).upper()],
                reference=Reference(obj["reference"]),
                gop_frames=int(obj["gop_frames"]),
                priors=ContextPriors.from_json(json.dumps(priors)) if priors else None,
            )
        # RecursionError: nested deeper than the JSON parser goes
        except (KeyError, TypeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"not a codec configuration: {exc!r}") from exc

    @classmethod
    def fit(
        cls,
        layout: ParamLayout,
        training_values: np.ndarray,
        *,
        bits: int = 8,
        allocation: Allocation = Allocation.EQUAL_STEP,
        coder: CoderId = CoderId.ARITHMETIC,
        reference: Reference = Reference.PREV,
        gop_frames: int = 20,
    ) -> CodecConfig:
        """Bounds, bit depths and arithmetic-coder priors from training frames (rows with a face).

        ``bits`` is the depth of every dimension (``uniform``, the paper) or of
        the widest expression component (``equal-step``, see
        :func:`~nerfconf.codec.quantize.equal_step_bits`).
        """
        bounds = Bounds.from_data(training_values)
        depths: int | tuple[int, ...] = bits
        if allocation == Allocation.EQUAL_STEP:
            depths = equal_step_bits(bounds, layout.n_expression, max_bits=bits)
        config = cls(layout, bounds, bits=depths, coder=coder, reference=reference, gop_frames=gop_frames)
        quantizer = config.make_quantizer()
        levels = np.stack([quantizer.quantize(v) for v in training_values])
        return replace(config, priors=fit_priors(levels, gop_frames, config.bits))

"""Typed values that cross module boundaries (see docs/architecture.md).

Every item carries its capture time and frame index so that any stage can
compute per-module and end-to-end latency without extra plumbing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

#: Expression coefficients per frame, as in the paper (CPEM / FaceWarehouse had 46).
DEFAULT_EXPRESSION_DIMS = 46


@dataclass(frozen=True)
class ParamLayout:
    """Which dimensions a parameter vector holds, in wire order.

    The vector is ``expression[K] ++ rotation[3] ++ translation[3]?``. Rotation
    is three angles in radians (yaw, pitch, roll about the head's y, x, z axes);
    translation, when present, is metres in camera space.
    """

    n_expression: int = DEFAULT_EXPRESSION_DIMS
    translation: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.n_expression <= 255:
            raise ValueError(f"n_expression must be in 1..255, got {self.n_expression}")

    @property
    def dims(self) -> int:
        return self.n_expression + 3 + (3 if self.translation else 0)

    def names(self) -> list[str]:
        names = [f"exp{i}" for i in range(self.n_expression)]
        names += ["yaw", "pitch", "roll"]
        if self.translation:
            names += ["tx", "ty", "tz"]
        return names


@dataclass
class Frame:
    """One captured camera or video frame (RGB, uint8, HxWx3)."""

    image: np.ndarray
    t_capture: float
    index: int


@dataclass
class FaceParams:
    """What the sender extracts from one frame and the receiver renders from.

    When ``face_found`` is False the numeric fields hold no information (the
    receiver holds the last pose and fades), and the codec sends no values.
    """

    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray | None
    face_found: bool
    t_capture: float
    index: int

    @classmethod
    def from_vector(
        cls,
        vector: np.ndarray,
        layout: ParamLayout,
        *,
        face_found: bool = True,
        t_capture: float = 0.0,
        index: int = 0,
    ) -> FaceParams:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (layout.dims,):
            raise ValueError(f"expected a vector of {layout.dims} values, got shape {vector.shape}")
        k = layout.n_expression
        return cls(
            expression=vector[:k].copy(),
            rotation=vector[k : k + 3].copy(),
            translation=vector[k + 3 : k + 6].copy() if layout.translation else None,
            face_found=face_found,
            t_capture=t_capture,
            index=index,
        )

    @classmethod
    def no_face(cls, layout: ParamLayout, *, t_capture: float = 0.0, index: int = 0) -> FaceParams:
        return cls.from_vector(
            np.zeros(layout.dims), layout, face_found=False, t_capture=t_capture, index=index
        )

    def to_vector(self, layout: ParamLayout) -> np.ndarray:
        if self.expression.shape != (layout.n_expression,):
            raise ValueError(
                f"expected {layout.n_expression} expression coefficients, "
                f"got shape {np.shape(self.expression)}"
            )
        if np.shape(self.rotation) != (3,):
            raise ValueError(f"rotation must hold 3 angles, got shape {np.shape(self.rotation)}")
        parts = [np.asarray(self.expression, np.float64), np.asarray(self.rotation, np.float64)]
        if layout.translation:
            if self.translation is None or np.shape(self.translation) != (3,):
                raise ValueError("this layout carries translation, but the params have none")
            parts.append(np.asarray(self.translation, np.float64))
        return np.concatenate(parts)


class FrameType(enum.IntEnum):
    I = 0  # noqa: E741 - the codec term of art
    P = 1


@dataclass(frozen=True)
class EncodedFrame:
    """One coded parameter frame, ready for a transport to carry."""

    data: bytes
    frame_type: FrameType
    seq: int
    timestamp_ms: int
    face_found: bool
    #: sequence number this P-frame predicts from (None for I-frames and empty frames)
    ref_seq: int | None = None


@dataclass
class RenderedFrame:
    """An image the receiver's avatar produced for one set of parameters."""

    image: np.ndarray
    index: int
    depth: np.ndarray | None = None
    alpha: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

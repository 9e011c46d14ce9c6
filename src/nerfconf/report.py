"""Results to JSON, in one place.

Benchmarks and evaluations return typed dataclasses; commands print them with ``to_json``.
Nested dataclasses, tuples, numpy scalars and arrays and paths are converted here, and a
NaN (a figure that could not be measured) becomes ``null`` rather than the non-standard
``NaN`` that ``json.dumps`` writes by default. A field declared with ``metadata=INLINE`` has
its own keys written into its parent's object, so that a result can nest a typed part (a
codec run inside a row that also names its allocation) and keep a flat JSON shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

#: ``dataclasses.field(metadata=INLINE)``: the field's keys go into its parent's JSON object
INLINE = {"inline": True}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_object(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _dataclass_object(value: Any) -> dict:
    out: dict = {}
    for f in dataclasses.fields(value):
        item = jsonable(getattr(value, f.name))
        if not f.metadata.get("inline"):
            item = {f.name: item}
        elif not isinstance(item, dict):
            raise TypeError(f"{type(value).__name__}.{f.name}: only an object can be inlined, got {item!r}")
        for key in item:
            if key in out:
                # two figures under one name: one of them would silently vanish from the JSON
                raise ValueError(f"{type(value).__name__}: key {key!r} is written twice")
        out.update(item)
    return out


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)

"""Results to JSON: nested dataclasses, numpy values, paths, and NaN as null."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nerfconf.net.protocol import State
from nerfconf.report import INLINE, to_json


@dataclass(frozen=True)
class Inner:
    ms: float
    counts: np.ndarray


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner | None
    runs: list[Inner]
    path: Path
    state: State


def test_nested_results_become_plain_json():
    value = Outer("x", Inner(np.float32(1.5), np.array([1, 2])), [Inner(math.nan, np.zeros(0))], Path("a/b"),
                  State.OPEN)
    out = json.loads(to_json(value))
    assert out == {"name": "x", "inner": {"ms": 1.5, "counts": [1, 2]}, "runs": [{"ms": None, "counts": []}],
                   "path": "a/b", "state": "open"}
    assert "NaN" not in to_json({"x": float("inf")})


@dataclass(frozen=True)
class Row:
    label: str
    inner: Inner = field(metadata=INLINE)
    ok: bool


def test_an_inlined_field_writes_its_keys_into_its_parent():
    out = json.loads(to_json(Row("a", Inner(2.0, np.array([3])), True)))
    assert out == {"label": "a", "ms": 2.0, "counts": [3], "ok": True}
    assert list(out) == ["label", "ms", "counts", "ok"]  # in field order, as a flat dict would be


@dataclass(frozen=True)
class Clash:
    ms: float
    inner: Inner = field(metadata=INLINE)


@dataclass(frozen=True)
class NotAnObject:
    inner: float = field(metadata=INLINE)


def test_an_inlined_field_may_neither_hide_a_key_nor_be_a_plain_value():
    with pytest.raises(ValueError, match="Clash: key 'ms' is written twice"):
        to_json(Clash(1.0, Inner(2.0, np.zeros(0))))
    with pytest.raises(TypeError, match="NotAnObject.inner: only an object can be inlined"):
        to_json(NotAnObject(1.0))

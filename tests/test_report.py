"""Results to JSON: nested dataclasses, numpy values, paths, and NaN as null."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.net.protocol import State
from nerfconf.report import to_json


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

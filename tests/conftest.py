from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def shared_data(name: str) -> Path:
    """Path to a file in ../shared/data: fails under CI when missing, skips elsewhere."""
    path = DATA / name
    if not path.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs {path}; ../shared/data must sit beside the checkout")
        pytest.skip(f"{path} not found: put ../shared/data beside the checkout to run this test")
    return path

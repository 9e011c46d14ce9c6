"""Terminal output shared by commands."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    # Piped output (make, CI logs) would otherwise wrap tables at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 120)

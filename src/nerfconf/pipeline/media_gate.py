"""Which of the peer's streams the display shows: the mode the peer says it sends in.

A receiver runs the avatar path and the video path side by side on the same
sinks; each writes through a :class:`GatedSink` that passes only while its mode
is the one showing. The mode showing is the one this peer asked for until the
sender's ``ModeSwitch`` says what it actually sends, so frames of the old mode
still in flight after a switch do not flicker over the new one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nerfconf.net.messages import CallMode, ModeSwitch

log = logging.getLogger(__name__)


class MediaGate:
    def __init__(self, mode: CallMode) -> None:
        self.showing = mode
        self.switches: list[ModeSwitch] = []
        #: one writer at a time on the shared sinks
        self.lock = threading.Lock()

    def requested(self, mode: CallMode) -> None:
        """This peer asked for ``mode``; shown once the sender confirms it (see :meth:`announced`)."""
        if not self.switches:
            self.showing = mode

    def announced(self, switch: ModeSwitch) -> None:
        self.switches.append(switch)
        if switch.mode != self.showing:
            log.info("the peer now sends %s (from frame %d)", _describe(switch), switch.first)
        self.showing = switch.mode


def _describe(switch: ModeSwitch) -> str:
    return "avatar parameters" if switch.mode == CallMode.AVATAR else f"{switch.codec.name} video"


class GatedSink:
    """A sink that one mode's path writes through; it passes only while that mode is showing."""

    def __init__(self, sink: Any, gate: MediaGate, mode: CallMode) -> None:
        self._sink = sink
        self._gate = gate
        self._mode = mode
        self.written = 0

    def write(self, image) -> None:
        if self._gate.showing != self._mode:
            return
        with self._gate.lock:
            self._sink.write(image)
        self.written += 1

    def close(self) -> None:
        """The sink's owner closes it, not each path."""

    def __getattr__(self, name: str) -> Any:
        # the window's live view, and whether it was closed
        return getattr(self._sink, name)

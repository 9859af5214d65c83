"""A one-line progress bar on a terminal, for large layers.

Drawn only when the stream is a TTY and the layer is at least
:data:`MIN_BYTES`; otherwise every call does nothing, so scripts and logs get
no control characters. The bar is redrawn at most every
:data:`REDRAW_SECONDS` with a carriage return, and cleared when the step ends.

Public API: :class:`Progress`, :data:`MIN_BYTES`, and :class:`ProgressBar`
(a bar the caller redraws itself, used by ``regseal seal`` on main; kept here
unchanged so the two branches share one module).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

MIN_BYTES = 16 << 20
REDRAW_SECONDS = 0.2
WIDTH = 24
MIB = 1 << 20


class Progress:
    """Progress of the steps of one command, drawn on ``stream``.

    Args:
        stream: Where to draw (``sys.stderr``).
        enabled: False turns the bar off even on a TTY.
        min_bytes: Steps smaller than this draw nothing.
        clock: Seconds, monotonic (tests replace it).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool = True,
        min_bytes: int = MIN_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._enabled = enabled and stream.isatty()
        self._min_bytes = min_bytes
        self._clock = clock

    def step(self, label: str, total: int) -> Callable[[int], None]:
        """Start a step of ``total`` bytes; returns the function to report bytes.

        Call the returned function with each count of bytes done; a call
        with 0 after the last bytes is not needed: the step ends on its own
        once ``total`` bytes were reported.
        """
        if not self._enabled or total < self._min_bytes:
            return _ignore
        done = 0
        drawn = -REDRAW_SECONDS

        def report(count: int) -> None:
            nonlocal done, drawn
            done += count
            now = self._clock()
            finished = done >= total
            if finished or now - drawn >= REDRAW_SECONDS:
                drawn = now
                self._draw(label, min(done, total), total)
            if finished:
                self._stream.write("\r\x1b[K")
                self._stream.flush()

        return report

    def track(self, label: str, total: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` through, reporting their sizes as one step."""
        report = self.step(label, total)
        for chunk in chunks:
            report(len(chunk))
            yield chunk

    def _draw(self, label: str, done: int, total: int) -> None:
        filled = WIDTH * done // total if total else WIDTH
        bar = "#" * filled + "-" * (WIDTH - filled)
        percent = 100 * done // total if total else 100
        self._stream.write(
            f"\r{label} [{bar}] {percent:3d}% {done / MIB:.1f}/{total / MIB:.1f} MiB"
        )
        self._stream.flush()


def _ignore(count: int) -> None:
    """The reporter of a step that draws nothing."""


class ProgressBar:
    """Redraws ``label [####    ] done/total note`` in place.

    Args:
        label: what is being counted.
        stream: where to draw; nothing is drawn unless it is a TTY.
        width: characters of the bar itself.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()

    def update(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + " " * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {note}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

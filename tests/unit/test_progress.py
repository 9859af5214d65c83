"""The progress bar draws only on a terminal and only for large steps."""

from __future__ import annotations

import io

from regseal.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_large_step_on_a_terminal_draws_and_clears_the_line():
    stream = Terminal()
    times = iter([0.0, 0.1, 0.5, 0.6])
    progress = Progress(stream, min_bytes=100, clock=lambda: next(times))

    chunks = list(progress.track("decrypt abc", 400, [b"x" * 100] * 4))

    assert len(chunks) == 4
    frames = stream.getvalue().split("\r")
    # drawn at 0.0 and 0.5 (0.1 is too soon), then the final frame and a clear
    assert frames[1].startswith("decrypt abc [######------------------]  25%")
    assert frames[2].startswith("decrypt abc [##################------]  75%")
    assert frames[3].startswith("decrypt abc [########################] 100%")
    assert frames[4] == "\x1b[K"


def test_small_steps_and_non_terminals_draw_nothing():
    pipe = io.StringIO()
    terminal = Terminal()

    list(Progress(pipe, min_bytes=1).track("x", 10, [b"0123456789"]))
    list(Progress(terminal, min_bytes=100).track("x", 10, [b"0123456789"]))
    list(Progress(terminal, enabled=False, min_bytes=1).track("x", 10, [b"012345678"]))

    assert pipe.getvalue() == terminal.getvalue() == ""

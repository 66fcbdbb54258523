"""A progress line for long work, the way conda shows one: on a terminal only.

Nothing is printed under --json or --quiet, when stderr is not a terminal (scripts, CI, logs),
or for work that ends before SHOW_AFTER seconds: short commands stay as quiet as before.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds of work before a line appears (a quick `check` prints nothing extra).
SHOW_AFTER = 1.0
#: Most redraws per second.
REDRAWS_PER_SECOND = 10
WIDTH = 30


class Progress:
    """`with Progress("checking objects", total=n, enabled=...) as bar: bar.advance()`.

    total None counts without a bar. The line is erased when the work ends, so what follows
    (the result) reads as if there had been no progress line.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and _is_terminal(self.stream)
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._started < SHOW_AFTER or now - self._drawn_at < 1 / REDRAWS_PER_SECOND:
            return
        self._drawn_at = now
        self._shown = True
        self.stream.write("\r\x1b[K" + self.line(note))
        self.stream.flush()

    def line(self, note: str = "") -> str:
        if self.total:
            filled = min(WIDTH, WIDTH * self.done // self.total)
            text = f"{self.label} [{'#' * filled}{' ' * (WIDTH - filled)}] " \
                f"{self.done}/{self.total}"
        else:
            text = f"{self.label}: {self.done}"
        return f"{text} {note}".rstrip()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False

"""Progress on long work, for a terminal and for a log file alike.

On a terminal one line is rewritten in place (carriage return); written to a file or a pipe, a
plain line comes every `every_s` seconds and at the end, so a log holds a few readable lines
rather than one line with thousands of carriage returns."""

from __future__ import annotations

import sys
import time


def number(x, digits: int = 4) -> str:
    """A value for a console line: `digits` decimals, or "-" where it does not apply (None or NaN)."""
    return "-" if x is None or x != x else f"{x:.{digits}f}"


class Progress:
    """`done of total` for one piece of work, with the rate and the time left."""

    def __init__(self, label: str, total: int, unit: str = "items", every_s: float = 10.0, stream=None):
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.said = time.perf_counter()
        self.open = False   # a terminal line is waiting for its newline

    def line(self, done: int) -> str:
        dt = time.perf_counter() - self.t0
        rate = done / dt if dt > 0 else 0.0
        left = f", about {(self.total - done) / rate:.0f} s left" if 0 < rate and done < self.total else ""
        return f"{self.label}: {done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s{left})"

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line(done))
            self.open = True
        elif now - self.said >= self.every_s or done >= self.total:
            self.stream.write(self.line(done) + "\n")
        else:
            return
        self.said = now
        self.stream.flush()
        if done >= self.total:
            self.close()

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

"""The ratio cycler: how neural and classification batches interleave (the authors' semantics).

A ratio `n:c` means n neural batches per c classification batches. With `k:1`, k neural batches
are processed before each classification batch; with `1:k`, one neural batch comes with every
k-th classification batch (at the start of each group of k). Gradients of a group accumulate and
there is exactly one optimizer step per classification batch; an epoch is one pass over the
classification set.
"""

from __future__ import annotations

from fractions import Fraction

from core.errors import ConfigError

PAPER_RATIOS = ("1:15", "1:10", "1:7", "1:5", "1:4", "1:3", "1:2", "1:1", "2:1", "3:1", "4:1", "5:1")


def parse_ratio(text: str) -> tuple[int, int]:
    """'n:c' -> (n, c) with positive integers."""
    try:
        n, c = (int(p) for p in str(text).split(":"))
    except ValueError:
        raise ConfigError(f"ratio {text!r}: expected 'n:c' with positive integers, e.g. 1:15 or 5:1") from None
    if n < 1 or c < 1:
        raise ConfigError(f"ratio {text!r}: expected 'n:c' with positive integers, e.g. 1:15 or 5:1")
    return n, c


def ratio_value(text: str) -> float:
    n, c = parse_ratio(text)
    return float(Fraction(n, c))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def neural_batches_before(step: int, n: int, c: int) -> int:
    """Number of neural batches that accumulate into optimizer step `step` (0-based)."""
    return _ceil_div((step + 1) * n, c) - _ceil_div(step * n, c)


def schedule(n_cls_batches: int, ratio: str) -> list[list[str]]:
    """One list per optimizer step: the batches processed before it, e.g. ['neural', 'classification']."""
    n, c = parse_ratio(ratio)
    return [["neural"] * neural_batches_before(s, n, c) + ["classification"] for s in range(n_cls_batches)]

"""Showing where a transcript differs from its reference (edit-distance alignment)."""

from __future__ import annotations

import numpy as np


def mark_errors(reference: str, hypothesis: str) -> str:
    """The hypothesis with its character errors marked against the reference:
    ``[r→h]`` a substitution, ``+h`` an insertion, ``-r`` a deletion.

    >>> mark_errors("cat", "cut")
    'c[a→u]t'
    """
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            substitution = cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1])
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, substitution)
    marks, i, j = [], n, m
    while i or j:  # backtrace, preferring matches/substitutions
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            r, h = reference[i - 1], hypothesis[j - 1]
            marks.append(h if r == h else f"[{r}→{h}]")
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            marks.append(f"-{reference[i - 1]}")
            i -= 1
        else:
            marks.append(f"+{hypothesis[j - 1]}")
            j -= 1
    return "".join(reversed(marks))

"""Small-number suppression of a table of counts: primary ("<5") and secondary ("*").

A count from 0 to 4 is shown as "<5". Where a column's total is shown and exactly one of its area cells is
"<5", that cell could be worked out from the total and the other cells, so the smallest other shown cell is
hidden too (as "*"); with no other cell to hide, the total is hidden instead. A hidden cell is never shown
as a number anywhere else in the answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

THRESHOLD = 5
SMALL_MARK = "<5"
SECONDARY_MARK = "*"


class Suppression(enum.Enum):
    NONE = "NONE"
    SMALL = "SMALL"
    SECONDARY = "SECONDARY"


@dataclass(frozen=True, slots=True)
class Shown:
    """A count as released: the number, or a mark in its place."""

    text: str
    suppression: Suppression


def _shown(value: int, suppression: Suppression) -> Shown:
    if suppression is Suppression.SMALL:
        return Shown(SMALL_MARK, suppression)
    if suppression is Suppression.SECONDARY:
        return Shown(SECONDARY_MARK, suppression)
    return Shown(str(value), suppression)


def suppress_column(cells: Sequence[int], total: int) -> tuple[list[Shown], Shown]:
    """One column: its area cells (in row order) and its total, as released."""
    marks = [Suppression.SMALL if v < THRESHOLD else Suppression.NONE for v in cells]
    total_mark = Suppression.SMALL if total < THRESHOLD else Suppression.NONE
    if total_mark is Suppression.NONE and marks.count(Suppression.SMALL) == 1:
        shown = [i for i, m in enumerate(marks) if m is Suppression.NONE]
        if shown:
            marks[min(shown, key=lambda i: (cells[i], i))] = Suppression.SECONDARY
        else:  # a lone area: the total would give its count away
            total_mark = Suppression.SECONDARY
    return [_shown(v, m) for v, m in zip(cells, marks, strict=True)], _shown(total, total_mark)

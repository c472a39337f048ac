"""Small-number suppression: fewer than 5 shows as "<5", and no total lets a "<5" be worked out."""

from __future__ import annotations

from gateway.analysis.suppression import SECONDARY_MARK, SMALL_MARK, Suppression, suppress_column


def texts(cells: list[int], total: int) -> tuple[list[str], str]:
    shown, shown_total = suppress_column(cells, total)
    return [s.text for s in shown], shown_total.text


def test_counts_of_five_or_more_are_shown_as_they_are() -> None:
    assert texts([5, 12, 40], 57) == (["5", "12", "40"], "57")


def test_every_count_from_zero_to_four_is_shown_as_less_than_five() -> None:
    for small in range(5):
        shown, total = suppress_column([small, small], small)
        assert [s.text for s in shown] == [SMALL_MARK, SMALL_MARK], small
        assert [s.suppression for s in shown] == [Suppression.SMALL] * 2
        assert (total.text, total.suppression) == (SMALL_MARK, Suppression.SMALL), small


def test_a_lone_small_cell_beside_a_shown_total_hides_the_next_smallest_cell() -> None:
    """Total 30 with 3, 7 and 20 shown would give 3 away as 30 - 7 - 20: 7 is hidden too, as "*"."""
    shown, total = suppress_column([3, 20, 7], 30)
    assert [s.text for s in shown] == [SMALL_MARK, "20", SECONDARY_MARK]
    assert shown[2].suppression is Suppression.SECONDARY
    assert total.text == "30"


def test_secondary_suppression_picks_the_first_of_equal_smallest_cells() -> None:
    assert texts([9, 2, 9], 20) == ([SECONDARY_MARK, SMALL_MARK, "9"], "20")


def test_two_small_cells_need_no_secondary_suppression() -> None:
    """Two hidden cells leave only their sum to be worked out, which names neither."""
    assert texts([2, 3, 11], 16) == ([SMALL_MARK, SMALL_MARK, "11"], "16")


def test_a_single_area_with_a_small_count_hides_its_total() -> None:
    """With one area, a shown total of 6 beside "<5" (people without an area) would bound it too closely."""
    assert texts([4], 6) == ([SMALL_MARK], SECONDARY_MARK)


def test_no_released_text_holds_a_suppressed_value() -> None:
    """Whatever the counts, a suppressed cell's value never appears as its text, and each column with a
    shown total has zero or at least two suppressed cells."""
    for cells in ([0, 1, 50, 60], [4, 5, 6], [1, 100], [7, 8, 9, 3], [2, 2, 2]):
        shown, total = suppress_column(cells, sum(cells))
        hidden = [s for s in shown if s.suppression is not Suppression.NONE]
        assert all(s.text in (SMALL_MARK, SECONDARY_MARK) for s in hidden), cells
        if total.suppression is Suppression.NONE:
            assert len(hidden) != 1, f"{cells}: one hidden cell beside a shown total can be worked out"

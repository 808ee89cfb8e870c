"""Small-cell suppression of the programme statistics (services/participant/statistics.py),
checked against two attackers that know nothing of the method: linear algebra on the
published counts and totals, and, for small tables, every table that fits what was shown."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.participant.schemas import Count, StatisticsQuery
from services.participant.statistics import MEASURES, STATUSES, SuppressedTable, suppress, tabulate
from services.participant.store import ProgrammeCount

Grid = list[list[int | None]]
Full = list[list[int]]


def extended(table: SuppressedTable) -> Grid:
    """The published table with its totals as one grid: the last row holds the column
    totals, the last column the row totals, the corner the grand total."""
    grid: Grid = [[*row, total] for row, total in zip(table.cells, table.row_totals, strict=True)]
    grid.append([*table.column_totals, table.total])
    return grid


def determined(table: SuppressedTable) -> list[tuple[int, int]]:
    """The suppressed cells the published numbers pin down by linear algebra alone: in the
    reduced row echelon form of the table's sum equations, a pivot whose row names no free
    unknown."""
    grid = extended(table)
    size = len(grid), len(grid[0])
    unknown = [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v is None]
    index = {cell: i for i, cell in enumerate(unknown)}
    lines = [[(r, c) for c in range(size[1])] for r in range(size[0])]
    lines += [[(r, c) for r in range(size[0])] for c in range(size[1])]
    rows = []
    for line in lines:
        row = [Fraction(0)] * len(unknown)
        for position, cell in enumerate(line):
            if cell in index:
                # Every line sums to its last cell: its cells +1, the total -1.
                row[index[cell]] = Fraction(-1 if position == len(line) - 1 else 1)
        rows.append(row)
    pivots: list[int] = []
    for column in range(len(unknown)):
        rank = len(pivots)
        pivot = next((i for i in range(rank, len(rows)) if rows[i][column] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        rows[rank] = [value / rows[rank][column] for value in rows[rank]]
        for i, row in enumerate(rows):
            if i != rank and row[column] != 0:
                rows[i] = [a - row[column] * b for a, b in zip(row, rows[rank], strict=True)]
        pivots.append(column)
    free = set(range(len(unknown))) - set(pivots)
    return [
        unknown[column]
        for rank, column in enumerate(pivots)
        if not any(rows[rank][f] != 0 for f in free)
    ]


def completions(table: SuppressedTable, bound: int = 9) -> list[Full]:
    """Every table with counts up to `bound` that shows what was published, knowing the
    rule (a suppressed count is at least 1), with its totals."""
    grid = extended(table)
    rows, columns = len(table.cells), len(table.cells[0])
    hidden = [(r, c) for r in range(rows) for c in range(columns) if grid[r][c] is None]
    found = []
    for values in itertools.product(range(1, bound + 1), repeat=len(hidden)):
        cells = [[grid[r][c] or 0 for c in range(columns)] for r in range(rows)]
        for (r, c), value in zip(hidden, values, strict=True):
            cells[r][c] = value
        full = with_totals(cells)
        if all(
            (shown is None and full[r][c] >= 1) or full[r][c] == shown
            for r, row in enumerate(grid)
            for c, shown in enumerate(row)
        ):
            found.append(full)
    return found


def with_totals(cells: Sequence[Sequence[int]]) -> Full:
    full = [[*row, sum(row)] for row in cells]
    full.append([sum(column) for column in zip(*full, strict=True)])
    return full


def pinned(
    published: Mapping[str, SuppressedTable],
    truth: Mapping[str, Sequence[Sequence[int]]],
    bound: int = 9,
) -> list[tuple[str, int, int]]:
    """The suppressed counts that no other set of tables (counts up to `bound`) could have
    while showing what was published and keeping the rules a reader knows: a suppressed
    count is at least 1, and no part exceeds the whole (`published["whole"]`) in any cell."""
    options = {name: completions(table, bound) for name, table in published.items()}
    true = {name: with_totals(cells) for name, cells in truth.items()}
    parts = [name for name in published if name != "whole"]

    def under(part: Full, whole: Full) -> bool:
        return all(
            p <= w
            for p_row, w_row in zip(part, whole, strict=True)
            for p, w in zip(p_row, w_row, strict=True)
        )

    def possible(name: str, grid: Full) -> bool:
        """Whether the other tables can be some way that fits this one."""
        wholes = [grid] if name == "whole" else [true["whole"], *options["whole"]]
        return any(
            (name == "whole" or under(grid, whole))
            and all(
                any(under(other, whole) for other in [true[k], *options[k]])
                for k in parts
                if k != name
            )
            for whole in wholes
        )

    return [
        (name, r, c)
        for name, table in published.items()
        for r, row in enumerate(extended(table))
        for c, shown in enumerate(row)
        if shown is None
        and not any(
            grid[r][c] != true[name][r][c] and possible(name, grid) for grid in options[name]
        )
    ]


def published(table: SuppressedTable) -> list[int | None]:
    return [v for row in extended(table) for v in row]


def faithful(table: SuppressedTable, cells: Sequence[Sequence[int]]) -> bool:
    """Whether every count shown is the true one, and none is from 1 to 4."""
    true = [v for row in with_totals(cells) for v in row]
    return all(
        shown is None or (shown == value and not 0 < shown < 5)
        for shown, value in zip(published(table), true, strict=True)
    )


def tables_of(statistics: dict[str, Any]) -> dict[str, SuppressedTable]:
    """The tables of a published ProgrammeStatistics (as JSON), by measure."""
    rows = statistics["programmes"]

    def table(m: str) -> SuppressedTable:
        return SuppressedTable(
            cells=tuple(tuple(r["by_status"][s][m]["value"] for s in STATUSES) for r in rows),
            row_totals=tuple(r["total"][m]["value"] for r in rows),
            column_totals=tuple(statistics["by_status"][s][m]["value"] for s in STATUSES),
            total=statistics["total"][m]["value"],
        )

    return {measure: table(measure) for measure in MEASURES}


def alone(cells: Sequence[Sequence[int]]) -> SuppressedTable:
    return suppress(cells)[0]


def shaped(rows: int, columns: int, most: int) -> st.SearchStrategy[list[list[int]]]:
    row = st.lists(st.integers(0, most) | st.integers(0, 4), min_size=columns, max_size=columns)
    return st.lists(row, min_size=rows, max_size=rows)


@st.composite
def with_parts(
    draw: st.DrawFn, shapes: st.SearchStrategy[tuple[int, int]], most: int, parts: int
) -> tuple[list[list[int]], dict[str, list[list[int]]]]:
    """A table and `parts` tables counting some of each of its cells."""
    rows, columns = draw(shapes)
    whole = draw(shaped(rows, columns, most))
    return whole, {
        # Often all of the cell: an outcome every one of the places reached.
        f"part{i}": [
            [draw(st.just(count) | st.integers(0, count)) for count in row] for row in whole
        ]
        for i in range(parts)
    }


def test_counts_from_1_to_4_are_suppressed_and_zeros_and_larger_counts_shown() -> None:
    table = alone([[0, 1, 5, 20], [0, 4, 30, 40], [0, 30, 40, 50]])
    assert [row[0] for row in table.cells] == [0, 0, 0]
    assert table.cells[0][1] is None and table.cells[1][1] is None
    assert table.cells[2][2:] == (40, 50)
    assert table.column_totals[0] == 0


def test_a_lone_small_count_takes_three_more_with_it_so_its_row_and_column_do_not_tell() -> None:
    table = alone([[3, 10], [12, 20]])
    # The cheapest rectangle through the 3 is the table's own four cells; the totals stay.
    assert table == SuppressedTable(
        cells=((None, None), (None, None)), row_totals=(13, 32), column_totals=(15, 30), total=45
    )
    assert determined(table) == []


def test_small_totals_are_suppressed_too() -> None:
    assert published(alone([[2]])) == [None] * 4
    assert published(alone([[1, 1], [1, 1]])) == [None] * 9
    assert alone([[6, 2, 0]]).column_totals == (None, None, 0)


def test_two_ones_cannot_hide_each_other_when_a_hidden_count_is_known_to_be_at_least_1() -> None:
    # Hiding the ones and their column totals only: they sum to 14 - 12 = 2, and each is at
    # least 1, so each is 1. Linear algebra alone would not see it.
    naive = SuppressedTable(
        cells=((None, None, 6, 6),), row_totals=(14,), column_totals=(None, None, 6, 6), total=14
    )
    assert determined(naive) == []
    assert len(pinned({"whole": naive}, {"whole": [[1, 1, 6, 6]]})) == 4
    table = alone([[1, 1, 6, 6]])
    assert table.cells[0][2] is None
    assert pinned({"whole": table}, {"whole": [[1, 1, 6, 6]]}) == []


def test_an_outcome_shown_where_its_places_are_hidden_would_give_them_away() -> None:
    # One planned place and seven active, all seven started: hiding the places of each
    # table alone, "started: 7" and the row total 8 would tell the 1 and the 7 (an outcome
    # never exceeds its places). Suppressed as parts of the places, they cannot.
    truth = {"whole": [[1, 7], [0, 12]], "started": [[0, 7], [0, 12]]}
    each_alone = {name: alone(cells) for name, cells in truth.items()}
    assert published(each_alone["started"]) == [0, 7, 7, 0, 12, 12, 0, 19, 19]
    assert ("whole", 0, 0) in pinned(each_alone, truth)

    whole, parts = suppress(truth["whole"], {"started": truth["started"]})
    assert whole.cells[0][0] is None
    assert pinned({"whole": whole, **parts}, truth) == []


@settings(max_examples=80, deadline=None)
@given(with_parts(st.tuples(st.integers(1, 5), st.integers(1, 4)), most=12, parts=3))
def test_no_suppressed_count_follows_from_the_counts_and_totals_shown(
    drawn: tuple[list[list[int]], dict[str, list[list[int]]]],
) -> None:
    whole, parts = drawn
    published_whole, published_parts = suppress(whole, parts)
    for table, cells in [
        (published_whole, whole),
        *zip(published_parts.values(), parts.values(), strict=True),
    ]:
        assert determined(table) == []
        assert faithful(table, cells)
    assert suppress(whole, parts) == (published_whole, published_parts)


@settings(max_examples=40, deadline=None)
@given(with_parts(st.sampled_from([(1, 2), (2, 1), (1, 3), (2, 2), (1, 4), (4, 1)]), 7, 0))
def test_every_suppressed_count_could_have_another_value(
    drawn: tuple[list[list[int]], dict[str, list[list[int]]]],
) -> None:
    assert pinned({"whole": alone(drawn[0])}, {"whole": drawn[0]}) == []


@settings(max_examples=60, deadline=None)
@given(with_parts(st.sampled_from([(1, 2), (2, 1), (1, 3), (2, 2)]), 7, 2))
def test_every_suppressed_count_could_have_another_value_knowing_parts_never_exceed_the_whole(
    drawn: tuple[list[list[int]], dict[str, list[list[int]]]],
) -> None:
    whole, parts = suppress(*drawn)
    assert pinned({"whole": whole, **parts}, {"whole": drawn[0], **drawn[1]}) == []


@pytest.mark.parametrize("cells", [[], [[]], [[1, 2], [3]], [[-1, 6]]])
def test_only_a_table_of_counts_is_suppressed(cells: list[list[int]]) -> None:
    with pytest.raises(ValueError):
        suppress(cells)


@pytest.mark.parametrize("part", [[[1, 2]], [[6, 1]], [[1, 1], [1, 1]]])
def test_a_part_counts_some_of_each_cell_of_the_whole(part: list[list[int]]) -> None:
    with pytest.raises(ValueError):
        suppress([[5, 1]], {"part": part})


PERIOD = StatisticsQuery(year=2025)


def counted(programme: str, status: str, places: int, started: int = 0) -> ProgrammeCount:
    return ProgrammeCount(programme, "Vestland", status, places, started, 0, 0)


def test_tabulate_gives_a_row_per_programme_a_column_per_status_and_the_totals() -> None:
    statistics = tabulate(
        [
            counted("vgo", "active", 12, 10),
            counted("vgo", "completed", 8, 8),
            counted("intro", "active", 20, 20),
            counted("intro", "planned", 9, 0),
        ],
        orgnr="821311608",
        period=PERIOD,
    )
    assert [(p.programme, p.county) for p in statistics.programmes] == [
        ("intro", "Vestland"),
        ("vgo", "Vestland"),
    ]
    intro, vgo = statistics.programmes
    assert list(vgo.by_status) == list(STATUSES)
    assert vgo.by_status["active"].places.value == 12
    assert vgo.by_status["discontinued"].places.value == 0
    assert vgo.total.places.value == 20 and intro.total.started.value == 20
    assert statistics.by_status["active"].places.value == 32
    assert statistics.total.places.value == 49
    assert statistics.total.fagbrev.value == 0 and not statistics.total.fagbrev.suppressed
    assert statistics.suppression.threshold == 5


def test_an_outcome_is_suppressed_in_its_table_and_the_places_stay_where_they_can() -> None:
    statistics = tabulate(
        [counted("vgo", "active", 12, 2), counted("vgo", "completed", 8, 8)],
        orgnr="821311608",
        period=PERIOD,
    )
    (vgo,) = statistics.programmes
    assert vgo.by_status["active"].places.value == 12
    assert vgo.by_status["active"].started == Count(value=None, suppressed=True)


def test_tabulate_suppresses_the_outcomes_as_parts_of_the_places() -> None:
    statistics = tabulate(
        [
            counted("intro", "planned", 1, 0),
            counted("intro", "active", 7, 7),
            counted("vgo", "active", 12, 12),
        ],
        orgnr="821311608",
        period=PERIOD,
    )
    truth = {
        "places": [[1, 7, 0, 0], [0, 12, 0, 0]],
        "started": [[0, 7, 0, 0], [0, 12, 0, 0]],
        "fagbrev": [[0] * 4] * 2,
        "work": [[0] * 4] * 2,
    }
    published = tables_of(statistics.model_dump(mode="json"))
    assert published["places"].cells[0][0] is None
    assert (
        pinned(
            {"whole": published.pop("places"), **published}, {"whole": truth.pop("places"), **truth}
        )
        == []
    )


def test_no_places_make_a_table_of_zeros() -> None:
    statistics = tabulate([], orgnr="821311608", period=PERIOD)
    assert statistics.programmes == []
    assert {s: c.places.value for s, c in statistics.by_status.items()} == dict.fromkeys(
        STATUSES, 0
    )
    assert statistics.total.work.value == 0


def test_a_period_is_one_calendar_year() -> None:
    assert (PERIOD.starts_from, PERIOD.starts_before) == (date(2025, 1, 1), date(2026, 1, 1))
    with pytest.raises(ValidationError):
        StatisticsQuery.model_validate({"from": "2025-01-01", "to": "2026-01-01"})

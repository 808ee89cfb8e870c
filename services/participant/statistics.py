"""Programme statistics with small counts suppressed: pure functions, no I/O.

The statistics are tables of one shape — programmes by status, with a total per row, per
column and in all: one of the places (the whole), and one per outcome, which counts a part
of the same places (never more than the places, in any cell). Suppression has two steps:

1. Primary: every count from 1 to `THRESHOLD - 1` is suppressed, totals included. Zeros
   are shown, so a suppressed count is known to be at least 1.
2. Secondary, by the hypercube method (τ-ARGUS's name; in two dimensions a rectangle): for
   each primary count, three more counts of its table are suppressed that make a rectangle
   with it — one in its row, one in its column, one where those meet (a total may be one).
   The table must be able to move on that rectangle: adding 1 at two opposite corners and
   taking 1 at the other two (a total moving with its cells) keeps every sum, and the move
   must keep every suppressed count at 1 or more and no outcome above the places. An
   outcome that cannot move alone moves together with the places, whose corners are then
   suppressed too. Of the rectangles that can move, the cheapest is taken (the smallest
   sum of counts not yet suppressed). One always can: the count with its row's total, its
   column's total and the grand total, all moving up.

So for every suppressed count there are other tables, with another value in that count,
that show exactly what was published and keep every rule a reader knows: no suppressed
count can be worked out from the counts and totals shown, nor from the outcomes being
parts of the places. (The unit tests check this by brute force on small tables.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

from services.participant.schemas import (
    Count,
    Counts,
    ProgrammeCounts,
    ProgrammeStatistics,
    ProgrammeStatus,
    StatisticsQuery,
    Suppression,
)
from services.participant.store import ProgrammeCount

THRESHOLD = 5
RULE = (
    f"Counts from 1 to {THRESHOLD - 1} are suppressed (null), totals included; zeros are "
    "shown. For each of them three more counts are suppressed, in its row, in its column "
    "and where those meet (a total may be one of them), in its own measure and where needed "
    "in places too, chosen so that no suppressed count can be worked out from the counts "
    "and totals shown, even knowing that no outcome exceeds its places. Each measure is a "
    "table of programmes by status, with their totals."
)
STATUSES: tuple[ProgrammeStatus, ...] = get_args(ProgrammeStatus)
OUTCOMES = ("started", "fagbrev", "work")
MEASURES = ("places", *OUTCOMES)

Cell = tuple[int, int]
Grid = list[list[int]]
# The key of the whole among the tables; the parts have names.
WHOLE = None


@dataclass(frozen=True)
class SuppressedTable:
    """A table as published: None where a count is suppressed."""

    cells: tuple[tuple[int | None, ...], ...]
    row_totals: tuple[int | None, ...]
    column_totals: tuple[int | None, ...]
    total: int | None


def suppress(
    whole: Sequence[Sequence[int]],
    parts: Mapping[str, Sequence[Sequence[int]]] | None = None,
    threshold: int = THRESHOLD,
) -> tuple[SuppressedTable, dict[str, SuppressedTable]]:
    """The whole table and each of its parts as published (see the module docstring)."""
    parts = parts or {}
    _check(whole)
    for part in parts.values():
        _check(part)
        if len(part) != len(whole) or any(
            p > w
            for part_row, whole_row in zip(part, whole, strict=True)
            for p, w in zip(part_row, whole_row, strict=True)
        ):
            raise ValueError("a part counts some of the whole: its shape, never more in a cell")
    grids: dict[str | None, Grid] = {WHOLE: _with_totals(whole)}
    grids.update((name, _with_totals(part)) for name, part in parts.items())
    primary = {
        name: sorted(cell for cell, count in _cells(grid) if 0 < count < threshold)
        for name, grid in grids.items()
    }
    hidden = {name: set(cells) for name, cells in primary.items()}
    # The parts first: a part moving with the whole suppresses counts of the whole, which
    # the whole's own rectangles may then reuse.
    for name in [*parts, WHOLE]:
        for cell in primary[name]:
            moving, corners = _cheapest_move(grids, hidden, name, cell)
            for moved in moving:
                hidden[moved].update(corners)
    return _published(grids[WHOLE], hidden[WHOLE]), {
        name: _published(grids[name], hidden[name]) for name in parts
    }


def _check(cells: Sequence[Sequence[int]]) -> None:
    if not cells or not cells[0] or any(len(row) != len(cells[0]) for row in cells):
        raise ValueError("a table needs at least one row, and every row the same columns")
    if any(count < 0 for row in cells for count in row):
        raise ValueError("counts are never negative")


def _with_totals(cells: Sequence[Sequence[int]]) -> Grid:
    """The table extended by its totals: the last row holds the column totals and the last
    column the row totals, so that every line sums to its last count."""
    grid = [[*row, sum(row)] for row in cells]
    grid.append([sum(column) for column in zip(*grid, strict=True)])
    return grid


def _cells(grid: Grid) -> Iterator[tuple[Cell, int]]:
    for r, row in enumerate(grid):
        for c, count in enumerate(row):
            yield (r, c), count


def _cheapest_move(
    grids: dict[str | None, Grid], hidden: dict[str | None, set[Cell]], name: str | None, cell: Cell
) -> tuple[tuple[str | None, ...], list[Cell]]:
    """The tables that move and the rectangle they move on, protecting `cell` of `name`."""
    ways: list[tuple[str | None, ...]] = [(name,)] if name is WHOLE else [(name,), (name, WHOLE)]
    r, c = cell
    best: tuple[tuple[int, int, int, int, int], tuple[str | None, ...], list[Cell]] | None = None
    for r2, c2 in itertools.product(range(len(grids[name])), range(len(grids[name][0]))):
        if r2 == r or c2 == c:
            continue
        corners = [(r, c), (r2, c2), (r, c2), (r2, c)]
        for moving in ways:
            if not (_moves(grids, moving, corners, 1) or _moves(grids, moving, corners, -1)):
                continue
            new = [(m, x, y) for m in moving for x, y in corners if (x, y) not in hidden[m]]
            cost = (sum(grids[m][x][y] for m, x, y in new), len(new), len(moving), r2, c2)
            if best is None or cost < best[0]:
                best = (cost, moving, corners)
    # Never None: the rectangle through the cell's own totals and the grand total moves up.
    assert best is not None
    return best[1], best[2]


def _moves(
    grids: dict[str | None, Grid], moving: tuple[str | None, ...], corners: list[Cell], step: int
) -> bool:
    """Whether the `moving` tables can add `step` at the first two corners and take it at
    the other two (a total the other way, once for each of its lines that is a total line)
    with every moved count still at 1 or more and no part above the whole. Only suppressed
    counts move, and zeros are never suppressed: every moving count must be positive."""
    last_row, last_column = len(grids[WHOLE]) - 1, len(grids[WHOLE][0]) - 1
    for i, (x, y) in enumerate(corners):
        if any(grids[m][x][y] < 1 for m in moving):
            return False
        delta = step * (1 if i < 2 else -1) * (-1 if (x == last_row) != (y == last_column) else 1)
        moved = {
            name: grid[x][y] + (delta if name in moving else 0) for name, grid in grids.items()
        }
        if any(moved[m] < 1 for m in moving):
            return False
        if any(count > moved[WHOLE] for name, count in moved.items() if name is not WHOLE):
            return False
    return True


def _published(grid: Grid, hidden: set[Cell]) -> SuppressedTable:
    shown = [
        [None if (r, c) in hidden else count for c, count in enumerate(row)]
        for r, row in enumerate(grid)
    ]
    return SuppressedTable(
        cells=tuple(tuple(row[:-1]) for row in shown[:-1]),
        row_totals=tuple(row[-1] for row in shown[:-1]),
        column_totals=tuple(shown[-1][:-1]),
        total=shown[-1][-1],
    )


def tabulate(
    counts: Iterable[ProgrammeCount], *, orgnr: str, period: StatisticsQuery
) -> ProgrammeStatistics:
    """The statistics as published: a row per programme and county, a column per status,
    a table per measure, the outcomes suppressed as parts of the places."""
    groups = {(g.programme, g.county, g.status): g for g in counts}
    keys = sorted({(p, county) for p, county, _ in groups}, key=lambda k: (k[0], k[1] or ""))

    def cells(measure: str) -> list[list[int]]:
        return [
            [getattr(groups[(*key, s)], measure) if (*key, s) in groups else 0 for s in STATUSES]
            for key in keys
        ]

    if keys:
        places, outcomes = suppress(cells("places"), {m: cells(m) for m in OUTCOMES})
        tables = {"places": places, **outcomes}
    else:
        empty = SuppressedTable((), (), (0,) * len(STATUSES), 0)
        tables = dict.fromkeys(MEASURES, empty)
    return ProgrammeStatistics(
        orgnr=orgnr,
        period=period,
        programmes=[
            ProgrammeCounts(
                programme=programme,
                county=county,
                by_status={
                    s: _counts({m: tables[m].cells[i][j] for m in MEASURES})
                    for j, s in enumerate(STATUSES)
                },
                total=_counts({m: tables[m].row_totals[i] for m in MEASURES}),
            )
            for i, (programme, county) in enumerate(keys)
        ],
        by_status={
            s: _counts({m: tables[m].column_totals[j] for m in MEASURES})
            for j, s in enumerate(STATUSES)
        },
        total=_counts({m: tables[m].total for m in MEASURES}),
        suppression=Suppression(threshold=THRESHOLD, rule=RULE),
    )


def _counts(values: dict[str, int | None]) -> Counts:
    return Counts(**{m: Count(value=v, suppressed=v is None) for m, v in values.items()})

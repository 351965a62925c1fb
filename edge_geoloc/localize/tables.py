"""The one reader of the loop's small CSV inputs (odometry, attitude, a folder's frame times).

Each is a comma-separated file of fixed columns: blank lines and ``#`` comments are skipped, a first
line of words (no cell a number) is the header, and every other line must hold one valid value per
column. Anything else (binary bytes, a NaN or empty time, an empty height, a time that does not
increase) is an error naming ``file:line``, the column and what was expected, raised at load: a bad
log fails before the flight, not as every frame skipped mid-flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Column:
    """One CSV column: ``parse`` turns a cell into a value or raises ValueError; ``expected`` says what a
    good cell is, for the error message."""

    name: str
    parse: Callable[[str], Any]
    expected: str


def finite(cell: str) -> float:
    """A finite number (no NaN, no infinity, not empty)."""
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def positive(cell: str) -> float:
    value = finite(cell)
    if not value > 0:
        raise ValueError(cell)
    return value


def finite_or_nan(cell: str) -> float:
    """A finite number, or NaN for an empty cell or ``nan`` (a value the source did not have)."""
    if cell == "" or cell.lower() == "nan":
        return float("nan")
    return finite(cell)


def text(cell: str) -> str:
    if not cell:
        raise ValueError(cell)
    return cell


def number_column(name: str) -> Column:
    return Column(name, finite, "a finite number")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_table(
    path: str | Path, columns: Sequence[Column], what: str, increasing: str | None = None
) -> list[list[Any]]:
    """Rows of ``path``, each cell through its column's ``parse``; ``what`` names the input in errors
    (``odometry``, ``attitude``); ``increasing`` names a column whose values must strictly increase.
    Raises FileNotFoundError, or ValueError (``file:line: ...``) for anything else that is wrong."""
    path = Path(path)
    expected = ",".join(c.name for c in columns)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder (expected a CSV file {expected})")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file (expected CSV {expected})")
    key = next((i for i, c in enumerate(columns) if c.name == increasing), None)
    if increasing is not None and key is None:
        raise ValueError(f"no column {increasing!r} among {expected}")
    rows: list[list[Any]] = []
    last: tuple[float, int] | None = None
    seen_content = False
    for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}:{n}: not text (byte 0x{raw[err.start]:02x}); expected {what} CSV {expected}"
            ) from None
        if "\x00" in line:
            raise ValueError(f"{path}:{n}: not text (a NUL byte); expected {what} CSV {expected}")
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        first, seen_content = not seen_content, True
        if first and not any(_is_number(c) for c in cells):
            continue  # a header
        if len(cells) != len(columns):
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise ValueError(f"{path}:{n}: {len(cells)} values, expected {len(columns)} ({expected}): {shown!r}")
        row = []
        for col, cell in zip(columns, cells):
            try:
                row.append(col.parse(cell))
            except ValueError:
                shown = cell if len(cell) <= 40 else cell[:37] + "..."
                raise ValueError(
                    f"{path}:{n}: column '{col.name}' is {shown!r}; expected {col.expected} ({what} CSV {expected})"
                ) from None
        if key is not None:
            value = float(row[key])
            if last is not None and not value > last[0]:
                raise ValueError(
                    f"{path}:{n}: {increasing} {value:g} is not after {last[0]:g} (line {last[1]});"
                    f" {what} times must increase"
                )
            last = (value, n)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no {what} rows (expected CSV {expected})")
    return rows

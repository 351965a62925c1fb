"""The one reader of the loop's small CSV inputs (odometry, attitude, a folder's frame times).

Each is a comma-separated file of fixed columns: blank lines and ``#`` comments are skipped, a first
line that does not parse is the header, and any later line that does not parse is an error naming
``file:line`` and the columns expected, so a bad log fails at load, not mid-flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def read_csv(
    path: str | Path, columns: Sequence[str], what: str, convert: Sequence[Callable[[str], Any]] | None = None
) -> list[list[Any]]:
    """Rows of ``path`` as lists, each cell through ``convert[i]`` (default: ``float``); ``what`` names the
    input in errors (``odometry``, ``attitude``). Raises FileNotFoundError, or ValueError for a bad line or
    a file without rows."""
    path = Path(path)
    expected = ",".join(columns)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file (expected CSV {expected})")
    convert = convert or [float] * len(columns)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        try:
            if len(cells) != len(columns):
                raise ValueError
            rows.append([f(c) for f, c in zip(convert, cells)])
        except ValueError:
            if n == 1:
                continue  # a header
            raise ValueError(f"{path}:{n}: expected '{expected}', got {line!r}") from None
    if not rows:
        raise ValueError(f"{path}: no {what} rows")
    return rows


def number_or_nan(cell: str) -> float:
    """A number, or NaN for an empty cell (a value the source did not have)."""
    return float(cell) if cell else float("nan")

"""What every benchmark writes beside its table: one place for the JSON meta row and the Markdown copy.

Not a benchmark itself (the leading underscore keeps ``make test`` from running it with ``--quick``).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from edge_geoloc.config import strict_json


def load_line(before: float) -> str:
    """The machine's load over the run: these machines are shared, and absolute times move with it."""
    return f"1-minute load average before/after: {before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def write_json(out: Path, rows: list[dict], notes: list[str], started: float, **extra: Any) -> None:
    """``[meta, *rows]``: the meta row names the machine, Python, the notes and the seconds since ``started``
    (``time.perf_counter()``), plus ``extra`` keys (threads, quick, pooled figures...)."""
    meta = {
        "_meta": True,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        **extra,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(strict_json([meta, *rows], indent=1) + "\n")


def write_markdown(path: Path, title: str, table: str) -> None:
    """The committed, human-readable copy of a full run's table."""
    path.write_text(f"# {title}\n\n```\n{table}\n```\n")

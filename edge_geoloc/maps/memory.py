"""What an opened map holds in memory, as the kernel counts it (Linux ``/proc/self/smaps``).

A process's resident set (RSS) has two kinds of pages. Anonymous pages (the shard graphs hnswlib
loads, slot tables) stay until the process frees them. File-backed pages (the memory-mapped
descriptors and tile table) are clean copies of the bundle's files: the kernel may drop them at any
time and read them back from flash when a search touches them again. So a map's descriptors cost
memory only for the pages its searches read: verifying a shard hashes it through the file and drops
it from the page cache (:meth:`~edge_geoloc.maps.bundle.Bundle.verify_shard`), and the maps are
advised random access (no read-ahead around a re-ranked row). The kernel's fault-around still maps up
to 16 neighbouring pages of a touched one when they are already cached.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMAPS = Path("/proc/self/smaps")


@dataclass(frozen=True)
class Resident:
    """Resident bytes of this process: all, anonymous, and per file of interest (mapped pages only)."""

    rss: int
    anon: int
    files: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: Resident) -> Resident:
        names = set(self.files) | set(other.files)
        return Resident(
            self.rss - other.rss,
            self.anon - other.anon,
            {n: self.files.get(n, 0) - other.files.get(n, 0) for n in names},
        )


def resident(files: Iterable[str | Path] = ()) -> Resident | None:
    """This process's resident bytes, with those of each of ``files`` (by resolved path); None where the
    kernel does not say (not Linux)."""
    wanted = {str(Path(f).resolve()): str(f) for f in files}
    per_file = dict.fromkeys(wanted.values(), 0)
    rss = anon = 0
    current: str | None = None
    try:
        with open(SMAPS) as f:
            for line in f:
                key, _, rest = line.partition(" ")
                if not key.endswith(":"):  # a mapping's header: address range, perms, offset, dev, inode, path
                    parts = line.split(None, 5)
                    current = wanted.get(parts[5].strip()) if len(parts) == 6 else None
                elif key == "Rss:":
                    kb = int(rest.split()[0]) * 1024
                    rss += kb
                    if current is not None:
                        per_file[current] += kb
                elif key == "Anonymous:":
                    anon += int(rest.split()[0]) * 1024
    except OSError:
        return None
    return Resident(rss, anon, per_file)


def evict(path: str | Path, offset: int = 0, length: int = 0) -> None:
    """Drop a file's pages (``length`` 0: to its end) from the page cache where no one maps them (a no-op
    without posix_fadvise): after verification has read a whole file, the kernel would otherwise map
    cached neighbours of every page a search touches (fault-around, up to 64 KB each)."""
    if hasattr(os, "posix_fadvise"):
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), offset, length, os.POSIX_FADV_DONTNEED)


def advise_random(array: Any) -> None:
    """Tell the kernel a memory-mapped array is read at scattered rows: no read-ahead on a page fault, so a
    search maps the pages it reads rather than 128 KB around each (a no-op for an array in memory)."""
    mm = getattr(array, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)

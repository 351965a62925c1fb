"""What an opened map holds in memory, as the kernel counts it (Linux ``/proc/self/smaps``).

A process's resident set (RSS) has two kinds of pages. Anonymous pages (the shard graphs hnswlib
loads, slot tables) stay until the process frees them. File-backed pages (the memory-mapped
descriptors and tile table) are clean copies of the bundle's files: the kernel may drop them at any
time and read them back from flash when a search touches them again. So a map's descriptors cost
memory only for the pages its searches read: verifying a shard hashes it through the file and drops
it from the page cache (:meth:`~edge_geoloc.maps.bundle.Bundle.verify_shard`), and the maps are
advised random access (no read-ahead around a re-ranked row). The kernel's fault-around still maps up
to 16 neighbouring pages of a touched one when they are already cached. Rows read with :class:`RowReader`
(positioned reads instead of the map, a search's default) cost no RSS at all: their pages stay in the
kernel's page cache only.
"""

from __future__ import annotations

import mmap
import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from edge_geoloc.maps.bundle import BundleError

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


# Rows fewer than GAP bytes apart are fetched with one read (the gap read and dropped), and a run of
# consecutive rows of SOLO bytes or more is read on its own, straight into the output. One page each: on
# the 1M-tile bench map, 16/32 KiB (half the reads) made searches 8-14% slower, not faster: a read costs
# by the page it copies from the page cache more than by the system call.
GAP = 4096
SOLO = 4096


def npy_data_offset(path: str | Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(byte offset of the array data, shape, dtype) of a C-order ``.npy`` file, from its own header (any
    format version: the header length is not fixed)."""
    try:
        with open(path, "rb") as f:
            version = npy.read_magic(f)
            header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise BundleError(f"{path}: not a readable .npy file ({err})") from None
    if fortran and len(shape) > 1:
        raise BundleError(f"{path}: a Fortran-order array, expected C order")
    return offset, tuple(shape), np.dtype(dtype)


class RowReader:
    """Rows of a ``.npy`` file read with positioned reads (``os.preadv``) into the caller's buffers.

    Why not the memory map: every page a mapped file's reader touches counts in the process's RSS until
    the mapping goes; a page read with ``pread`` stays in the kernel's page cache (shared, dropped under
    pressure, as a mapped clean page is) and out of the process (the way DiskANN-style indexes read
    full-precision vectors). A truncated file gives a :class:`~edge_geoloc.maps.bundle.BundleError`
    naming the row, where a mapped read past the end would kill the process with SIGBUS.

    Sorted rows that are contiguous, share a 4 KiB page or lie less than ``gap`` bytes apart are fetched
    with one read (a system call costs more than copying those bytes); the rows of a read spanning gaps go
    through a scratch buffer kept for the next call, unless a run of consecutive rows holds ``solo`` bytes
    (then it is read on its own straight into the output: a second copy would cost more than the read saved).
    """

    def __init__(self, path: str | Path, gap: int = GAP, solo: int = SOLO) -> None:
        self.path = Path(path)
        self.gap, self.solo = gap, solo
        self.offset, self.shape, self.dtype = npy_data_offset(self.path)
        self.row_bytes = int(self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64)))
        self._fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)
        if hasattr(os, "posix_fadvise"):  # scattered rows: no read-ahead around each into the page cache
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        self._stage = np.empty(0, np.uint8)

    def _pieces(self, rows: np.ndarray) -> tuple[list[int], list[int], list[int], list[bool]]:
        """Sorted ``rows`` as pieces of consecutive rows: (first index, first row, row count, starts a new
        read) of each. A piece joins the previous read when fewer than ``gap`` bytes lie between them and
        neither holds ``solo`` bytes or more."""
        n = len(rows)
        if n <= 64:  # a search's re-rank and result rows: plain Python beats a dozen small numpy calls
            rl = rows.tolist()
            at, first, count = [0], [rl[0]], [1]
            for i in range(1, n):
                r, prev = rl[i], rl[i - 1]
                if r == prev + 1:
                    count[-1] += 1
                    continue
                if r <= prev:
                    raise ValueError("RowReader.read needs rows sorted ascending without repeats")
                at.append(i)
                first.append(r)
                count.append(1)
        else:
            r = np.asarray(rows, dtype=np.int64)
            step = np.diff(r)
            if step.min() <= 0:
                raise ValueError("RowReader.read needs rows sorted ascending without repeats")
            brk = (np.flatnonzero(step != 1) + 1).tolist()  # few pieces: the rest in plain Python
            at = [0, *brk]
            first = r[at].tolist()
            count = [e - b for b, e in zip(at, [*brk, n])]
        gap, solo = self.gap // self.row_bytes, self.solo // self.row_bytes  # in rows
        new = [True] + [
            first[x] - first[x - 1] - count[x - 1] > gap or count[x] >= solo or count[x - 1] >= solo
            for x in range(1, len(at))
        ]
        return at, first, count, new

    def _fill(self, view: memoryview, pos: int, got: int, rows: np.ndarray) -> None:
        """Finish a read that came back short at ``got`` bytes (a signal, or the end of the file: then raise,
        naming the first of ``rows`` left incomplete)."""
        while got < len(view):
            n = os.preadv(self._fd, [view[got:]], pos + got)
            if n == 0:
                missing = (pos - self.offset + got) // self.row_bytes
                row = next((int(r) for r in rows if r >= missing), missing)
                raise BundleError(
                    f"{self.path}: row {row}: the file ends at byte {pos + got}, {len(view) - got} bytes short"
                    " (truncated or replaced since it was opened; copy or build the map again)"
                )
            got += n

    def read(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted ascending, int) into ``out[:len(rows)]`` (C-contiguous, this file's dtype
        and row shape); returns that slice."""
        n = len(rows)
        dst = out[:n]
        if not dst.flags.c_contiguous:
            raise ValueError("RowReader.read needs a C-contiguous output buffer")
        if n == 0:
            return dst
        rb, off, fd = self.row_bytes, self.offset, self._fd
        mv = memoryview(dst.reshape(-1).view(np.uint8))
        first = int(rows[0])
        if int(rows[-1]) - first == n - 1 and (n < 3 or int(rows[1]) == first + 1):  # contiguous: one read
            if n > 2 and np.any(np.diff(rows) != 1):
                raise ValueError("RowReader.read needs rows sorted ascending without repeats")
            got = os.preadv(fd, [mv], off + first * rb)
            if got != n * rb:
                self._fill(mv, off + first * rb, got, rows)
            return dst
        at, first, count, new = self._pieces(rows)
        m = len(at)
        k = 0
        while k < m:  # one read per group of pieces: a piece and those starting in the page it ends in
            g = k + 1
            while g < m and not new[g]:
                g += 1
            i, a, pos = at[k], first[k], off + first[k] * rb
            if g == k + 1:  # one piece: straight into out
                view = mv[i * rb : (i + count[k]) * rb]
            else:  # through the scratch (kept for the next call), then each piece copied out of it
                size = (first[g - 1] + count[g - 1] - a) * rb
                if len(self._stage) < size:
                    self._stage = np.empty(size, np.uint8)
                view = memoryview(self._stage)[:size]
            got = os.preadv(fd, [view], pos)
            if got != len(view):
                self._fill(view, pos, got, rows[i : at[g - 1] + count[g - 1]])
            if g > k + 1:
                for x in range(k, g):
                    y = (first[x] - a) * rb
                    mv[at[x] * rb : (at[x] + count[x]) * rb] = view[y : y + count[x] * rb]
            k = g
        return dst

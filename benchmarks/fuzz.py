"""Fuzzing the readers of everything a user hands the device (issue 15): hypothesis generates inputs for
each reader, and every exception other than the reader's documented error type is counted as a defect.

Targets and their documented errors:

- NMEA stream reader (``geo.nmea.NmeaReader``, bytes fed in random chunks): none, it counts and skips;
- NMEA file prior (``localize.gnss.NmeaFilePrior``, the whole ``--gps`` path to fixes): none for a file
  that exists; every fix it hands out must be finite with a positive sigma, in time order;
- attitude, odometry and frame-timestamp CSVs (``localize.tables``): ValueError; a loaded attitude or
  odometry log must hold finite, strictly increasing times;
- region YAML (``world.region.Region.load``): ConfigError;
- map manifest (``maps.bundle.read_manifest``): BundleError.

Inputs mix raw bytes with structured ones built from valid examples and mutated (cut, wrong checksum,
junk between sentences, NaN/inf/huge numbers, wrong types, missing or unknown keys), so most reach past
the first check. Deterministic (``derandomize``): the same counts every run.

    .venv/bin/python benchmarks/fuzz.py            # 10,000 inputs per target (a few minutes)
    .venv/bin/python benchmarks/fuzz.py --quick    # 300 per target, a minute (make test)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.json"


class Violation(Exception):
    """A reader accepted an input but handed out something it promises never to (NaN times...)."""


# --- inputs ---------------------------------------------------------------------------------------


def nmea_templates() -> list[str]:
    from edge_geoloc.geo.nmea import format_gga, format_gsa, format_hdt, format_rmc, format_vtg, parse

    t = datetime(2026, 12, 7, 23, 59, 59, tzinfo=timezone.utc)
    out = [
        format_gga(t, 47.0, 16.3, hdop=0.58, num_sats=12, altitude_m=312.4, talker="GN"),
        format_gga(t, -33.9, 151.2, quality=4, hdop=0.01),
        format_gga(t, 89.99999, 179.99999, quality=9, hdop=99.99),
        format_gga(t, None, None, quality=0),
        format_rmc(t, 47.0, 16.3, speed_mps=5.0, course_deg=359.99, talker="GN"),
        format_rmc(t, 47.0, 16.3, valid=False),
        format_gsa(3, [2, 5, 13], pdop=1.0, hdop=0.9, vdop=0.8),
        format_vtg(87.5, 5.0),
        format_hdt(12.5),
        "$GPGSV,3,1,11,02,41,302,44,05,25,227,38,13,61,068,47,15,33,117,41*7A",
        "$GNGLL,4700.00000,N,01618.00000,E,235959.00,A,A*7B",
        "$PUBX,00,235959.00,4700.00000,N,01618.00000,E*00",
    ]
    for s in out[:9]:
        parse(s)  # the templates themselves are valid
    return out


def mutate(s: str, how: int, where: int, junk: bytes) -> bytes:
    b = s.encode("ascii")
    i = where % (len(b) + 1)
    if how == 0:
        return b
    if how == 1:  # cut (a dropped byte run)
        return b[:i]
    if how == 2:  # wrong checksum
        return b[:-2] + (b"00" if b[-2:] != b"00" else b"FF")
    if how == 3:  # junk inside
        return b[:i] + junk + b[i:]
    if how == 4:  # a field replaced by a wild value
        parts = s.split(",")
        k = where % len(parts)
        parts[k] = ["", "nan", "inf", "1e309", "-0", "99999999.9", "A", "9" * 40][where % 8]
        body = ",".join(parts).split("*")[0][1:]
        from edge_geoloc.geo.nmea import checksum

        return f"${body}*{checksum(body)}".encode("ascii", "replace")  # valid checksum, wild content
    if how == 5:  # the time moved (epochs out of order, midnight)
        return s.replace("235959", ["000000", "120000", "235960", "996161"][where % 4]).encode()
    return junk + b  # 6: junk before the '$'


TEMPLATES: list[str] = []


class Choices:
    """Structure from a byte string, as a FuzzedDataProvider does: hypothesis draws one string of bytes per
    input (cheap, and it still mutates and explores it), and this turns it into choices. One draw per input
    instead of hundreds keeps 10,000 inputs a target within minutes on a shared 2-core machine."""

    def __init__(self, data: bytes) -> None:
        self.data, self.i = data, 0

    def int(self, n: int) -> int:
        """0..n-1 (0 once the bytes run out)."""
        if self.i >= len(self.data) or n <= 1:
            return 0
        v = self.data[self.i]
        self.i += 1
        if n > 256 and self.i < len(self.data):
            v = v * 256 + self.data[self.i]
            self.i += 1
        return v % n

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.int(len(seq))]

    def bytes(self, n: int) -> bytes:
        k = self.int(n + 1)
        out = self.data[self.i : self.i + k]
        self.i += k
        return out

    @property
    def left(self) -> bool:
        return self.i < len(self.data)


def nmea_bytes() -> Any:
    def build(data: bytes) -> bytes:
        c = Choices(data)
        if c.int(10) == 0:
            return data  # raw bytes
        out = []
        while c.left and len(out) < 60:
            k, how, where = c.int(len(TEMPLATES)), c.int(7), c.int(200)
            junk = c.bytes(6)
            out.append(mutate(TEMPLATES[k], how, where, junk) + c.pick([b"\r\n", b"\n", b"\r", b""]))
        return b"".join(out)

    return st.binary(max_size=600).map(build)


CELLS = ["", "nan", "NaN", "inf", "-inf", "1e309", "0", "-0", "1.5", "1e-320", "120", "t", "\t", " 2 ", "\x00", "é",
         "3.25", "-45.5", "7", "1e5", "0x10", "1_0", "++1", "1,5"]  # fmt: skip


def csv_bytes(columns: int) -> Any:
    def build(data: bytes) -> bytes:
        c = Choices(data)
        if c.int(10) == 0:
            return data
        header = c.pick(["", "t,a,b\n", "# comment\n", "name,seconds\n", "\ufeffname,seconds\n"])
        increasing, end = c.int(3) > 0, c.pick(["\n", "\r\n"])
        lines = []
        while c.left and len(lines) < 30:
            n = columns + c.pick([0, 0, 0, 0, -1, 1])
            row = [c.pick(CELLS) if c.int(3) else f"{c.int(1000) / 7:.3f}" for _ in range(n)]
            if increasing and row:
                row[0] = f"{0.1 * len(lines):.1f}"
            lines.append(",".join(row))
        return (header + end.join(lines)).encode("utf-8", "surrogatepass")

    return st.binary(max_size=400).map(build)


SCALARS = [None, True, False, 0, -1, 7, 10**12, 0.5, -80.5, 1e308, float("nan"), float("inf"), "", "x", "é", "geotiff",
           "synthetic", "xyz", "worldfile", "suburb", "EPSG:32633", "EPSG:99999", "cosine", "hilbert", [], {}, [1, 2],
           {"a": 1}, "a" * 200, "edge-geoloc-map/1", "ab" * 32]  # fmt: skip


def mutate_mapping(base: dict, c: Choices, keys: list[str]) -> dict:
    data = yaml.safe_load(yaml.safe_dump(base))
    for _ in range(c.int(5)):
        node = data
        while isinstance(node, dict) and node and c.int(2):
            k = c.pick(sorted(node, key=str))
            if not isinstance(node[k], dict):
                break
            node = node[k]
        op = c.int(4)
        if op == 0 and node:
            del node[c.pick(sorted(node, key=str))]
        elif op == 1 and node:
            node[c.pick(sorted(node, key=str))] = c.pick(SCALARS)
        elif op == 2:
            node[c.pick([*keys, "colour", "x", 3, None])] = c.pick(SCALARS)
        elif op == 3 and c.int(6) == 0:
            node.clear()
    return data


def yaml_bytes(base: dict, keys: list[str]) -> Any:
    def build(data: bytes) -> bytes:
        c = Choices(data)
        kind = c.int(10)
        if kind == 0:
            return data
        if kind == 1:
            return data.decode("latin-1").encode("utf-8")  # text, but anything
        text = yaml.safe_dump(mutate_mapping(base, c, keys), sort_keys=False, allow_unicode=True)
        if kind == 2:  # a cut file
            text = text[: c.int(len(text) + 1)]
        if kind == 3:  # a stray control or tab character
            i = c.int(len(text) + 1)
            text = (
                text[:i]
                + c.pick(["\t", "\x07", "\x00", ":", "- ", "{", "&a", "*a", "!!python/object:os.system"])
                + text[i:]
            )
        return text.encode("utf-8", "surrogatepass")

    return st.binary(max_size=200).map(build)


REGION = {
    "name": "field",
    "center_lat": 47.0,
    "center_lon": 16.3,
    "size_m": 400.0,
    "crs": "EPSG:32633",
    "resolution_m": 0.5,
    "imagery": {"kind": "geotiff", "path": "ortho.tif", "crs": "EPSG:32633"},
    "tile_m": 64.0,
}


def manifest_base() -> dict:
    from edge_geoloc.config import to_mapping
    from edge_geoloc.geo import Tiling
    from edge_geoloc.maps.bundle import (
        FORMAT,
        EncoderInfo,
        FileInfo,
        HnswInfo,
        Manifest,
        RegionInfo,
        ShardInfo,
        TilingInfo,
    )

    tiling = Tiling(500000.0, 5200000.0, 500320.0 - 1e-6, 5200320.0 - 1e-6, 64.0)
    sha = "ab" * 32
    m = Manifest(
        format=FORMAT,
        region=RegionInfo("field", 47.0, 16.3, "geotiff", imagery="ortho.tif", native_gsd_m=0.5),
        crs="EPSG:32633",
        tiling=TilingInfo.of(tiling, 32, 2.0),
        encoder=EncoderInfo(model="m", aerial_sha256=sha, card_sha256="", descriptor_dim=16),
        tiles=len(tiling),
        shards=ShardInfo(tiles_per_side=8, side_m=256.0, count=1),
        hnsw=HnswInfo(dim=16),
        files={
            "tiles.npy": FileInfo(128, sha),
            "shards.npy": FileInfo(128, sha),
            "descriptors.npy": FileInfo(128, sha),
        },
    )
    return to_mapping(m)


# --- targets --------------------------------------------------------------------------------------


def nmea_reader(data: bytes, chunk: int) -> str:
    from edge_geoloc.geo.nmea import NmeaReader

    reader = NmeaReader()
    n = 0
    for s in range(0, len(data), max(1, chunk)):
        n += len(reader.feed(data[s : s + chunk]))
    n += len(reader.flush())
    reader.summary()
    return "accepted" if n else "refused"


def nmea_file(path: Path, data: bytes) -> str:
    from edge_geoloc.geo import MapCRS
    from edge_geoloc.localize.gnss import NmeaFilePrior

    path.write_bytes(data)
    prior = NmeaFilePrior(path, CRS or MapCRS("EPSG:32633"))
    fixes = prior.poll(1e18)
    last = -math.inf
    for f in fixes:
        if not (math.isfinite(f.t) and math.isfinite(f.east) and math.isfinite(f.north) and f.sigma_m > 0):
            raise Violation(f"a fix that is not finite: {f}")
        if f.t < last:
            raise Violation(f"fixes out of time order: {f.t} after {last}")
        last = f.t
    prior.stats()
    return "accepted" if fixes else "refused"


def attitude_csv(path: Path, data: bytes) -> str:
    import numpy as np

    from edge_geoloc.localize.attitude import AttitudeLog

    path.write_bytes(data)
    log = AttitudeLog.from_csv(path)
    if not (np.all(np.isfinite(log.t)) and np.all(np.diff(log.t) > 0) and np.all(log.height > 0)):
        raise Violation("an attitude log with non-finite or non-increasing times or a height <= 0")
    log.poll(1e18)
    return "accepted"


def odometry_csv(path: Path, data: bytes) -> str:
    import numpy as np

    from edge_geoloc.localize.odometry import Odometry

    path.write_bytes(data)
    odo = Odometry.from_csv(path)
    if not (np.all(np.isfinite(odo.t)) and np.all(np.diff(odo.t) > 0)):
        raise Violation("an odometry log with non-finite or non-increasing times")
    return "accepted"


def timestamps_csv(path: Path, data: bytes) -> str:
    from edge_geoloc.localize.sources import read_timestamps

    folder = path.parent
    (folder / "timestamps.csv").write_bytes(data)
    times = read_timestamps(folder, [])
    if times is None:
        raise Violation("timestamps.csv was not read")
    return "accepted"


def region_yaml(path: Path, data: bytes) -> str:
    from edge_geoloc.world.region import Region

    path.write_bytes(data)
    Region.load(path)
    return "accepted"


def manifest_yaml(path: Path, data: bytes) -> str:
    from edge_geoloc.maps.bundle import read_manifest

    (path.parent / "manifest.yaml").write_bytes(data)
    read_manifest(path.parent)
    return "accepted"


CRS = None


def run_target(name: str, strategy: Any, call: Callable[..., str], documented: tuple[type, ...], n: int) -> dict:
    counts = {"accepted": 0, "refused": 0, "uncaught": 0}
    uncaught: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    path = folder / "input"

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(example: Any) -> None:
        try:
            if name == "nmea reader":
                data, chunk = example
                outcome = call(data, chunk)
            else:
                outcome = call(path, example)
            counts[outcome] += 1
        except documented:
            counts["refused"] += 1
        except Exception as err:  # the defects this benchmark exists to find
            counts["uncaught"] += 1
            if len(uncaught) < 5:
                frame = traceback.extract_tb(err.__traceback__)[-1]
                uncaught.append(f"{type(err).__name__}: {err} ({Path(frame.filename).name}:{frame.lineno})"[:300])

    one()
    inputs = sum(counts.values())
    return {
        "target": name,
        "inputs": inputs,
        **counts,
        "documented_error": "/".join(e.__name__ for e in documented) or "none",
        "uncaught_examples": uncaught,
    }


def targets(n: int) -> list[dict]:
    global CRS
    from edge_geoloc.config import ConfigError
    from edge_geoloc.geo import MapCRS
    from edge_geoloc.maps.bundle import BundleError

    CRS = MapCRS("EPSG:32633")
    TEMPLATES[:] = nmea_templates()
    none: tuple[type, ...] = ()
    return [
        run_target("nmea reader", st.tuples(nmea_bytes(), st.integers(1, 600)), nmea_reader, none, n),
        run_target("nmea file prior", nmea_bytes(), nmea_file, none, n),
        run_target("attitude csv", csv_bytes(5), attitude_csv, (ValueError,), n),
        run_target("odometry csv", csv_bytes(3), odometry_csv, (ValueError,), n),
        run_target("timestamps csv", csv_bytes(2), timestamps_csv, (ValueError,), n),
        run_target("region yaml", yaml_bytes(REGION, [*REGION, "style", "seed"]), region_yaml, (ConfigError,), n),
        run_target(
            "map manifest", yaml_bytes(manifest_base(), ["format", "files", "tiles"]), manifest_yaml, (BundleError,), n
        ),
    ]


def format_table(rows: list[dict], notes: list[str]) -> str:
    lines = [f"{'target':<18} {'inputs':>7} {'accepted':>9} {'refused':>8} {'uncaught':>9}  documented error"]
    for r in rows:
        lines.append(
            f"{r['target']:<18} {r['inputs']:>7} {r['accepted']:>9} {r['refused']:>8} {r['uncaught']:>9}  {r['documented_error']}"
        )
        lines += [f"    ! {u}" for u in r["uncaught_examples"]]
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 inputs per target (a minute)")
    parser.add_argument("--n", type=int, default=None, help="inputs per target (default 10000, --quick 200)")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    n = args.n or (300 if args.quick else 10000)
    rows = targets(n)
    notes = [
        f"hypothesis, derandomized, {n} generated inputs per target (raw bytes and mutated valid examples);"
        " 'refused' = the reader's documented error (or, for the NMEA readers, nothing decoded), 'uncaught' = any"
        " other exception or a broken promise (a NaN time, a fix out of order): must be 0",
        load_line(load_before),
    ]
    table = format_table(rows, notes)
    print("\n" + table)
    out = args.json or RESULTS
    write_json(out, rows, notes, t0, quick=args.quick, inputs_per_target=n)
    if args.json is None and not args.quick:
        write_markdown(RESULTS.with_suffix(".md"), "Fuzzing the input readers (benchmarks/fuzz.py)", table)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 1 if any(r["uncaught"] for r in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

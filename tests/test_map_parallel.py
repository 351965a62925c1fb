"""Map building on several processes (issue 17, point 5): `map build --nproc 2`, ranks started by a launcher
(RANK / WORLD_SIZE, as torchrun sets them) and `map shard --rank R --world N` all give the bytes of a
one-process build, file for file; a failed rank is reported in one line and the build resumes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mapkit import files_of, write_geotiff, write_region

from edge_geoloc.cli import main
from edge_geoloc.mapbuild import build as mapbuild
from edge_geoloc.mapbuild.build import assemble, build_map, plan_build, work_dir_for
from edge_geoloc.mapbuild.parallel import pending_tasks, shares, tasks
from edge_geoloc.maps.bundle import ORTHO, Bundle, BundleError

OPTS = {"shard_m": 96.0, "batch": 4}


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("torch")  # the export that makes the model needs torch; the build does not
    from exportkit import small_export

    return small_export()


@pytest.fixture(scope="module")
def area(small_model, tmp_path_factory):
    """(region file, the one-process bundle of it): 4+ shards and an imagery layer of several chunks' tiles."""
    folder = tmp_path_factory.mktemp("area")
    write_geotiff(folder / "source.tif")
    region = write_region(folder / "r.yaml", "kind: geotiff\npath: source.tif", 400)
    serial = build_map(region, small_model, folder / "serial", progress=False, **OPTS)
    m = Bundle(serial, verify="full").manifest
    assert m.shards.count >= 4 and m.ortho is not None and (serial / ORTHO).exists()
    return region, serial


def test_two_processes_build_the_bytes_of_one(small_model, area, tmp_path):
    region, serial = area
    out = build_map(region, small_model, tmp_path / "two", workers=2, progress=False, **OPTS)
    assert files_of(out) == files_of(serial)
    assert not work_dir_for(out).exists()


def test_shares_deal_every_task_once_and_balance_the_pixels(small_model, area, tmp_path):
    region, _ = area
    work = plan_build(region, small_model, tmp_path / "plan", **OPTS)
    listed = tasks(work)
    cost = dict(listed)
    assert {k for k, _ in listed} == pending_tasks(work) and any(k[0] == "ortho" for k in cost)
    for world in (1, 2, 3):
        split = shares(work, world)
        flat = [t for share in split for t in share]
        assert sorted(flat) == sorted(cost) and len(flat) == len(set(flat))
        loads = [sum(cost[t] for t in share) for share in split]
        assert max(loads) - min(loads) <= max(cost.values()), (world, loads)  # largest first, least loaded
        assert split == shares(work, world)  # a function of the plan: every rank computes the same split


def test_a_failed_rank_is_reported_and_the_build_resumes_to_the_same_bytes(small_model, area, tmp_path, monkeypatch):
    region, serial = area
    real = mapbuild.build_ortho_chunk

    def fails_on_chunk_one(work, number):
        if number == 1:
            raise OSError("disk full (injected)")
        return real(work, number)

    monkeypatch.setattr(mapbuild, "build_ortho_chunk", fails_on_chunk_one)  # forked ranks inherit it
    with pytest.raises(BundleError, match=r"rank-\d\.failed: OSError: disk full \(injected\)"):
        build_map(region, small_model, tmp_path / "resumed", workers=2, progress=False, **OPTS)
    work = work_dir_for(tmp_path / "resumed")
    left = pending_tasks(work)
    assert ("ortho", 1) in left and len(left) < len(tasks(work))  # the other tasks are kept
    monkeypatch.setattr(mapbuild, "build_ortho_chunk", real)
    out = build_map(region, small_model, tmp_path / "resumed", workers=2, progress=False, **OPTS)
    assert files_of(out) == files_of(serial)


def test_launcher_ranks_meet_in_the_work_folder(small_model, area, tmp_path):
    """Two processes with RANK / WORLD_SIZE (what torchrun sets) run the same command: one bundle, same bytes."""
    region, serial = area
    out = tmp_path / "launched"
    cmd = [sys.executable, "-m", "edge_geoloc.cli", "map", "build", "--region", str(region), "--model",
           str(small_model), "--out", str(out), "--shard-m", "96", "--batch", "4", "--quiet"]  # fmt: skip
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, text=True)
        for r in (1, 0)  # rank 1 first: it waits for rank 0's plan
    ]
    outputs = [p.communicate(timeout=600)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    assert files_of(out) == files_of(serial)
    assert all(f"{out}:" in text for text in outputs)  # every rank prints the finished bundle


def test_cluster_ranks_by_hand(small_model, area, tmp_path, capsys):
    region, serial = area
    work = plan_build(region, small_model, tmp_path / "cluster", **OPTS)
    for rank in (1, 0):
        assert main(["map", "shard", "--work", str(work), "--rank", str(rank), "--world", "2"]) == 0
    assert pending_tasks(work) == set()
    assert files_of(assemble(work)) == files_of(serial)
    assert main(["map", "shard", "--work", str(work), "--rank", "2", "--world", "2"]) == 1
    assert "--rank 2 is outside --world 2" in capsys.readouterr().err

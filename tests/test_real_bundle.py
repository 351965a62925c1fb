"""`map info --verify` on a bundle with one flipped byte in a shard graph (issue 15, finding 5): --verify
hashes every file the manifest lists and every shard's graph, descriptor rows and projection."""

from __future__ import annotations

import pytest
from mapkit import descriptor_map

from edge_geoloc.cli import main
from edge_geoloc.maps.bundle import Bundle, BundleError, shard_file


def flip(path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_map_info_verify_catches_a_flipped_byte_in_a_shard_graph(tmp_path, capsys):
    path, _, _ = descriptor_map(tmp_path / "map", shard_tiles=16)
    assert main(["map", "info", str(path), "--verify"]) == 0
    assert "all sha256 verified" in capsys.readouterr().out
    bundle = Bundle(path, verify="none")
    graph = path / shard_file(int(bundle.shards["id"][-1]))
    flip(graph)
    Bundle(path, verify="none")  # sizes only: a flipped byte passes
    with pytest.raises(BundleError, match=rf"^{graph}: sha256 [0-9a-f]{{12}}\.\.\. differs from the manifest's"):
        Bundle(path, verify="full")
    assert main(["map", "info", str(path), "--verify"]) == 1
    out = capsys.readouterr()
    assert "all sha256 verified" not in out.out and str(graph) in out.err and len(out.err.strip().splitlines()) == 1

from dataclasses import dataclass, field

import pytest

from edge_geoloc.config import ConfigError, check, load_config
from edge_geoloc.world.region import Region


def write(tmp_path, text, name="region.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """\
name: test-town
center_lat: 47.37
center_lon: 8.54
size_m: 800
style: suburb
seed: 3
"""


def test_region_loads(tmp_path):
    region = Region.load(write(tmp_path, GOOD))
    assert region.name == "test-town" and region.size_m == 800.0 and region.seed == 3
    assert region.map_crs().to_string() == "EPSG:32632"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (GOOD + "colour: red\n", r"region.yaml:7: unknown key 'colour'"),
        (GOOD.replace("size_m: 800", "size_m: big"), r"region.yaml:4: key 'size_m': expected a number, got 'big'"),
        (GOOD.replace("size_m: 800", "size_m: -5"), r"region.yaml:4: key 'size_m': expected a size in metres"),
        (GOOD.replace("style: suburb", "style: moon"), r"region.yaml:5: key 'style': expected one of downtown"),
        (GOOD.replace("seed: 3", "seed: 1.5"), r"region.yaml:6: key 'seed': expected an integer"),
        (GOOD.replace("name: test-town\n", ""), r"region.yaml: missing key 'name'"),
        (GOOD + "seed: 4\n", r"region.yaml:7: key 'seed' appears twice"),
        ("name: [unclosed\n", r"region.yaml:2: not valid YAML"),
    ],
)
def test_region_errors_name_file_line_and_key(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Region.load(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        Region.load(tmp_path / "nope.yaml")


@dataclass
class Inner:
    k: int = field(default=1, metadata=check(lambda v: v > 0, "a positive integer"))


@dataclass
class Outer:
    inner: Inner
    sizes: tuple[int, int] = (1, 2)
    names: list[str] = field(default_factory=list)
    opt: float | None = None


def test_nested_and_container_types(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "inner: {k: 4}\nsizes: [3, 5]\nnames: [a, b]\nopt: 2\n", "o.yaml"))
    assert cfg == Outer(Inner(4), (3, 5), ["a", "b"], 2.0)
    with pytest.raises(ConfigError, match=r"o.yaml:2: key 'inner.k': expected a positive integer"):
        load_config(Outer, write(tmp_path, "inner:\n  k: 0\n", "o.yaml"))
    with pytest.raises(ConfigError, match=r"key 'sizes': expected a list of an integer, got \[1\] \(2 values"):
        load_config(Outer, write(tmp_path, "inner: {}\nsizes: [1]\n", "o.yaml"))
    with pytest.raises(ConfigError, match=r"key 'names\[1\]': expected a string, got 3"):
        load_config(Outer, write(tmp_path, "inner: {}\nnames: [a, 3]\n", "o.yaml"))

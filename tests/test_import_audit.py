"""The device wing imports neither torch nor the workstation wing: an audit of the source, not of one run.

Every module of the device wing is parsed (AST), and every import in it is checked, at module level and
inside functions, relative imports resolved, and ``importlib.import_module("...")`` / ``__import__``
with a literal name too. Importing a module with torch blocked (the test this replaces) only sees the
imports that run at import time; an import inside a function that only a demo calls slipped through.
Third-party imports must be the device install's dependencies (pyproject's base dependencies) or an
optional accelerator binding, so a device install never meets a missing module mid-flight.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edge_geoloc"

DEVICE = ("geo", "cameras", "runtime", "maps", "localize")
SHARED = ("config",)  # edge_geoloc/config.py: YAML validation, used by both wings
WORKSTATION = ("world", "data", "model", "train", "evaluate", "export", "mapbuild", "sim")
# Third-party modules the device wing may import: the base install's dependencies, and accelerator or
# serial bindings a Jetson adds (each imported where it is used, with a clear error when absent).
DEVICE_THIRD_PARTY = {"numpy", "cv2", "onnxruntime", "hnswlib", "pyproj", "yaml", "tifffile", "imagecodecs"}
OPTIONAL_BINDINGS = {"tensorrt", "cuda", "pycuda", "serial"}
# The device install's MAVLink extra (pyproject: mavlink, named by device): imported where used, with an error
# that names the extra when absent.
DEVICE_EXTRAS = {"pymavlink", "pyulog"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, wherever it stands."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if node.module is None or name == "edge_geoloc":  # from . import x / from edge_geoloc import x
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            arg = node.args[0] if node.args else None
            if (
                called in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                found.append((node.lineno, arg.value))
    return found


def violation(name: str) -> str | None:
    """Why the device wing may not import ``name`` (None: it may)."""
    top, _, rest = name.partition(".")
    if top == "edge_geoloc":
        sub = rest.split(".")[0]
        if sub in DEVICE or sub in SHARED or sub in ("", "__version__"):
            return None
        return "the workstation wing" if sub in WORKSTATION else f"edge_geoloc.{sub} (not part of the device wing)"
    if top in ("torch", "torchvision"):
        return "torch"
    if top == "__future__" or top in sys.stdlib_module_names:
        return None
    if top in DEVICE_THIRD_PARTY or top in OPTIONAL_BINDINGS or top in DEVICE_EXTRAS:
        return None
    return f"{top}, not a dependency of the device install"


def device_modules() -> list[Path]:
    files = [PKG / f"{m}.py" for m in SHARED] + [PKG / "__init__.py"]
    for pkg in DEVICE:
        files += sorted((PKG / pkg).rglob("*.py"))
    return files


def test_every_device_package_is_there_and_the_wings_partition_the_package():
    for pkg in DEVICE:
        assert (PKG / pkg / "__init__.py").is_file(), f"device package {pkg} is missing"
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(DEVICE) | set(WORKSTATION), "a package belongs to neither wing (or is gone)"


@pytest.mark.parametrize("path", device_modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_device_module_imports_only_the_device_wing(path):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name} ({why})"
        for line, name in imports_of(path)
        if (why := violation(name))
    ]
    assert not bad, "\n".join(bad)


def test_the_audit_sees_imports_inside_functions_relative_and_by_name():
    # A module shaped like the ones that fooled the old test: nothing forbidden runs at import time.
    fake = PKG / "localize" / "_audit_probe.py"
    fake.write_text(
        "def demo():\n"
        "    from edge_geoloc.sim.demo import run_demo\n"
        "    from ..world import layout\n"
        "    import importlib\n"
        "    importlib.import_module('torch')\n"
        "    return __import__('matplotlib.pyplot')\n"
    )
    try:
        names = [(line, name, violation(name)) for line, name in imports_of(fake)]
    finally:
        fake.unlink()
    flagged = {name for _, name, why in names if why}
    assert flagged == {"edge_geoloc.sim.demo", "edge_geoloc.world", "torch", "matplotlib.pyplot"}
    assert violation("edge_geoloc.localize.loop") is None and violation("edge_geoloc.config") is None
    assert violation("numpy") is None and violation("json") is None


def test_base_dependencies_are_the_device_install():
    """pyproject's base dependencies are what the audit allows (no torch, no matplotlib, no tqdm)."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for d in deps}
    import_names = {"opencv-python-headless": "cv2", "pyyaml": "yaml"}
    assert {import_names.get(n, n) for n in names} <= DEVICE_THIRD_PARTY, names
    assert not names & {"torch", "matplotlib", "tqdm", "onnx"}

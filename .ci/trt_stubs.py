"""Make the ``tensorrt-stubs`` package parse, so mypy can check the TensorRT path against it.

``make install`` puts tensorrt-stubs in ``.venv/typestubs`` (``pip --target --no-deps``: the stubs
package requires ``tensorrt``, which no machine here can install; and in site-packages its bare
``tensorrt/__init__.pyi`` would make ``import tensorrt`` succeed as an empty namespace package).
Its generated ``tensorrt.pyi`` has two flaws that stop mypy reading the whole file: parameters named
``in`` (a keyword) and one default-less parameter after defaulted ones (``add_scale_nd``). This
renames the first to ``in_`` and gives the second ``= ...``; every name the stubs declare stays as
NVIDIA's bindings spell it. Idempotent; fails if the result still does not parse.

    python .ci/trt_stubs.py .venv/typestubs
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def _split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur] if cur.strip() else out


def _fix_defaults(line: str) -> str:
    m = re.match(r"^(\s*def \w+\()(.*)(\) -> .*:\s*)$", line)
    if not m:
        return line
    params = _split_params(m.group(2))
    seen_default, fixed = False, []
    for p in params:
        name = p.strip()
        if "=" in name:
            seen_default = True
        elif seen_default and not name.startswith("*") and name != "/":
            p = f"{p} = ..."
        fixed.append(p)
    return m.group(1) + ",".join(fixed) + m.group(3)


def fix(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("def "):
            line = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
            end = "\n" if line.endswith("\n") else ""
            line = _fix_defaults(line.rstrip("\n")) + end
        lines.append(line)
    return "".join(lines)


def main(root: str) -> None:
    stubs = sorted(Path(root).glob("tensorrt*/**/*.pyi"))
    if not any(p.parts[-2] == "tensorrt" for p in stubs):
        sys.exit(f"{root}: no tensorrt stubs here (pip install --no-deps --target {root} tensorrt-stubs==...)")
    for path in stubs:
        text = path.read_text()
        fixed = fix(text)
        ast.parse(fixed, str(path), feature_version=(3, 10))  # raises SyntaxError naming the line if still broken
        if fixed != text:
            path.write_text(fixed)
            print(f"fixed {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".venv/typestubs")

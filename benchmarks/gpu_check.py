"""GPU check: build engines, FP16 parity against FP32, and a latency table, on an NVIDIA machine.

With TensorRT importable: ``compile_model`` builds FP16 engines from fresh exports (random
``tiny`` and ``transgeo-cvusa`` weights, or ``--model DIR`` exports) and the TensorRT encoder is
timed. Without TensorRT it says so and times FP16 through torch on CUDA (and FP32 through ONNX
Runtime's CUDA provider when onnxruntime-gpu is installed). FP16 parity: every FP16 backend's
descriptors against the FP32 ONNX Runtime CPU reference, cosine >= 0.999 per row.

On a machine without an NVIDIA GPU it says so and exits 0 at once (``make test`` runs it).
The committed table is written only when a GPU was found (``--json`` forces a path).

    python benchmarks/gpu_check.py [--quick] [--json PATH] [--model DIR ...]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_geoloc.config import strict_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
MIN_COSINE_FP16 = 0.999


def nvidia_gpu() -> str | None:
    """The GPU's name from nvidia-smi, or None when there is no NVIDIA GPU (checked without importing torch)."""
    if shutil.which("nvidia-smi") is None and not glob.glob("/dev/nvidia[0-9]*"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return names[0] if out.returncode == 0 and names else None


def exports(work: Path, quick: bool, given: list[Path]) -> list[Path]:
    if given:
        return given
    import torch

    from edge_geoloc.export.onnx_export import export_model
    from edge_geoloc.model.config import load_model_config
    from edge_geoloc.model.vit import CrossViewModel
    from edge_geoloc.train.checkpoint import model_state, save_checkpoint

    dirs = []
    for name in ["tiny"] if quick else ["tiny", "transgeo-cvusa"]:
        torch.manual_seed(0)
        cfg = load_model_config(name)
        ckpt = work / f"{name}.pt"
        save_checkpoint(ckpt, {**model_state(cfg), "model": CrossViewModel(cfg).state_dict()})
        export_model(ckpt, work / name, parity_samples=2)
        dirs.append(work / name)
    return dirs


def timed(fn, x, iterations: int) -> list[float]:
    fn(x)
    fn(x)
    out = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def backends(model_dir: Path, branch: str, have_trt: bool) -> dict[str, object]:
    """name -> callable(batch) -> descriptors, for every GPU path available here."""
    import onnxruntime as ort

    from edge_geoloc.runtime.encoder import OrtEncoder

    found: dict[str, object] = {}
    if have_trt:
        from edge_geoloc.runtime.tensorrt import TensorRTEncoder

        enc = TensorRTEncoder(model_dir, branch)
        found[f"tensorrt-{enc.precision}"] = lambda x, enc=enc: enc.run(x)[0]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        enc = OrtEncoder(model_dir, branch, device="cuda")
        found["onnxruntime-cuda-fp32"] = lambda x, enc=enc: enc.run(x)[0]
    import torch

    if torch.cuda.is_available():
        from edge_geoloc.model.graphs import encoder_graph
        from edge_geoloc.runtime.card import load_card
        from edge_geoloc.train.checkpoint import load_model

        card = load_card(model_dir)
        model, _ = load_model(card.checkpoint)
        keep = card.aerial.keep_ratio
        for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            graph = encoder_graph(model, branch, keep).to("cuda", dtype)

            def run(x, graph=graph, dtype=dtype):
                with torch.no_grad():
                    d = graph(torch.from_numpy(x).to("cuda", dtype))[0]
                return d.float().cpu().numpy()  # the copy back synchronizes

            found[f"torch-cuda-{precision}"] = run
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, fewer iterations")
    parser.add_argument(
        "--json", type=Path, default=None, help=f"write rows here (default {RESULTS.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--model", type=Path, nargs="*", default=[], help="export folders to check (default: fresh random exports)"
    )
    args = parser.parse_args(argv)
    gpu = nvidia_gpu()
    if gpu is None:
        print("gpu_check: no NVIDIA GPU on this machine (no nvidia-smi / /dev/nvidia*): nothing to build or time")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(strict_json([{"_meta": True, "gpu": None, "note": "no NVIDIA GPU"}]))
        return 0
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    have_trt = importlib.util.find_spec("tensorrt") is not None
    notes = [f"GPU: {gpu}"]
    if not have_trt:
        notes.append(
            "TensorRT is not importable here: timing FP16 through torch on CUDA (and ORT CUDA FP32 if present)"
        )
    from edge_geoloc.runtime.encoder import OrtEncoder

    rows = []
    failures = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="edge-geoloc-gpu-") as tmp:
        for model_dir in exports(Path(tmp), args.quick, args.model):
            if have_trt:
                from edge_geoloc.runtime.tensorrt_build import compile_model

                t = time.perf_counter()
                built = compile_model(model_dir, fp16=True)
                notes.append(
                    f"{model_dir.name}: built {len(built)} TensorRT {built[0].tensorrt_version} engines"
                    f" ({built[0].precision}) in {time.perf_counter() - t:.0f} s"
                )
            for branch in ("street", "aerial"):
                reference = OrtEncoder(model_dir, branch)  # FP32 on the CPU: the parity reference
                runs = backends(model_dir, branch, have_trt)
                max_batch = reference.card.branch(branch).batch.max
                for n in (1, min(32, max_batch)):
                    x = rng.standard_normal((n, *reference.input_shape)).astype(np.float32)
                    ref = reference.run(x)[0]
                    for name, fn in runs.items():
                        d = fn(x)
                        cos = float(((d * ref).sum(1) / np.linalg.norm(d, axis=1) / np.linalg.norm(ref, axis=1)).min())
                        times = np.array(timed(fn, x, 5 if args.quick else 20))
                        row = {
                            "model": model_dir.name,
                            "config": reference.card.config,
                            "branch": branch,
                            "backend": name,
                            "batch": n,
                            "p50_ms": 1e3 * float(np.percentile(times, 50)),
                            "p99_ms": 1e3 * float(np.percentile(times, 99)),
                            "images_per_s": n / float(np.percentile(times, 50)),
                            "min_cosine_vs_fp32_cpu": cos,
                        }
                        rows.append(row)
                        if "fp16" in name and cos < MIN_COSINE_FP16:
                            failures.append(f"{model_dir.name} {branch} {name} batch {n}: cosine {cos:.5f}")
    print(f"\ngpu_check on {gpu}")
    for note in notes:
        print(f"  note: {note}")
    head = f"{'model':<15} {'branch':<7} {'backend':<22} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'img/s':>9} {'min cos':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:<15} {r['branch']:<7} {r['backend']:<22} {r['batch']:>5} {r['p50_ms']:>9.2f}"
            f" {r['p99_ms']:>9.2f} {r['images_per_s']:>9.1f} {r['min_cosine_vs_fp32_cpu']:>9.5f}"
        )
    out = args.json or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(strict_json([{"_meta": True, "gpu": gpu, "notes": notes, "failures": failures}, *rows], indent=1))
    print(f"wrote {out}")
    if failures:
        print("FP16 parity below 0.999: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

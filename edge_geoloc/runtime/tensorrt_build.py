"""``edge-geoloc compile``: TensorRT engines from an export's ONNX graphs, built on the target GPU.

Written against TensorRT 10's Python API (``trt.Builder``, ``OnnxParser``,
``IBuilderConfig.set_memory_pool_limit``, ``BuilderFlag.FP16``, one optimization profile for the
batch axis, ``build_serialized_network``); TensorRT 8.6 works too (explicit-batch flag). The
profile comes from the model card, so the engine accepts exactly the batches the runtime's
preallocated buffers hold. Each engine gets a sidecar (TensorRT version, GPU, compute
capability, precision, the ONNX sha256, the profile) that the runtime checks before loading.
No torch here: this runs on the device.

The pruned aerial graph puts its kept patch indices back in spatial order with an INT64 TopK;
onnx-tensorrt lists INT32/INT64 TopK from TensorRT 10 (JetPack 6), while 8.x parses float TopK
only, so a pruned export needs TensorRT >= 10 (an unpruned one, keep ratio 1, has no TopK).
Not verified on hardware here: no TensorRT on these machines; but the calls are type-checked
against NVIDIA's API surface (``tensorrt-stubs``) in ``make typecheck``: under ``TYPE_CHECKING`` the
module :func:`build_engine` drives is ``tensorrt`` itself, at run time whatever was passed in.
"""

from __future__ import annotations

import importlib
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_geoloc.runtime.card import BRANCHES, INPUT, ModelCard, sha256_of, verify
from edge_geoloc.runtime.cuda import CudaAdapter, select_adapter
from edge_geoloc.runtime.engine import SIDECAR_FORMAT, EngineSidecar, engine_paths, write_sidecar
from edge_geoloc.runtime.tensorrt import profile_shapes

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """TensorRT could not parse or build a graph."""


def import_tensorrt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as err:
        raise BuildError(
            f"TensorRT is not installed here ({err}); compile on the target (JetPack ships it), "
            "or run the ONNX graphs with ONNX Runtime"
        ) from None


def build_engine(
    trt: Any, card: ModelCard, model_dir: Path, branch: str, fp16: bool, workspace_mb: int
) -> tuple[bytes, str]:
    """Serialized engine bytes and the precision actually used.

    ``trt`` is the tensorrt module, or a stand-in with its surface (tests); the checker sees the real one.
    """
    if TYPE_CHECKING:
        import tensorrt as api
    else:
        api = trt
    logger = api.Logger(api.Logger.WARNING)
    builder = api.Builder(logger)
    flags = 0
    if hasattr(api.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8.x; implicit (deprecated) in 10
        flags = 1 << int(api.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = api.OnnxParser(network, logger)
    onnx_path = model_dir / card.branch(branch).file
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"{onnx_path}: TensorRT cannot parse the graph: {'; '.join(errors) or 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(api.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    precision = "fp32"
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("%s: this GPU has no fast FP16; building FP32", branch)
        else:
            config.set_flag(api.BuilderFlag.FP16)
            precision = "fp16"
    profile = builder.create_optimization_profile()
    # pybind11 converts a sequence of ints to Dims implicitly; the stubs list only Dims.
    profile.set_shape(INPUT, *profile_shapes(card, branch))  # type: ignore[arg-type]
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    return bytes(serialized), precision


def compile_model(
    model_dir: str | Path,
    fp16: bool | None = None,
    workspace_mb: int = 1024,
    branches: list[str] | tuple[str, ...] = BRANCHES,
    trt: Any = None,
    cuda: CudaAdapter | None = None,
) -> list[EngineSidecar]:
    """Build ``<branch>.engine`` + sidecar for each branch; ``fp16`` None follows the card's precision."""
    model_dir = Path(model_dir)
    card = verify(model_dir)  # never compile graphs that do not match their card
    trt = trt or import_tensorrt()
    cuda = cuda or select_adapter()  # a CUDA context, and the GPU's identity for the sidecar
    gpu = cuda.device_info()
    fp16 = card.precision == "fp16" if fp16 is None else fp16
    built = []
    for branch in branches:
        entry = card.branch(branch)
        data, precision = build_engine(trt, card, model_dir, branch, fp16, workspace_mb)
        engine, side = engine_paths(model_dir, branch)
        tmp = engine.with_name(f".{engine.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, engine)  # a reader never sees half an engine
        sidecar = EngineSidecar(
            format=SIDECAR_FORMAT,
            branch=branch,  # type: ignore[arg-type]
            engine_file=engine.name,
            engine_sha256=sha256_of(engine),
            onnx_file=entry.file,
            onnx_sha256=entry.sha256,
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            precision=precision,  # type: ignore[arg-type]
            profile=entry.batch,
            workspace_mb=workspace_mb,
            built=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        write_sidecar(sidecar, side)
        built.append(sidecar)
    cuda.close()
    return built

"""Workstation-side export: ONNX graphs with the model card, FLOP counting, parity, TensorRT builds.

Only ``onnx_export``, ``graphs``, ``parity`` and the FlopCounterMode cross-check import torch, and
only when they run; ``recipe``, ``flops`` (analytic) and ``tensorrt_build`` are torch-free so that
``edge-geoloc flops`` and ``edge-geoloc compile`` work on a device without torch.
"""

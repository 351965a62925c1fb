"""Device-side inference (no torch): model card, preprocessing, encoders over TensorRT / ONNX Runtime.

from edge_geoloc.runtime import open_encoder
street = open_encoder("export/build/demo", "street")      # TensorRT > ORT CUDA > ORT CPU
descriptors = street.encode(panoramas)                     # (N, D), L2-normalized
"""

from edge_geoloc.runtime.card import CardError, ModelCard, load_card, verify
from edge_geoloc.runtime.encoder import Encoder, OrtEncoder, open_encoder
from edge_geoloc.runtime.offset import OffsetRegressor
from edge_geoloc.runtime.preprocess import InputError, InputSpec, preprocess

__all__ = [
    "CardError",
    "Encoder",
    "InputError",
    "InputSpec",
    "ModelCard",
    "OffsetRegressor",
    "OrtEncoder",
    "load_card",
    "open_encoder",
    "preprocess",
    "verify",
]

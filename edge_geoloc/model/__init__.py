"""Cross-view model (torch): ViT branches, patch pruning, offset head, losses.

Importing this package needs no torch; ``edge_geoloc.model.vit`` and ``.losses`` do.
"""

from edge_geoloc.model.config import BranchConfig, ModelConfig, load_model_config, named_configs

__all__ = ["BranchConfig", "ModelConfig", "load_model_config", "named_configs"]

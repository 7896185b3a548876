"""The ViT family: configuration, module, presets and checkpoint IO.

Configuration and presets import without torch, so `vitbench models` and `--help` stay fast;
the module and checkpoint functions load torch when first used.
"""

from harness.model.config import ViTConfig, count_macs, count_params, describe
from harness.model.presets import PRESETS, preset_config, preset_names

_LAZY = {
    "VisionTransformer": "harness.model.vit",
    "build_model": "harness.model.vit",
    "ImportGuessWarning": "harness.model.timm_import",
    "import_timm": "harness.model.timm_import",
    "infer_config": "harness.model.timm_import",
    "load_checkpoint": "harness.model.checkpoint",
    "load_config": "harness.model.checkpoint",
    "load_model": "harness.model.checkpoint",
    "resample_pos_embed": "harness.model.weights",
    "save_checkpoint": "harness.model.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness.model' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "ViTConfig",
    "count_macs",
    "count_params",
    "describe",
    "preset_config",
    "preset_names",
    *_LAZY,
]

"""Task networks, built by name from ``[tasks.model]``.  Each task group trains its own, of any architecture."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .mlp import MLP
from .unet import UNet

MODELS = {"mlp": MLP, "unet": UNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate ``cfg.kind``; ``ValueError`` naming the field for an unknown kind."""
    if cfg.kind not in MODELS:
        raise ValueError(f"{cfg._path}.kind: unknown model {cfg.kind!r}; choose one of {sorted(MODELS)}")
    return MODELS[cfg.kind].from_config(cfg)

"""A small multilayer perceptron (the runtime's toy regression task)."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """``in_channels`` → ``depth`` hidden layers of ``base_channels`` (ReLU) → ``out_channels``.

    Shape: input (B, in_channels), output (B, out_channels).
    """

    def __init__(self, in_features: int, hidden: int, layers: int, out_features: int):
        mods, width = [], in_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(nn.Linear(width, out_features))
        super().__init__(*mods)

    @classmethod
    def from_config(cls, cfg) -> "MLP":
        return cls(cfg.in_channels, cfg.base_channels, cfg.depth, cfg.out_channels)

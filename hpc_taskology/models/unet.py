"""A compact U-Net encoder-decoder for dense prediction (depth, normals, segmentation logits).

Follows Ronneberger et al. (MICCAI 2015) with GroupNorm and bilinear upsampling; the head is linear so each task
applies its own output activation (softplus depth, unit-normalised normals, raw logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` down-sampling stages starting at ``base`` channels.

    Shape: input (B, in_channels, H, W) → output (B, out_channels, H, W); H and W need not be multiples of
    2**depth (skip connections are resized to match).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base: int = 16, depth: int = 4):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = _block(in_channels, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @classmethod
    def from_config(cls, cfg) -> "UNet":
        return cls(cfg.in_channels, cfg.out_channels, cfg.base_channels, cfg.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1))
        return self.head(y)

"""A toy regression task for exercising the runtime: fit a fixed random linear map with an MLP.

Each task name gets its own teacher map (seeded from the name), so two toy groups learn different functions and
their averaged gradients differ.  The dedicated dataset is generated in memory from the job seed.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..models import build_model
from .base import Task


class ToyRegressionTask(Task):
    """Dedicated data: x ~ N(0, I) of ``model.in_channels``, y = A x + 0.01 ε with A fixed per task name."""

    N_SAMPLES = 4096

    def __init__(self, cfg, job, topo):
        super().__init__(cfg, job, topo)
        g = torch.Generator().manual_seed(job.job.seed * 7 + zlib.crc32(cfg.name.encode()))
        m = cfg.model
        self.teacher = torch.randn(m.out_channels, m.in_channels, generator=g)
        self.x = torch.randn(self.N_SAMPLES, m.in_channels, generator=g)
        self.y = self.x @ self.teacher.T + 0.01 * torch.randn(self.N_SAMPLES, m.out_channels, generator=g)

    def build_model(self):
        return build_model(self.cfg.model)

    def num_dedicated(self) -> int:
        return self.N_SAMPLES

    def dedicated_batch(self, indices: np.ndarray) -> dict:
        idx = torch.as_tensor(indices)
        return {"x": self.x[idx], "y": self.y[idx]}

    def supervised_loss(self, model, batch):
        loss = F.mse_loss(model(batch["x"]), batch["y"])
        return loss, {}

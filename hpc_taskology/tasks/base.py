"""The interface a task implements to plug into :class:`~hpc_taskology.trainer.TaskTrainer`.

Taskology §3.1: each task is its own network with its own dedicated (labelled) dataset and supervised loss; when
the job has a mediator dataset, the task adds λ × a consistency loss computed against its peers' (stale)
predictions.  Gradients stay inside the task's own network: peers' predictions are constants.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import JobConfig, TaskConfig


class Task:
    """Base class; subclasses override the methods below.  One instance per rank."""

    def __init__(self, cfg: TaskConfig, job: JobConfig, topo):
        self.cfg, self.job, self.topo = cfg, job, topo

    @property
    def name(self) -> str:
        return self.cfg.name

    def build_model(self) -> nn.Module:
        """The task's network, freshly initialised (the trainer seeds torch per rank, then broadcasts the leader's)."""
        raise NotImplementedError

    def num_dedicated(self) -> int:
        """Number of samples in the dedicated dataset."""
        raise NotImplementedError

    def dedicated_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The dedicated samples ``indices`` as a dict of batched tensors."""
        raise NotImplementedError

    def supervised_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss to minimise, metrics with units in their names) on a dedicated batch."""
        raise NotImplementedError

    def consistency_loss(self, model: nn.Module, step: int) -> tuple[torch.Tensor | None, dict[str, float]]:
        """(consistency loss on this step's mediator batch or ``None``, metrics).  Default: no consistency."""
        return None, {}

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after the optimizer step ``step`` (e.g. a refresh sweep of the task's board entries)."""

    @classmethod
    def board_outputs(cls, job: JobConfig) -> dict[str, tuple[int, ...]]:
        """Outputs this task kind publishes on the prediction board, ``{output: per-sample shape}``; default none."""
        return {}

    def attach_mediator(self, mediator, board) -> None:
        """Give the task the mediator dataset and the prediction board (jobs with a ``[mediator]``)."""

    def metric_keys(self) -> list[str]:
        """Every metric name this task may report, in a fixed order (group averaging is a collective)."""
        return []

    def close(self) -> None:
        """Release resources (files, board); called once at the end of training, also after an error."""

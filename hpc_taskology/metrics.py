"""Metrics: averaged over the task group, logged by the group leader to TensorBoard and tqdm.

Metric names carry their units, torchtitan style: ``loss/supervised``, ``throughput(samples/s)``,
``time/step(s)``, ``board/depth.depth/staleness_p50(steps)``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch


class MetricAccumulator:
    """Running sums of scalar metrics between two logs (per rank)."""

    def __init__(self):
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def add(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self._sum[k] += float(v)
            self._count[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self._sum[k] / self._count[k] for k in self._sum}

    def reset(self) -> None:
        self._sum.clear()
        self._count.clear()


def group_mean(backend, metrics: dict[str, float], keys: list[str], name: str) -> dict[str, float]:
    """Average ``metrics`` over the task group.

    ``keys`` must be the same list, in the same order, on every rank of the group (a collective); a key a rank lacks
    counts as NaN there and is dropped from the result if any rank lacked it.
    """
    if not keys:
        return {}
    t = torch.tensor([metrics.get(k, float("nan")) for k in keys], dtype=torch.float64)
    mean = backend.allreduce_mean(t, name=name)
    return {k: float(v) for k, v in zip(keys, mean) if v == v}


class LeaderLog:
    """TensorBoard scalars + a JSON-lines file under ``<run_dir>/logs/<task>``; a no-op on non-leader ranks."""

    def __init__(self, run_dir: Path, task: str, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            d = Path(run_dir) / "logs" / task
            d.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(d))
            self.jsonl = open(d / "metrics.jsonl", "a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.jsonl.close()

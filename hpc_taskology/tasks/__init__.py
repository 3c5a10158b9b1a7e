"""Tasks that plug into the trainer, by ``[[tasks]].kind`` (default: the task's name)."""

from __future__ import annotations

import importlib

# kind -> "module:Class"; imported lazily so a job only imports the tasks it trains.
TASKS: dict[str, str] = {
    "toy": "hpc_taskology.tasks.toy:ToyRegressionTask",
    "depth": "hpc_taskology.tasks.dense:DepthTask",
    "normals": "hpc_taskology.tasks.dense:NormalsTask",
}


def task_class(cfg):
    """The task class registered for ``cfg.kind``; ``ValueError`` naming the field if unknown."""
    if cfg.kind not in TASKS:
        raise ValueError(f"{cfg._path}.kind: unknown task kind {cfg.kind!r}; choose one of {sorted(TASKS)}")
    module, cls = TASKS[cfg.kind].split(":")
    return getattr(importlib.import_module(module), cls)


def make_task(cfg, job, topo):
    """Instantiate the task registered for ``cfg.kind`` on this rank."""
    return task_class(cfg)(cfg, job, topo)

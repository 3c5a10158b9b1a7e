"""Per-group checkpoints: model, optimizer, step and sampler position, written atomically by the group leader.

Layout: ``<run_dir>/checkpoints/<task>/step_<NNNNNNN>.pt``; the newest complete file is the one to resume from.
Files are written under a temporary name and renamed (``os.replace``), so a crash mid-write never leaves a file that
looks complete.  Uses ``torch.save``/``torch.load`` (``weights_only=True``: only tensors and plain containers).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_PATTERN = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(run_dir: str | Path, task: str) -> Path:
    return Path(run_dir) / "checkpoints" / task


def save_checkpoint(run_dir: str | Path, task: str, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``state`` as the checkpoint of ``task`` at ``step`` (completed steps); keep the newest ``keep`` files."""
    d = checkpoint_dir(run_dir, task)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:07d}.pt"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    torch.save({**state, "step": step, "task": task}, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir, task)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path, task: str) -> list[Path]:
    """Complete checkpoints of ``task``, oldest first."""
    d = checkpoint_dir(run_dir, task)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(run_dir: str | Path, task: str) -> dict | None:
    """The newest checkpoint of ``task`` as a dict, or ``None`` if there is none.

    Raises ``RuntimeError`` naming the file if it cannot be read or belongs to another task.
    """
    paths = list_checkpoints(run_dir, task)
    if not paths:
        return None
    try:
        state = torch.load(paths[-1], map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"checkpoint {paths[-1]} cannot be read: {e}") from e
    if state.get("task") != task:
        raise RuntimeError(f"checkpoint {paths[-1]} is for task {state.get('task')!r}, not {task!r}")
    return state

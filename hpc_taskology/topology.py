"""Topology: the MPI world split into one group per task, with the group's gradient-averaging backend.

One validated object built from the job config and ``MPI.COMM_WORLD`` (torchtitan ``distributed/parallel_dims.py``,
Megatron ``core/parallel_state.py``): a world-size mismatch error prints every factor, and the getters of a
topology that was shut down fail loudly.

Rank layout: tasks take consecutive blocks of world ranks in job-file order, so with ``depth: 2, normals: 2`` ranks
0-1 train depth and 2-3 train normals.  The group communicator is ``world.Split(color=task index, key=world rank)``,
so group rank order follows world rank order and the group leader (group rank 0) is the block's first world rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import JobConfig


class TopologyError(RuntimeError):
    """The job's task layout does not fit the MPI world it was launched in."""


def task_rank_blocks(cfg: JobConfig) -> list[list[int]]:
    """World ranks of every task, in job-file order: consecutive blocks of ``task.ranks`` ranks."""
    blocks, start = [], 0
    for t in cfg.tasks:
        blocks.append(list(range(start, start + t.ranks)))
        start += t.ranks
    return blocks


def check_world_size(cfg: JobConfig, world_size: int) -> None:
    """Raise :class:`TopologyError` unless the tasks' ranks add up to ``world_size``; the message lists every task."""
    if cfg.total_ranks != world_size:
        counts = " + ".join(f"{t.name}={t.ranks}" for t in cfg.tasks)
        raise TopologyError(
            f"{cfg.source}: the tasks' ranks add up to {counts} = {cfg.total_ranks}, but the MPI world has "
            f"{world_size} rank(s); launch with -n {cfg.total_ranks} or change [[tasks]].ranks"
        )


@dataclass
class Topology:
    """This rank's place in the job: its task, its group, and the backend that averages gradients in the group.

    Build it with :meth:`Topology.build`; call :meth:`shutdown` at the end (a collective over the world, made
    without busy-waiting so a group that finishes early does not steal cores from one still training).
    """

    cfg: JobConfig
    world: object  # mpi4py MPI.Intracomm
    group: object  # mpi4py MPI.Intracomm of this task group
    task_index: int
    task_ranks: list[list[int]]
    backend: object  # GroupBackend
    _alive: bool = True

    @classmethod
    def build(cls, cfg: JobConfig, world=None, backend: str | None = None) -> "Topology":
        """Split ``world`` (default ``MPI.COMM_WORLD``) into task groups and start the job's backend.

        ``backend`` overrides ``cfg.job.backend`` (``"horovod"`` or ``"torch"``).  Raises :class:`TopologyError` if
        the world size does not match the job file, ``ValueError`` for an unknown backend, ``ImportError`` if
        Horovod is asked for but missing.
        """
        from mpi4py import MPI

        from .backends import HorovodBackend, TorchDistBackend

        world = MPI.COMM_WORLD if world is None else world
        check_world_size(cfg, world.size)
        blocks = task_rank_blocks(cfg)
        task_index = next(i for i, b in enumerate(blocks) if world.rank in b)
        group = world.Split(color=task_index, key=world.rank)
        leader = blocks[task_index][0]
        name = backend or cfg.job.backend
        if name == "horovod":
            be = HorovodBackend(world, group, leader)
        elif name == "torch":
            be = TorchDistBackend(world, blocks, task_index, leader)
        else:
            raise ValueError(f"unknown backend {name!r}; choose 'horovod' or 'torch'")
        topo = cls(cfg=cfg, world=world, group=group, task_index=task_index, task_ranks=blocks, backend=be)
        topo._set_threads()
        return topo

    # ---- getters (fail loudly once shut down) -------------------------------------------------------------------
    def _live(self):
        if not self._alive:
            raise RuntimeError("Topology was shut down; build a new one")
        return self

    @property
    def task(self) -> str:
        """This rank's task name."""
        return self._live().cfg.tasks[self.task_index].name

    @property
    def task_cfg(self):
        """This rank's :class:`~hpc_taskology.config.TaskConfig`."""
        return self._live().cfg.tasks[self.task_index]

    @property
    def world_rank(self) -> int:
        return self._live().world.rank

    @property
    def world_size(self) -> int:
        return self._live().world.size

    @property
    def group_rank(self) -> int:
        """Rank within the task group (0 = leader)."""
        return self._live().group.rank

    @property
    def group_size(self) -> int:
        return self._live().group.size

    @property
    def leader(self) -> int:
        """World rank of the group leader (group rank 0): it logs, checkpoints and prints progress."""
        return self.task_ranks[self.task_index][0]

    @property
    def is_leader(self) -> bool:
        return self.group_rank == 0

    @property
    def peers(self) -> list[str]:
        """Names of the other tasks in the job, in job-file order."""
        return [t.name for i, t in enumerate(self._live().cfg.tasks) if i != self.task_index]

    def ranks_of(self, task: str) -> list[int]:
        """World ranks of ``task``'s group; ``KeyError`` if the job has no such task."""
        for t, r in zip(self.cfg.tasks, self.task_ranks):
            if t.name == task:
                return r
        raise KeyError(f"no task {task!r}; tasks are {[t.name for t in self.cfg.tasks]}")

    def describe(self) -> str:
        """One line: task, world rank, group rank, group size, backend (what ``taskology topology`` prints)."""
        return (
            f"task={self.task} world_rank={self.world_rank}/{self.world_size} group_rank={self.group_rank} "
            f"group_size={self.group_size} backend={self.backend.name}"
        )

    def _set_threads(self) -> None:
        """One intra-op pool per rank: job.threads_per_rank, else SLURM_CPUS_PER_TASK, else this node's cores / ranks."""
        import torch

        n = self.cfg.job.threads_per_rank or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
        if n == 0:
            local = self.world.Split_type(__import__("mpi4py").MPI.COMM_TYPE_SHARED)
            n = max(1, (os.cpu_count() or 1) // local.size)
            local.Free()
        torch.set_num_threads(n)

    def wait_all(self, poll_s: float = 0.05) -> None:
        """Wait for every rank of the world without spinning (``Ibarrier`` + sleep).

        OpenMPI's blocking barrier busy-polls; a group that finished early would take cores from one still training.
        """
        import time

        req = self.world.Ibarrier()
        while not req.Test():
            time.sleep(poll_s)

    def shutdown(self) -> None:
        """Wait for all groups, then stop the backend and free the group communicator.  Idempotent."""
        if not self._alive:
            return
        self.wait_all()
        self.backend.shutdown()
        self.group.Free()
        self._alive = False

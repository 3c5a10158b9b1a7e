"""Which rank owns which mediator sample id, and a light stand-in for :class:`~hpc_taskology.topology.Topology`.

Sharding rule (round-robin): in a producing group of ``G`` ranks, sample id ``i`` lives on group rank ``i % G`` at
slot ``i // G`` of that rank's shard.  Round-robin rather than contiguous blocks so that one mediator batch (random
or consecutive ids) spreads its reads and writes over all ranks of the group instead of queueing on one window lock.
Group rank ``g`` therefore holds ``ceil((n - g) / G)`` ids (0 if ``g >= n``); the largest shard is group rank 0's.

:class:`GroupLayout` exposes the attributes the board reads from a Topology (``world``, ``task``, ``world_rank``,
``group_rank``, ``group_size``, ``peers``, ``ranks_of``) without starting a gradient backend, so benchmarks and MPI
tests can build a board from ``{task: n_ranks}`` alone.  It uses the Topology's rank layout (consecutive blocks of
world ranks in task order, :func:`hpc_taskology.topology.task_rank_blocks`).
"""

from __future__ import annotations

import numpy as np


def owner_of(ids: np.ndarray, group_size: int) -> np.ndarray:
    """Group rank owning each sample id: ``ids % group_size``; ``ids`` int64 of shape (B,) -> int64 (B,)."""
    return np.asarray(ids, dtype=np.int64) % group_size


def slot_of(ids: np.ndarray, group_size: int) -> np.ndarray:
    """Slot of each id in its owner's shard: ``ids // group_size``; (B,) -> (B,)."""
    return np.asarray(ids, dtype=np.int64) // group_size


def shard_len(n_samples: int, group_size: int, group_rank: int) -> int:
    """Number of ids held by ``group_rank``: ``ceil((n_samples - group_rank) / group_size)``, 0 when none."""
    if group_rank >= n_samples:
        return 0
    return (n_samples - group_rank + group_size - 1) // group_size


def shard_ids(n_samples: int, group_size: int, group_rank: int) -> np.ndarray:
    """The ids held by ``group_rank`` in slot order: ``group_rank, group_rank + G, ...`` (int64, shape (n,))."""
    return np.arange(group_rank, n_samples, group_size, dtype=np.int64)


class GroupLayout:
    """Tasks laid out on consecutive world ranks, with the Topology attributes the board uses.

    Args:
        world: mpi4py communicator of the whole job.
        ranks: ``{task: n_ranks}`` in job-file order; the counts must add up to ``world.size``.

    Raises:
        ValueError: the counts do not add up to the world size, or a count is < 1.
    """

    def __init__(self, world, ranks: dict[str, int]):
        total = sum(ranks.values())
        if any(n < 1 for n in ranks.values()) or total != world.size:
            counts = " + ".join(f"{t}={n}" for t, n in ranks.items())
            raise ValueError(f"GroupLayout: ranks {counts} = {total} must be >= 1 each and add up to the world size "
                             f"{world.size}")
        self.world = world
        self._blocks: dict[str, list[int]] = {}
        start = 0
        for t, n in ranks.items():
            self._blocks[t] = list(range(start, start + n))
            start += n
        self.task = next(t for t, b in self._blocks.items() if world.rank in b)

    @classmethod
    def from_config(cls, cfg, world) -> "GroupLayout":
        """The layout of a :class:`~hpc_taskology.config.JobConfig` (same blocks as ``Topology.build``)."""
        return cls(world, {t.name: t.ranks for t in cfg.tasks})

    @property
    def world_rank(self) -> int:
        """This rank in ``world``."""
        return self.world.rank

    @property
    def group_rank(self) -> int:
        """Rank within this task's group (0 = leader): position in the group's block of world ranks."""
        return self._blocks[self.task].index(self.world.rank)

    @property
    def group_size(self) -> int:
        """Ranks in this task's group."""
        return len(self._blocks[self.task])

    @property
    def peers(self) -> list[str]:
        """The other tasks, in layout order."""
        return [t for t in self._blocks if t != self.task]

    @property
    def tasks(self) -> list[str]:
        """All tasks, in layout order."""
        return list(self._blocks)

    def ranks_of(self, task: str) -> list[int]:
        """World ranks of ``task``'s group; ``KeyError`` naming the known tasks."""
        if task not in self._blocks:
            raise KeyError(f"no task {task!r}; tasks are {list(self._blocks)}")
        return self._blocks[task]

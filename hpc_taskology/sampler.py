"""Group-sharded, resumable sampling of sample indices for one task group.

Like ``torch.utils.data.DistributedSampler`` (whose shuffle-per-epoch-by-seed scheme it follows), but infinite and
step-indexed: batch ``s`` of group rank ``r`` is a pure function of (seed, n, group size, batch size, s), so resuming
from a checkpoint only needs the step, and every rank of the group draws disjoint samples within an epoch.
"""

from __future__ import annotations

import numpy as np


class GroupShardedSampler:
    """Indices of batch ``step`` for one rank of a task group.

    Each epoch is a permutation of ``range(n)`` drawn from ``seed + epoch``; it is cut into global batches of
    ``batch_size × group_size`` indices, and rank ``r`` takes the ``r``-th slice of ``batch_size``.  A tail too short
    for a global batch is dropped (as ``drop_last=True``).  Raises ``ValueError`` if the dataset has fewer samples than
    one global batch.
    """

    def __init__(self, n: int, batch_size: int, group_rank: int, group_size: int, seed: int = 0, shuffle: bool = True):
        if not 0 <= group_rank < group_size:
            raise ValueError(f"group_rank {group_rank} not in [0, {group_size})")
        if n < batch_size * group_size:
            raise ValueError(
                f"dataset of {n} samples is smaller than one global batch ({batch_size} per rank × {group_size} ranks)"
            )
        self.n, self.batch_size, self.rank, self.size = n, batch_size, group_rank, group_size
        self.seed, self.shuffle = seed, shuffle
        self.batches_per_epoch = n // (batch_size * group_size)
        self._epoch, self._perm = -1, None

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng(self.seed + epoch)
            self._perm = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            self._epoch = epoch
        return self._perm

    def batch(self, step: int) -> np.ndarray:
        """Sample indices (int64, length ``batch_size``) of this rank's batch at ``step`` (0-based)."""
        epoch, b = divmod(step, self.batches_per_epoch)
        start = (b * self.size + self.rank) * self.batch_size
        return self._order(epoch)[start:start + self.batch_size].astype(np.int64)

    def state_dict(self, step: int) -> dict:
        """What a checkpoint stores to resume at ``step`` (checked on load against this sampler's settings)."""
        return {"step": step, "n": self.n, "batch_size": self.batch_size, "group_size": self.size, "seed": self.seed}

    def check_state(self, state: dict) -> int:
        """Validate a checkpointed sampler state against this sampler; returns the step to resume at."""
        for key in ("n", "batch_size", "group_size", "seed"):
            mine = getattr(self, {"group_size": "size"}.get(key, key))
            if state.get(key) != mine:
                raise ValueError(f"checkpointed sampler {key}={state.get(key)} differs from this run's {key}={mine}")
        return int(state["step"])

"""The mediator schedule: which mediator-sample ids each rank of each task group reads at each step.

Taskology (Lu et al., CVPR 2021, Sec. 3.2) lets task networks meet on a shared unlabelled *mediator dataset*: each
task publishes its predictions on mediator samples and reads the (possibly stale) predictions of the other tasks
on the same samples.  The prediction board stores entries by sample id, so the groups must agree on which ids come
when: every group derives the same global order from the same seed, and groups with the same global batch
(``batch_size × group_size``) see the same ids at the same step, whatever their group sizes.

The order is ``torch.utils.data.DistributedSampler``'s scheme made step-indexed (as
:class:`hpc_taskology.sampler.GroupShardedSampler`, which it uses): epoch e is a permutation of ``range(n)`` drawn
from ``numpy.random.default_rng(seed + e)``, cut into global batches (a tail shorter than a global batch is dropped);
rank r of a group takes the r-th slice of ``batch_size`` ids of the global batch.
"""

from __future__ import annotations

import numpy as np

from ..sampler import GroupShardedSampler


class MediatorSchedule:
    """Mediator sample ids of step ``step`` for rank ``group_rank`` of a task group of ``group_size`` ranks.

    ``n_samples``: rows of the mediator file; ``seed``: the job's mediator seed (the same in every group);
    ``batch_size``: ids per rank per step.  Raises ``ValueError`` (naming the argument) for a non-positive size, a
    rank outside the group, or fewer samples than one global batch.
    """

    def __init__(self, n_samples: int, seed: int, batch_size: int, group_rank: int = 0, group_size: int = 1):
        for name, v in (("n_samples", n_samples), ("batch_size", batch_size), ("group_size", group_size)):
            if int(v) < 1:
                raise ValueError(f"MediatorSchedule: {name} must be >= 1, got {v}")
        self.n_samples, self.seed = int(n_samples), int(seed)
        self.batch_size, self.group_rank, self.group_size = int(batch_size), int(group_rank), int(group_size)
        self.global_batch_size = self.batch_size * self.group_size
        # the whole global batch, as "rank 0 of a group of 1" with the global batch size
        self._global = GroupShardedSampler(self.n_samples, self.global_batch_size, 0, 1, seed=self.seed)
        self._local = GroupShardedSampler(self.n_samples, self.batch_size, self.group_rank, self.group_size,
                                          seed=self.seed)
        self.steps_per_epoch = self._global.batches_per_epoch

    def batch(self, step: int) -> np.ndarray:
        """int64 ids (``batch_size``,) this rank reads at ``step`` (0-based, non-negative)."""
        if step < 0:
            raise ValueError(f"MediatorSchedule.batch: step must be >= 0, got {step}")
        return self._local.batch(step)

    def global_batch(self, step: int) -> np.ndarray:
        """int64 ids (``batch_size × group_size``,) read by the whole group at ``step``, in rank order."""
        if step < 0:
            raise ValueError(f"MediatorSchedule.global_batch: step must be >= 0, got {step}")
        return self._global.batch(step)

    def epoch(self, step: int) -> int:
        """The pass over the mediator set that ``step`` belongs to."""
        return step // self.steps_per_epoch

    def state_dict(self, step: int) -> dict:
        """What a checkpoint stores to resume at ``step``."""
        return {"step": int(step), "n_samples": self.n_samples, "seed": self.seed,
                "global_batch_size": self.global_batch_size}

    def check_state(self, state: dict) -> int:
        """Validate a checkpointed schedule against this one (``ValueError`` naming the key); returns the step."""
        for key in ("n_samples", "seed", "global_batch_size"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"checkpointed mediator schedule {key}={state.get(key)} differs from this run's "
                                 f"{key}={getattr(self, key)}")
        return int(state["step"])

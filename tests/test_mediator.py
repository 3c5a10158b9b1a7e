"""The mediator schedule: one global id order from the seed, shared by every group."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_taskology.data.mediator import MediatorSchedule


def _group(n, seed, batch, size, step):
    return np.concatenate([MediatorSchedule(n, seed, batch, r, size).batch(step) for r in range(size)])


def test_same_global_batch_same_ids_across_group_sizes():
    # global batch 8 as 8x1, 4x2, 2x4 and 1x8 ranks: the same ids at every step
    for step in range(0, 40, 3):
        ref = MediatorSchedule(50, 7, 8).global_batch(step)
        for batch, size in ((8, 1), (4, 2), (2, 4), (1, 8)):
            assert np.array_equal(_group(50, 7, batch, size, step), ref)


def test_epoch_is_a_permutation_and_tail_dropped():
    s = MediatorSchedule(50, 3, 4, 0, 3)  # global batch 12: 4 steps cover 48 ids, 2 dropped per epoch
    assert s.steps_per_epoch == 4
    ids = np.concatenate([s.global_batch(k) for k in range(4)])
    assert len(set(ids.tolist())) == 48 and ids.min() >= 0 and ids.max() < 50
    # the next epoch is a new permutation drawn from the same seed stream
    nxt = np.concatenate([s.global_batch(k) for k in range(4, 8)])
    assert not np.array_equal(ids, nxt) and len(set(nxt.tolist())) == 48
    assert s.epoch(3) == 0 and s.epoch(4) == 1


def test_ranks_disjoint_within_step_and_seed_matters():
    for step in range(6):
        parts = [set(MediatorSchedule(30, 1, 3, r, 4).batch(step).tolist()) for r in range(4)]
        assert sum(map(len, parts)) == len(set().union(*parts)) == 12
    a = MediatorSchedule(30, 1, 4).global_batch(0)
    b = MediatorSchedule(30, 2, 4).global_batch(0)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, MediatorSchedule(30, 1, 4).global_batch(0))  # reproducible


def test_order_is_the_seeded_permutation():
    # epoch e is numpy's default_rng(seed + e) permutation (DistributedSampler's seed + epoch scheme)
    perm = np.random.default_rng(5 + 1).permutation(20)
    s = MediatorSchedule(20, 5, 2, 1, 2)
    assert np.array_equal(s.global_batch(5 + 1), perm[4:8])  # step 6 = epoch 1, batch 1
    assert np.array_equal(s.batch(6), perm[6:8])


def test_errors_and_state():
    with pytest.raises(ValueError, match="batch_size"):
        MediatorSchedule(10, 0, 0)
    with pytest.raises(ValueError, match="group_rank"):
        MediatorSchedule(10, 0, 2, 2, 2)
    with pytest.raises(ValueError, match="smaller than one global batch"):
        MediatorSchedule(5, 0, 3, 0, 2)
    with pytest.raises(ValueError, match="step"):
        MediatorSchedule(10, 0, 2).batch(-1)
    s = MediatorSchedule(40, 9, 2, 0, 2)
    assert s.check_state(s.state_dict(17)) == 17
    with pytest.raises(ValueError, match="seed"):
        MediatorSchedule(40, 8, 2, 0, 2).check_state(s.state_dict(17))
    # the same global batch with another split resumes fine
    assert MediatorSchedule(40, 9, 4, 0, 1).check_state(s.state_dict(3)) == 3

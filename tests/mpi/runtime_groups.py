"""Per-rank program: two toy task groups train side by side; checks Horovod/torch.distributed group semantics.

Usage: python -m mpi4py tests/mpi/runtime_groups.py BACKEND OUT_DIR
Asserts (every rank): weights equal across a group after the initial broadcast and after steps, and different
between groups; a group's averaged gradient equals the mean of its own ranks' local gradients and differs from
the other group's; resuming from a checkpoint continues at the saved step with the saved optimizer state and ends
with the same weights as an uninterrupted run.
"""

import copy
import sys

import torch
from mpi4py import MPI

from hpc_taskology.config import config_from_dict
from hpc_taskology.tasks import make_task
from hpc_taskology.topology import Topology
from hpc_taskology.trainer import TaskTrainer

backend, out_dir = sys.argv[1], sys.argv[2]
world = MPI.COMM_WORLD
half = world.size // 2
model = {"kind": "mlp", "in_channels": 8, "out_channels": 3, "base_channels": 16, "depth": 2}
doc = {
    "job": {"name": "groups", "backend": backend, "steps": 8, "log_every": 2, "out_dir": out_dir, "seed": 3},
    "tasks": [
        {"name": "alpha", "kind": "toy", "ranks": half, "model": model, "optimizer": {"name": "adam", "lr": 1e-2},
         "data": {"batch_size": 8}},
        {"name": "beta", "kind": "toy", "ranks": world.size - half, "model": model,
         "optimizer": {"name": "adam", "lr": 1e-2}, "data": {"batch_size": 8}},
    ],
}
cfg = config_from_dict(doc)
topo = Topology.build(cfg, world)
task = make_task(topo.task_cfg, cfg, topo)
mine = topo.ranks_of(topo.task)


def flat_params(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def check_group_equal(vec, what):
    everyone = world.allgather(vec.numpy())
    for r in mine:
        assert (everyone[r] == everyone[mine[0]]).all(), f"{what}: rank {r} differs from its group leader"
    other = [r for r in range(world.size) if r not in mine]
    assert not (everyone[other[0]] == everyone[mine[0]]).all(), f"{what}: the two groups hold identical weights"


# 1. Initial broadcast: each rank initialised differently (seeded by world rank), the leader's weights win.
torch.manual_seed(1234 + world.rank)
before = flat_params(task.build_model())
assert not (torch.tensor(world.allgather(before.numpy())[0]) == before).all() or world.rank == 0
trainer = TaskTrainer(topo, task, steps=4)
check_group_equal(flat_params(trainer.model), "after broadcast")
trainer.start_step = 1  # the explicit step below is step 0

# 2. Gradient averaging inside the group only.
batch = task.dedicated_batch(trainer.sampler.batch(0))
local_model = copy.deepcopy(trainer.model)
loss, _ = task.supervised_loss(local_model, batch)
local = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(local_model.parameters()))])
trainer.optimizer.zero_grad()
loss, _ = task.supervised_loss(trainer.model, batch)
loss.backward()
trainer.optimizer.synchronize()
averaged = torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters()])
with trainer.optimizer.skip_synchronize():  # the same API on both backends
    trainer.optimizer.step()
all_local = world.allgather(local.numpy())
all_avg = world.allgather(averaged.numpy())
expected = torch.tensor(sum(all_local[r] for r in mine) / len(mine))
torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-7)
other = [r for r in range(world.size) if r not in mine]
assert not torch.allclose(averaged, torch.tensor(all_avg[other[0]])), "groups averaged to the same gradient"
world_mean = torch.tensor(sum(all_local) / world.size)
assert not torch.allclose(averaged, world_mean), "gradient was averaged over the world, not the group"

# 3. Training keeps the group's weights equal.
trainer.train()
check_group_equal(flat_params(trainer.model), "after 4 steps")
saved_opt = trainer.optimizer.state_dict()

# 4. Resume at the saved step with the saved optimizer state; same end weights as an uninterrupted run.
resumed = TaskTrainer(topo, task, resume=True, steps=8)
assert resumed.start_step == 4, resumed.start_step
for k, v in saved_opt["state"].items():
    for name, t in v.items():
        torch.testing.assert_close(resumed.optimizer.state_dict()["state"][k][name], t, rtol=0, atol=0)
resumed.train()
cfg.job.name = "groups_straight"
straight = TaskTrainer(topo, task, steps=8)
assert straight.start_step == 0
straight.train()
torch.testing.assert_close(flat_params(resumed.model), flat_params(straight.model), rtol=1e-6, atol=1e-7)
check_group_equal(flat_params(resumed.model), "after resume")

task.close()
topo.shutdown()
if world.rank == 0:
    print(f"runtime_groups OK backend={backend} ranks={world.size}")

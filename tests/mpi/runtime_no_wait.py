"""Per-rank program: a group that is slow never holds back another group (no step-level coupling between groups).

Usage: python -m mpi4py tests/mpi/runtime_no_wait.py BACKEND OUT_DIR
Group "slow" sleeps SLEEP_S in every step; group "fast" must finish its steps in well under the slow group's total
sleep, with either backend (Horovod's background coordination of the global process set must not couple them).
"""

import sys
import time

from mpi4py import MPI

from hpc_taskology.config import config_from_dict
from hpc_taskology.tasks import make_task
from hpc_taskology.topology import Topology
from hpc_taskology.trainer import TaskTrainer

STEPS, SLEEP_S = 30, 0.3
backend, out_dir = sys.argv[1], sys.argv[2]
world = MPI.COMM_WORLD
half = world.size // 2
model = {"kind": "mlp", "in_channels": 8, "out_channels": 3, "base_channels": 16, "depth": 2}
cfg = config_from_dict({
    "job": {"name": "no_wait", "backend": backend, "steps": STEPS, "log_every": 5, "out_dir": out_dir},
    "tasks": [{"name": "fast", "kind": "toy", "ranks": half, "model": model},
              {"name": "slow", "kind": "toy", "ranks": world.size - half, "model": model}],
})
topo = Topology.build(cfg, world)
task = make_task(topo.task_cfg, cfg, topo)
if topo.task == "slow":
    supervised = task.supervised_loss

    def sleepy(model, batch):
        time.sleep(SLEEP_S)
        return supervised(model, batch)

    task.supervised_loss = sleepy
trainer = TaskTrainer(topo, task)
world.Barrier()
t0 = time.perf_counter()
trainer.train()
elapsed = time.perf_counter() - t0
times = world.allgather((topo.task, elapsed))
fast = max(t for name, t in times if name == "fast")
slow = min(t for name, t in times if name == "slow")
assert slow >= STEPS * SLEEP_S, times
assert fast < 0.5 * STEPS * SLEEP_S, f"the fast group took {fast:.2f} s: it waited for the slow one ({times})"
topo.shutdown()
if world.rank == 0:
    print(f"runtime_no_wait OK backend={backend} ranks={world.size} fast={fast:.2f}s slow={slow:.2f}s")

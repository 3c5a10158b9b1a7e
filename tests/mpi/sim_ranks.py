"""Simulate over MPI ranks (run by tests/test_sim_mpi.py at 2 and 4 ranks, compared with a 1-rank run).

    python -m mpi4py tests/mpi/sim_ranks.py CONFIG.toml OUT.h5 SCENENET_DIR

Renders CONFIG with every rank of COMM_WORLD into OUT.h5 (plus the LiDAR group and the SceneNet layout in
SCENENET_DIR, as the config asks) and checks on every rank that no part file is left beside OUT.h5.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mpi4py import MPI

from hpc_taskology.sim.config import load_sim_config
from hpc_taskology.sim.simulate import simulate

comm = MPI.COMM_WORLD
config, out, scenenet = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
cfg = load_sim_config(config, {"scenenet_dir": scenenet})
got = simulate(cfg, out, comm=comm, progress=False)
assert got == out and out.is_file()
comm.Barrier()
leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
assert not leftovers, leftovers
if comm.rank == 0:
    print(f"sim_ranks OK on {comm.size} ranks", flush=True)

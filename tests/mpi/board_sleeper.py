"""Passive target at 2/4 ranks: producers that make no MPI call for seconds do not delay their readers.

The ``depth`` group publishes its entries, passes a barrier, then makes no MPI call for ``SLEEP_S``: group rank 0
sleeps (``time.sleep``), group rank 1 (at 4 ranks) busy-computes with numpy.  Meanwhile the ``normals`` ranks read
the entries (from both producers' shards) and the producers' state records for ``READ_S`` < ``SLEEP_S`` seconds.
Checks: the readers made reads, none took longer than ``MAX_READ_S``, and the readers finished before any producer
came back to MPI — so no read waited for the producers' CPUs.
"""

from __future__ import annotations

import time

import numpy as np

from board_common import WORLD, check, layout, log, pattern, pattern_ok
from hpc_taskology.board import PredictionBoard, shard_ids
from hpc_taskology.config import BoardConfig

SLEEP_S, READ_S, MAX_READ_S = 3.0, 1.5, 1.0
N, SHAPE = 16, (3, 8, 8)
lay = layout()
board = PredictionBoard(lay, N, {"depth": {"depth": SHAPE}}, BoardConfig(dtype="float16", max_staleness=10))
if lay.task == "depth":
    mine = shard_ids(N, lay.group_size, lay.group_rank)
    board.publish("depth.depth", mine, pattern(mine, 5, SHAPE), step=5)
WORLD.Barrier()
info = {}
if lay.task == "depth":
    t_off = time.time()
    if lay.group_rank == 0:
        time.sleep(SLEEP_S)  # no MPI call
        how = "sleep"
    else:
        a = np.random.default_rng(0).random((128, 128))
        while time.time() - t_off < SLEEP_S:  # busy computing, no MPI call
            a = np.tanh(a @ a.T / 128)
        how = "compute"
    info = {"task": "depth", "off": t_off, "back": time.time(), "how": how}
else:
    rng = np.random.default_rng(WORLD.rank)
    t0 = time.time()
    reads, worst, states = 0, 0.0, set()
    while time.time() - t0 < READ_S:
        ids = rng.choice(N, 4, replace=False)
        t = time.perf_counter()
        p = board.read("depth", "depth", ids, now_step=6)
        states.add(board.peer_state("depth").state)
        worst = max(worst, time.perf_counter() - t)
        check(p.usable.all() and (p.step == 5).all() and pattern_ok(p.values.numpy(), ids, p.step.numpy()).all(),
              f"read of sleeping producers' entries {ids.tolist()}: usable {p.usable.tolist()} step {p.step.tolist()}")
        reads += len(ids)
    info = {"task": "normals", "start": t0, "end": time.time(), "reads": reads, "worst": worst, "states": states}
infos = WORLD.allgather(info)
back = min(i["back"] for i in infos if i["task"] == "depth")
for i in infos:
    if i["task"] == "normals":
        check(i["reads"] >= 50, f"a reader made only {i['reads']} reads in {READ_S} s")
        check(i["worst"] < MAX_READ_S, f"a read took {i['worst']:.3f} s while the producers were off MPI")
        check(i["end"] < back, f"a reader finished {i['end'] - back:.3f} s after a producer came back to MPI")
        check(i["states"] == {"running"}, f"producer states seen: {i['states']}")
if WORLD.rank == 0:
    readers = [i for i in infos if i["task"] == "normals"]
    log(f"sleeper: producers off MPI for {SLEEP_S} s ({[i['how'] for i in infos if i['task'] == 'depth']}); readers "
        f"made {[r['reads'] for r in readers]} reads, slowest {max(r['worst'] for r in readers) * 1e3:.2f} ms, done "
        f"{back - max(r['end'] for r in readers):.2f} s before the producers came back")
board.close()

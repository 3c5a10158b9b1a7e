"""Synchronous mode, timeouts, failed and finished producers at 2/4 ranks.

A. ``max_staleness = 0``: the reader at step s waits until every entry has step >= s (the producer publishes one step
   every 0.1 s), and gets exactly those entries.
B. A running producer that stops publishing makes a synchronous read raise BoardTimeoutError after
   ``board.wait_timeout_s``, naming the task, output and ids; a producer marked ``failed`` makes it return at once.
C. Early exit: the producer group finishes its loop, marks itself finished and closes the board (a polite wait:
   Ibarrier + sleep, checked by its CPU time).  Readers keep reading for a while, see its state, get over-stale
   entries masked, and do not hang with ``max_staleness = 0``; then they close too.
"""

from __future__ import annotations

import time

import numpy as np

from board_common import WORLD, check, expect_raises, layout, log, pattern, pattern_ok, polite_barrier
from hpc_taskology.board import BoardTimeoutError, PredictionBoard, shard_ids
from hpc_taskology.config import BoardConfig

N, SHAPE, S = 8, (6,), 5
TIMEOUT_S = 1.0
lay = layout()
producer = lay.task == "depth"
board = PredictionBoard(lay, N, {"depth": {"pose": SHAPE}},
                        BoardConfig(dtype="float32", max_staleness=0, wait_timeout_s=TIMEOUT_S))
mine = shard_ids(N, lay.group_size, lay.group_rank)
all_ids = np.arange(N)

# ---- A. synchronous baseline -------------------------------------------------------------------------------------
WORLD.Barrier()
if producer:
    for s in range(S):
        time.sleep(0.1)
        board.publish("depth.pose", mine, pattern(mine, s, SHAPE), step=s)
else:
    for s in range(S):
        p = board.read("depth", "pose", all_ids, now_step=s)
        check(p.usable.all() and (p.step >= s).all(), f"sync read at step {s}: usable {p.usable.tolist()} "
                                                      f"steps {p.step.tolist()}")
        check(pattern_ok(p.values.numpy(), all_ids, p.step.numpy()).all(), f"sync read at step {s}: values")
    m = board.metrics()
    check(m["board/depth.pose/wait_time(ms)"] >= 50, f"the reader should have waited for the producer: {m}")
    check(m["board/depth.pose/coverage(frac)"] == 1.0, "sync reads must cover the whole batch")
polite_barrier()

# ---- B. timeout while the producer runs but does not publish; immediate return once it is marked failed -----------
if not producer:
    t = time.perf_counter()
    e = expect_raises(BoardTimeoutError, lambda: board.read("depth", "pose", [1, 3], now_step=100),
                      "'depth'", "'pose'", "[1, 3]", "board.wait_timeout_s", "running")
    waited = time.perf_counter() - t
    check(TIMEOUT_S <= waited < TIMEOUT_S + 3, f"timeout after {waited:.2f} s, expected about {TIMEOUT_S} s")
polite_barrier()
if producer:
    board.set_state("failed")
polite_barrier()
if not producer:
    t = time.perf_counter()
    p = board.read("depth", "pose", [1, 3], now_step=100)
    check(time.perf_counter() - t < 0.5 and not p.usable.any(), "a failed producer must not be waited for")
    check(board.peer_state("depth").state == "failed", "failed state visible")
polite_barrier()
if producer:
    board.set_state("running")
polite_barrier()

# ---- C. early exit -----------------------------------------------------------------------------------------------
if producer:
    for s in range(S, S + 3):
        board.publish("depth.pose", mine, pattern(mine, s, SHAPE), step=s)
    board.set_state("finished", S + 2)
    wall, cpu = time.perf_counter(), time.process_time()
    board.close()  # waits (politely) until the readers are done with its entries
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    info = {"close_wall": wall, "close_cpu": cpu}
else:
    t = time.perf_counter()
    while board.peer_state("depth").state != "finished":
        check(time.perf_counter() - t < 10, "the producer never reported finished")
        time.sleep(0.01)
    st = board.peer_state("depth")
    check(st.step == S + 2 and 0 <= time.time() - st.heartbeat_time < 10, f"finished producer state {st}")
    t = time.perf_counter()
    reads = 0
    while time.perf_counter() - t < 1.0:  # keep going after the producer left: its entries only age
        now = S + 2 + reads
        p = board.read("depth", "pose", all_ids, now_step=now, max_staleness=3)
        check(bool((p.step == S + 2).all()) and bool(p.usable.all()) == (now - (S + 2) <= 3),
              f"after the producer finished, at step {now}: usable {p.usable.tolist()}")
        reads += 1
    t = time.perf_counter()
    p = board.read("depth", "pose", all_ids, now_step=S + 10)  # max_staleness = 0: must not hang
    check(time.perf_counter() - t < 0.5 and not p.usable.any() and (p.values == 0).all(),
          "synchronous read of a finished producer must return at once, all unusable")
    info = {"reads": reads}
    board.close()
infos = WORLD.allgather(info)
for i in infos:
    if "close_wall" in i:
        check(i["close_wall"] > 0.5, f"the producer's close should have waited for the readers: {i}")
        check(i["close_cpu"] < 0.3 * i["close_wall"], f"the producer spun while waiting in close: {i}")
if WORLD.rank == 0:
    log("lifecycle:", infos)

"""Torn-read stress at 2/4 ranks: writers rewrite entries as fast as they can while readers read and verify.

Usage: board_stress.py [--shape 1x16x16] [--ids 64] [--reads 100000] [--batch 16] [--shared-writes] [--max-s 50]

Group ``writer`` (n // 2 ranks) publishes random ids with ``pattern(ids, step)`` and distinct steps per writer
(``count * G + group_rank``), so concurrent writers never write the same (step, payload).  Group ``reader`` reads random
batches until the readers together made ``--reads`` entry reads; every usable entry must equal ``pattern(ids,
entry step)`` exactly (an independent check of the board's seq/crc32 verification) and the board must count
0 torn reads.

``--shared-writes`` is the negative control: writers take LOCK_SHARED instead of LOCK_EXCLUSIVE (legal MPI, no
mutual exclusion), and the readers must *detect* torn reads (board's torn_reads > 0) while still never returning
a mixed entry as usable.  It stops at the first detection.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import hpc_taskology.board.board as board_module
from board_common import WORLD, check, layout, log, pattern, pattern_ok, polite_barrier
from hpc_taskology.board import PredictionBoard
from hpc_taskology.config import BoardConfig

ap = argparse.ArgumentParser()
ap.add_argument("--shape", default="1x16x16")
ap.add_argument("--ids", type=int, default=64)
ap.add_argument("--reads", type=int, default=100_000)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--shared-writes", action="store_true")
ap.add_argument("--max-s", type=float, default=50.0)
args = ap.parse_args()
shape = tuple(int(v) for v in args.shape.split("x"))
if args.shared_writes:
    board_module._WRITE_LOCK_EXCLUSIVE = False

lay = layout("writer", "reader")
G = lay.group_size
n_readers = len(lay.ranks_of("reader"))
board = PredictionBoard(lay, args.ids, {"writer": {"out": shape}},
                        BoardConfig(dtype="float32", max_staleness=1 << 40, verify_reads=True))
key = "board/writer.out"
WORLD.Barrier()
t0 = time.perf_counter()
result = {}
if lay.task == "writer":
    done = WORLD.Ibarrier()  # completes once every reader has finished
    rng = np.random.default_rng(lay.group_rank)
    count = 0
    while not done.Test():
        ids = rng.choice(args.ids, min(4, args.ids), replace=False)
        step = count * G + lay.group_rank
        board.publish("writer.out", ids, pattern(ids, step, shape), step)
        count += 1
    result = {"writes": 4 * count}
else:
    rng = np.random.default_rng(1000 + WORLD.rank)
    check(pattern_ok(pattern([3, 5], [7, 9], shape).numpy(), np.array([3, 5]), np.array([7, 9])).all()
          and not pattern_ok(pattern([3], [8], shape).numpy(), np.array([3]), np.array([7])).any(), "pattern check")
    quota = -(-args.reads // n_readers)
    n = usable = mismatched = 0
    while n < quota:
        ids = rng.choice(args.ids, min(args.batch, args.ids), replace=False)
        p = board.read("writer", "out", ids, now_step=0)
        u = p.usable.numpy()
        mismatched += int((~pattern_ok(p.values.numpy()[u], ids[u], p.step.numpy()[u])).sum())
        n += len(ids)
        usable += int(u.sum())
        if args.shared_writes and (board.metrics(reset=False)[f"{key}/torn_reads(count)"] > 0
                                   or time.perf_counter() - t0 > args.max_s):
            break  # detected (or gave up: the check below fails)
        check(time.perf_counter() - t0 < args.max_s, f"stress: only {n} reads after {args.max_s} s")
    m = board.metrics(reset=False)
    result = {"reads": n, "usable": usable, "mismatched": mismatched, "torn": m[f"{key}/torn_reads(count)"]}
    polite_barrier()
elapsed = time.perf_counter() - t0
results = WORLD.allgather(result)
writes = sum(r.get("writes", 0) for r in results)
reads = sum(r.get("reads", 0) for r in results)
torn = sum(r.get("torn", 0) for r in results)
mismatched = sum(r.get("mismatched", 0) for r in results)
usable = sum(r.get("usable", 0) for r in results)
if WORLD.rank == 0:
    log(f"stress shape={shape} ids={args.ids} shared_writes={args.shared_writes}: {reads} reads "
        f"({usable} usable), {writes} entry writes, torn_reads={torn}, mismatched={mismatched}, {elapsed:.1f} s "
        f"({reads / elapsed:.0f} reads/s)")
check(mismatched == 0, f"{mismatched} usable entries differ from the pattern of their step: a torn read slipped through")
if args.shared_writes:
    check(torn > 0, f"negative control: writers without exclusive locks, yet no torn read was detected in {reads} "
                    f"reads ({args.max_s} s)")
else:
    check(torn == 0, f"{torn} torn reads with exclusive-lock writers")
    check(reads >= args.reads, f"only {reads} reads, wanted {args.reads}")
    check(usable >= 0.9 * reads, f"only {usable} of {reads} reads were usable")
    check(writes > 0, "the writers wrote nothing")
board.close()

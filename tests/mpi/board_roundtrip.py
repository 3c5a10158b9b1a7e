"""Board round trip at 2/4 ranks: reads return exactly what was written, with the producer's step; masks for
unwritten, over-stale and non-finite entries; metrics; refresh sweep; error messages; capacity error.

Usage: board_roundtrip.py DTYPE   (float32 | float16 | bfloat16)

Ordering between writers and readers inside the test comes from world barriers (the board itself never needs them).
"""

from __future__ import annotations

import sys
import zlib

import numpy as np
import torch

from board_common import WORLD, check, expect_raises, layout, log, pattern
from hpc_taskology.board import BoardCapacityError, BoardError, PredictionBoard
from hpc_taskology.config import BoardConfig

DTYPE = sys.argv[1] if len(sys.argv) > 1 else "float32"
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[DTYPE]
ELEM = {"float32": 4, "float16": 2, "bfloat16": 2}[DTYPE]
N = 10
D_SHAPE, N_SHAPE = (1, 4, 6), (3, 4, 6)
lay = layout()
Gd = len(lay.ranks_of("depth"))
is_depth = lay.task == "depth"


def stored(x: torch.Tensor) -> torch.Tensor:
    """What the board must return for x: x rounded to the storage dtype (torch's rounding is the reference)."""
    return x.to(TORCH).to(torch.float32)


def crc_of(x: torch.Tensor) -> int:
    """crc32 of x's bytes in the storage dtype (independent of the board's own header crc)."""
    t = x.to(TORCH).contiguous()
    if TORCH == torch.bfloat16:
        t = t.view(torch.int16)
    return zlib.crc32(t.numpy().tobytes())


# ---- capacity and argument errors: raised on every rank, before any window exists (no hang) -------------------
big = (1, 64, 64)
cap = BoardConfig(dtype=DTYPE, max_window_bytes=1000)
e = expect_raises(BoardCapacityError, lambda: PredictionBoard(lay, 1000, {"depth": {"depth": big}}, cap),
                  "max_window_bytes", "more ranks", "lower mediator resolution")
ids_big = -(-1000 // Gd)  # largest shard: ceil(1000 / Gd) ids
entry = 32 + (64 * 64 * ELEM + 7) // 8 * 8 + 8  # header + padded payload + tail (codec layout)
check(f"{ids_big} ids x {entry} bytes/entry = " in str(e) and str(ids_big * entry) in str(e),
      f"capacity message lacks the figure {ids_big} x {entry} = {ids_big * entry}: {e}")
if DTYPE == "float32":
    check('board.dtype = "float16"' in str(e), f"capacity message lacks the float16 way out: {e}")
expect_raises(BoardError, lambda: PredictionBoard(lay, 10 + WORLD.rank, {"depth": {"depth": (1,)}}, BoardConfig()),
              "other arguments")
expect_raises(BoardError, lambda: PredictionBoard(lay, 10, {"segmentation": {"logits": (4, 2, 2)}}, BoardConfig()),
              "segmentation")
expect_raises(BoardError, lambda: PredictionBoard(lay, 10, {"depth": {"depth": (1, 0, 3)}}, BoardConfig()),
              "outputs['depth']['depth']")
# a bad argument on one rank only: every rank raises (none is left waiting in a collective allocation)
bad_shape = (1, 0, 3) if WORLD.rank == WORLD.size - 1 else (1, 2, 3)
expect_raises(BoardError, lambda: PredictionBoard(lay, 10, {"depth": {"depth": bad_shape}}, BoardConfig()),
              "outputs['depth']['depth']")
expect_raises(BoardError, lambda: PredictionBoard(lay, 0, {"depth": {"depth": (1,)}}, BoardConfig()), "n_samples")

# ---- the board ----------------------------------------------------------------------------------------------------
cfg = BoardConfig(dtype=DTYPE, max_staleness=5, refresh_every=4)
board = PredictionBoard(lay, N, {"depth": {"depth": D_SHAPE}, "normals": {"normals": N_SHAPE}}, cfg)
all_ids = np.arange(N)

# nothing written yet: everything unusable, step -1, zeros
p = board.read("depth", "depth", all_ids, now_step=0)
check(not p.usable.any() and (p.step == -1).all() and (p.age_steps == -1).all(), "unwritten entries must be unusable")
check((p.values == 0).all() and p.values.shape == (N, *D_SHAPE) and p.values.dtype == torch.float32, "unwritten values")
p0 = board.read("depth", "depth", np.zeros(0, np.int64), now_step=0)  # an empty batch is fine
check(p0.values.shape == (0, *D_SHAPE) and p0.usable.shape == (0,), f"empty read shapes {p0.values.shape}")
st = board.peer_state("depth")
check(st.state == "running" and st.step == -1, f"fresh peer state {st}")
board.metrics(reset=True)
WORLD.Barrier()

# depth writes the even ids at step 10, spread so that group ranks write into each other's shards
even = all_ids[all_ids % 2 == 0]
crcs = {}
if is_depth:
    mine = even[(even // 2) % Gd == lay.group_rank]
    x = pattern(mine, 10, D_SHAPE)
    if lay.group_rank == 0:  # a repeated id: the last prediction wins
        board.publish("depth.depth", np.r_[mine[:1], mine], torch.cat([torch.full_like(x[:1], 7.0), x]), step=10)
    else:
        board.publish("depth.depth", mine, x, step=10)
    crcs = {int(i): crc_of(x[k]) for k, i in enumerate(mine)}
    expect_raises(ValueError, lambda: board.publish("depth.depth", [0, 1], torch.zeros(2, 1, 4, 5), 10),
                  "expected shape", "(2, 1, 4, 6)")
    expect_raises(ValueError, lambda: board.publish("depth.depth", [N], torch.zeros(1, *D_SHAPE), 10), "[0, 10)")
    expect_raises(TypeError, lambda: board.publish("depth.depth", [0], torch.zeros(1, *D_SHAPE, dtype=torch.int32), 10),
                  "floating-point")
else:
    odd = all_ids[all_ids % 2 == 1]
    mine = odd[odd % len(lay.ranks_of("normals")) == lay.group_rank]
    board.publish("normals.normals", mine, pattern(mine, 3, N_SHAPE), step=3)
    expect_raises(BoardError, lambda: board.publish("depth.depth", [0], torch.zeros(1, *D_SHAPE), 10), "only the ranks")
expect_raises(BoardError, lambda: board.read("depth", "logits", [0], 0), "no board output 'depth.logits'")
expect_raises(ValueError, lambda: board.read("depth", "depth", np.array([0.5]), 0), "1-D integer")
crcs = {k: v for d in WORLD.allgather(crcs) for k, v in d.items()}
WORLD.Barrier()

# every rank (producers read their own output too) checks values, steps, ages, masks
ref = pattern(all_ids, 10, D_SHAPE)
p = board.read("depth", "depth", all_ids, now_step=12)
check(torch.equal(p.usable, torch.from_numpy(all_ids % 2 == 0)), f"usable mask {p.usable.tolist()}")
check(torch.equal(p.step, torch.where(p.usable, 10, -1)), f"steps {p.step.tolist()}")
check(torch.equal(p.age_steps, torch.where(p.usable, 2, -1)), f"age_steps {p.age_steps.tolist()}")
check(((p.age_s[p.usable] >= 0) & (p.age_s[p.usable] < 60)).all() and (p.age_s[~p.usable] == -1).all(), "age_s")
check(torch.equal(p.values[p.usable], stored(ref[p.usable])), "values differ from what was written")
check((p.values[~p.usable] == 0).all(), "unusable values must be zero")
for i in even:
    check(crc_of(p.values[i]) == crcs[int(i)], f"crc32 of id {i} differs from the writer's")
p16 = board.read("depth", "depth", all_ids, now_step=16)  # age 6 > max_staleness 5
check(not p16.usable.any() and torch.equal(p16.age_steps, torch.where(p.usable, 6, -1)), "over-stale mask")
p8 = board.read("depth", "depth", all_ids, now_step=8)  # the producer is ahead of the reader: age 0
check(torch.equal(p8.usable, p.usable) and (p8.age_steps[p.usable] == 0).all(), "producer ahead: age clamps at 0")
p100 = board.read("depth", "depth", all_ids, now_step=100, max_staleness=100)
check(torch.equal(p100.usable, p.usable) and (p100.age_steps[p.usable] == 90).all(), "max_staleness override")
m = board.metrics(reset=True)
k = "board/depth.depth"
ages = np.array([2] * 5 + [6] * 5 + [0] * 5 + [90] * 5)
expect = {f"{k}/reads(count)": 4, f"{k}/entries(count)": 40, f"{k}/usable(count)": 15, f"{k}/unwritten(count)": 20,
          f"{k}/over_stale(count)": 5, f"{k}/coverage(frac)": 15 / 40, f"{k}/torn_reads(count)": 0,
          f"{k}/staleness_max(steps)": 90.0, f"{k}/staleness_p50(steps)": float(np.median(ages)),
          f"{k}/staleness_hist(steps)/[0,1)": 5, f"{k}/staleness_hist(steps)/[2,5)": 5,
          f"{k}/staleness_hist(steps)/[5,10)": 5, f"{k}/staleness_hist(steps)/[50,100)": 5,
          f"{k}/staleness_hist(steps)/[1,2)": 0}
for name, v in expect.items():
    check(name in m and abs(m[name] - v) < 1e-9, f"metric {name} = {m.get(name)}, expected {v}")
check(sum(v for n_, v in m.items() if n_.startswith(f"{k}/staleness_hist(s)/")) == 20, "seconds histogram total")
check(board.metrics(reset=True) == {}, "metrics must be empty after a reset")

# the other direction: depth ranks read the normals group's odd ids
pn = board.read("normals", "normals", all_ids, now_step=3)
check(torch.equal(pn.usable, torch.from_numpy(all_ids % 2 == 1)), "normals usable mask")
check(torch.equal(pn.values[pn.usable], stored(pattern(all_ids, 3, N_SHAPE))[pn.usable]), "normals values")
WORLD.Barrier()

# refresh sweep: refresh_every = 4, so step 6 is not due and step 8 is; each rank predicts only its own ids
seen = []
if is_depth:
    fn = lambda ids: (seen.append(ids.clone()), pattern(ids.numpy(), 8, D_SHAPE))[1]
    check(board.refresh("depth.depth", fn, step=6, batch_size=2) == 0 and not seen, "refresh at step 6 is not due")
    n_ref = board.refresh("depth.depth", fn, step=8, batch_size=2)
    got = torch.cat(seen).numpy()
    check(n_ref == len(got) and (got % Gd == lay.group_rank).all() and max(len(s) for s in seen) <= 2,
          f"refresh predicted ids {got.tolist()} for group rank {lay.group_rank} of {Gd}")
else:
    n_ref = 0
    expect_raises(BoardError, lambda: board.refresh("depth.depth", lambda i: i, step=8, batch_size=2),
                  "not in the producing group")
check(WORLD.allreduce(n_ref) == N, "the refresh sweeps of the depth group must cover every id once")
WORLD.Barrier()
p = board.read("depth", "depth", all_ids, now_step=8)
check(p.usable.all() and (p.step == 8).all() and torch.equal(p.values, stored(pattern(all_ids, 8, D_SHAPE))),
      "after the refresh sweep every id holds the step-8 prediction")
WORLD.Barrier()

# storage precision: random values within half an ulp of the storage dtype (relative), equal to torch's rounding
gen = torch.Generator().manual_seed(1234)
x = torch.exp(torch.empty(N, *D_SHAPE).uniform_(-4, 4, generator=gen)) * (torch.randint(0, 2, (N, *D_SHAPE), generator=gen) * 2 - 1)
if is_depth:
    mine = all_ids[all_ids % Gd == lay.group_rank]
    board.publish("depth.depth", mine, x[torch.from_numpy(mine)], step=30)
WORLD.Barrier()
p = board.read("depth", "depth", all_ids, now_step=30)
half_ulp = {"float32": 0.0, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}[DTYPE]
rel = ((p.values - x).abs() / x.abs()).max().item()
check(p.usable.all() and torch.equal(p.values, stored(x)) and rel <= half_ulp, f"{DTYPE} round trip: max rel err {rel}")
WORLD.Barrier()

# a non-finite prediction is masked and counted; states are readable by everyone
if is_depth and lay.group_rank == 0:
    x = pattern([1], 9, D_SHAPE)
    x[0, 0, 1, 2] = float("nan")
    board.publish("depth.depth", [1], x, step=9)
    board.set_state("failed", 9)
WORLD.Barrier()
board.metrics(reset=True)
p = board.read("depth", "depth", [1, 2], now_step=9)
check(p.usable.tolist() == [False, True] and torch.isfinite(p.values).all(), "NaN entry must be masked, values finite")
check(board.metrics()[f"{k}/nonfinite(count)"] == 1, "non-finite entry must be counted")
st = board.peer_state("depth")
# group state: failed if any rank failed; step = the largest any rank reported (the others published step 30)
check(st.state == "failed" and st.step == (9 if Gd == 1 else 30), f"peer state after set_state('failed', 9): {st}")
check(board.peer_state("normals").state == "running", "normals still running")
expect_raises(ValueError, lambda: board.set_state("paused"), "running")
WORLD.Barrier()  # close() marks a rank finished: keep the state checks above before anyone closes
board.close()
board.close()  # idempotent
expect_raises(BoardError, lambda: board.read("depth", "depth", [0], 0), "closed")
log(f"board_roundtrip {DTYPE}: ok")

"""Prediction board: policy/codec/capacity maths under plain pytest, and real multi-rank runs (marker ``mpi``).

The MPI programs live in tests/mpi/board_*.py and run at 2 and 4 ranks through ``run_mpi`` (``python -m mpi4py``, so
a failing rank aborts the job instead of hanging it; every launch has a timeout).
"""

from __future__ import annotations

import json
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import run_mpi, run_mpi_cli
from hpc_taskology.board.codec import EntryCodec
from hpc_taskology.board.errors import BoardCapacityError
from hpc_taskology.board.layout import GroupLayout, owner_of, shard_ids, shard_len, slot_of
from hpc_taskology.board.policy import (SECOND_BUCKETS, STEP_BUCKETS, ReadStats, age_seconds, age_steps,
                                        bucket_labels, capacity_plan, check_capacity, histogram, usable_mask)
from hpc_taskology.config import BoardConfig, ConfigError, config_from_dict

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---- layout: sharding ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,g", [(1, 1), (10, 1), (10, 3), (7, 4), (3, 5), (64, 2)])
def test_sharding_covers_every_id_once(n, g):
    """Each id lives on exactly one group rank, at the slot given by slot_of, and shard sizes match range()."""
    held = np.concatenate([shard_ids(n, g, r) for r in range(g)])
    assert sorted(held.tolist()) == list(range(n))
    for r in range(g):
        ids = shard_ids(n, g, r)
        assert shard_len(n, g, r) == len(range(r, n, g)) == len(ids)
        assert (owner_of(ids, g) == r).all()
        assert (slot_of(ids, g) == np.arange(len(ids))).all()


def test_group_layout_blocks_and_errors():
    world = SimpleNamespace(size=5, rank=3)
    lay = GroupLayout(world, {"depth": 2, "normals": 3})
    assert lay.task == "normals" and lay.group_rank == 1 and lay.group_size == 3
    assert lay.ranks_of("depth") == [0, 1] and lay.ranks_of("normals") == [2, 3, 4] and lay.peers == ["depth"]
    with pytest.raises(KeyError, match="segmentation"):
        lay.ranks_of("segmentation")
    with pytest.raises(ValueError, match="depth=2 \\+ normals=2 = 4"):
        GroupLayout(world, {"depth": 2, "normals": 2})


# ---- codec: entry layout -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_codec_round_trip_matches_torch_rounding(dtype):
    shape = (3, 5, 7)  # odd sizes: payload not a multiple of 8 bytes
    x = torch.randn(4, *shape) * 10
    x[0, 0, 0, :4] = torch.tensor([float("inf"), float("-inf"), 1e-30, -0.0])
    c = EntryCodec(shape, dtype)
    e = c.encode(x, step=17, time_s=123.5, seqs=np.arange(1, 5))
    got = torch.from_numpy(c.decode(e))
    want = x.to(TORCH_DTYPES[dtype]).to(torch.float32)
    assert torch.equal(got, want)
    assert (e["step"] == 17).all() and (e["time"] == 123.5).all() and (e["seq"] == e["tail"]).all()
    elem = {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
    payload = 3 * 5 * 7 * elem
    assert c.payload_bytes == payload and c.nbytes == 32 + (payload + 7) // 8 * 8 + 8  # documented layout
    for i in range(4):
        raw = want[i].to(TORCH_DTYPES[dtype]).contiguous()
        raw = raw.view(torch.int16) if dtype == "bfloat16" else raw
        assert e["crc"][i] == zlib.crc32(raw.numpy().tobytes())
    assert c.intact(e).all()


def test_codec_detects_torn_and_corrupt_entries():
    c = EntryCodec((2, 8), "float32")
    e = c.encode(torch.arange(48.0).reshape(3, 2, 8), step=1, time_s=0.0, seqs=np.array([5, 6, 7]))
    torn_middle, torn_end = e.copy(), e.copy()
    torn_middle["payload"][1, 20] ^= 0xFF  # bytes of another write in the middle: only the crc notices
    torn_end["tail"][2] = 99  # the end of the record from another write: the seq pair differs
    assert c.intact(torn_middle).tolist() == [True, False, True]
    assert c.intact(torn_middle, verify_crc=False).tolist() == [True, True, True]
    assert c.intact(torn_end, verify_crc=False).tolist() == [True, True, False]
    empty = c.empty(2)
    assert c.intact(empty).all() and (empty["step"] == -1).all() and (c.decode(empty) == 0).all()
    with pytest.raises(ValueError, match="unknown 'float64'"):
        EntryCodec((1,), "float64")
    with pytest.raises(ValueError, match="sizes >= 1"):
        EntryCodec((1, 0), "float32")


# ---- policy: staleness, masks, histograms, metrics ----------------------------------------------------------------
def test_age_and_usable_mask():
    steps = np.array([-1, 0, 5, 10, 12])
    ages = age_steps(10, steps)
    assert ages.tolist() == [-1, 10, 5, 0, 0]  # never written; 10 old; 5 old; fresh; producer ahead clamps at 0
    assert usable_mask(ages, 5).tolist() == [False, False, True, True, True]
    assert usable_mask(ages, 0).tolist() == [False, False, False, True, True]
    intact = np.array([True, True, True, False, True])
    finite = np.array([True, True, True, True, False])
    assert usable_mask(ages, 100, intact, finite).tolist() == [False, True, True, False, False]
    secs = age_seconds(100.0, np.array([0.0, 90.0, 101.0]), np.array([-1, 3, 4]))
    assert secs.tolist() == [-1.0, 10.0, 0.0]


def test_histogram_matches_numpy():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 9000, 500), [0, 1, 2000, 4999, 5000, 10**6]])
    edges = np.array(STEP_BUCKETS + (np.inf,), dtype=float)
    want, _ = np.histogram(v, bins=edges)
    assert histogram(v, STEP_BUCKETS).tolist() == want.tolist()
    assert bucket_labels(SECOND_BUCKETS)[0] == "[0,0.01)" and bucket_labels(SECOND_BUCKETS)[-1] == "[600,inf)"
    assert len(bucket_labels(STEP_BUCKETS)) == len(STEP_BUCKETS)


def test_read_stats_metrics():
    st = ReadStats()
    assert st.metrics("board/x.y") == {}
    ages = np.array([-1, 0, 3, 7])
    st.add(ages, np.array([-1.0, 0.5, 2.0, 30.0]), usable_mask(ages, 5), 5, torn=0, nonfinite=0, read_s=0.002,
           wait_s=0.0)
    ages2 = np.array([1, 1])
    st.add(ages2, np.array([0.05, 0.05]), usable_mask(ages2, 5), 5, torn=0, nonfinite=0, read_s=0.004, wait_s=0.001)
    m = st.metrics("board/x.y")
    written = np.array([0, 3, 7, 1, 1])
    assert m["board/x.y/reads(count)"] == 2 and m["board/x.y/entries(count)"] == 6
    assert m["board/x.y/coverage(frac)"] == pytest.approx(4 / 6)
    assert m["board/x.y/unwritten(count)"] == 1 and m["board/x.y/over_stale(count)"] == 1
    assert m["board/x.y/staleness_p50(steps)"] == np.percentile(written, 50)
    assert m["board/x.y/staleness_max(steps)"] == 7 and m["board/x.y/staleness_max(s)"] == 30.0
    assert m["board/x.y/read_time(ms)"] == pytest.approx(3.0) and m["board/x.y/wait_time(ms)"] == pytest.approx(1.0)
    assert m["board/x.y/staleness_hist(steps)/[1,2)"] == 2 and m["board/x.y/staleness_hist(steps)/[5,10)"] == 1
    assert m["board/x.y/staleness_hist(s)/[10,60)"] == 1
    assert sum(v for k, v in m.items() if "hist(steps)" in k) == len(written)


# ---- capacity -----------------------------------------------------------------------------------------------------
def test_capacity_error_gives_figure_and_ways_out():
    c = EntryCodec((1, 256, 512), "float32")
    plan = capacity_plan(10_001, {"depth.depth": ("depth", c.shape, 2, c.payload_bytes, c.nbytes)}, "float32")
    entry = 32 + 256 * 512 * 4 + 8
    assert plan[0]["ids"] == 5001 and plan[0]["entry_bytes"] == entry and plan[0]["bytes"] == 5001 * entry
    check_capacity(plan, 5001 * entry)  # fits exactly: no error
    with pytest.raises(BoardCapacityError) as e:
        check_capacity(plan, 1 << 30)
    msg = str(e.value)
    assert f"5001 ids x {entry} bytes/entry" in msg and str(5001 * entry) in msg
    assert 'board.dtype = "float16"' in msg and f"{32 + 256 * 512 * 2 + 8} bytes" in msg
    assert "mediator.height" in msg and "more ranks in the producing group" in msg and "max_window_bytes" in msg


def test_board_config_new_fields():
    assert BoardConfig().verify_reads is True and BoardConfig().wait_timeout_s > 0
    with pytest.raises(ConfigError, match="board.wait_timeout_s"):
        BoardConfig(wait_timeout_s=0)
    base = {"job": {"name": "x"}, "tasks": [{"name": "depth", "ranks": 1, "model": {"kind": "unet"}}]}
    cfg = config_from_dict({**base, "board": {"verify_reads": False, "wait_timeout_s": 5}})
    assert cfg.board.verify_reads is False and cfg.board.wait_timeout_s == 5.0
    with pytest.raises(ConfigError, match="board.verify_reads: expected true or false"):
        config_from_dict({**base, "board": {"verify_reads": 1}})


# ---- multi-rank runs --------------------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("n,dtype", [(2, "float32"), (4, "float32"), (2, "float16"), (4, "bfloat16")])
def test_board_roundtrip(n, dtype):
    """Exact values and steps, masks, metrics, refresh sweep, errors and capacity error on every rank."""
    out = run_mpi(n, "board_roundtrip.py", dtype, timeout=240).stdout
    assert out.count(f"board_roundtrip {dtype}: ok") == n


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_board_stress_no_torn_reads(n):
    """>= 1e5 verified reads of small entries while writers rewrite them as fast as they can: 0 torn reads."""
    out = run_mpi(n, "board_stress.py", "--reads", "100000", timeout=240).stdout
    assert "torn_reads=0, mismatched=0" in out


@pytest.mark.mpi
def test_board_stress_large_entries_and_negative_control():
    """16 KiB entries on 2 ids, the setting where writers without exclusive locks do tear reads: with exclusive
    locks 0 torn reads; with shared-lock writers the checks must detect torn reads (so the checks can fail)."""
    out = run_mpi(2, "board_stress.py", "--shape", "1x64x64", "--ids", "2", "--batch", "2", "--reads", "10000",
                  timeout=240).stdout
    assert "torn_reads=0, mismatched=0" in out
    out = run_mpi(2, "board_stress.py", "--shape", "1x64x64", "--ids", "2", "--batch", "2", "--shared-writes",
                  "--max-s", "60", timeout=240).stdout
    assert "shared_writes=True" in out and "mismatched=0" in out and "torn_reads=0" not in out


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_board_producer_off_mpi_does_not_block_readers(n):
    out = run_mpi(n, "board_sleeper.py", timeout=240).stdout
    assert "before the producers came back" in out


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_board_sync_mode_timeout_and_early_exit(n):
    out = run_mpi(n, "board_lifecycle.py", timeout=240).stdout
    assert "lifecycle:" in out


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_board_close_does_not_hang_on_failed_rank(n):
    """A rank marked failed that never closes: the peers' close raises (naming it) and the job aborts, instead of
    waiting for the failed rank (which sleeps 60 s)."""
    t = time.monotonic()
    proc = run_mpi(n, "board_stuck.py", timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "are marked failed and did not enter close" in out, out[-3000:]
    assert "close returned" not in out and "woke up" not in out
    assert time.monotonic() - t < 50


@pytest.mark.mpi
def test_bench_exchange_writes_json(tmp_path):
    """The benchmark runs end to end at small sizes and writes the documented fields (figures are not asserted)."""
    path = tmp_path / "exchange.json"
    run_mpi_cli(2, "bench", "exchange", "--json", "--out", str(path), "--sizes", "4K,1M", "--min-time", "0.02",
                "--torn-reads", "400", "--step-ms", "100", "--shape", "3x24x32", timeout=240)
    doc = json.loads(path.read_text())
    assert [r["entry_bytes"] for r in doc["latency"]] == [4096, 1 << 20]
    for k in ("get_GBps", "put_GBps", "memcpy_GBps"):
        assert doc[k] > 0
    assert doc["get_over_memcpy"] == pytest.approx(doc["get_GBps"] / doc["memcpy_GBps"])
    assert doc["torn_reads"] == 0 and doc["reads_tried"] >= 400 and doc["writes_during_reads"] > 0
    b = doc["batch_read"]
    assert b["shape"] == [3, 24, 32] and b["step_ms"] == 100 and b["fraction_of_step"] == pytest.approx(b["read_ms_p50"] / 100)

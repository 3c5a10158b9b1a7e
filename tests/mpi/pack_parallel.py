"""Parallel packing over MPI ranks (run by tests/test_pack_parallel.py at 2 and 4 ranks).

    python -m mpi4py tests/mpi/pack_parallel.py OUT_DIR SHARED_DATA

1. packs 11 HoloLens frames (resized) on all ranks and checks the file equals the one a single process writes
   (every dataset, the stored chunk bytes, the attributes) and that no part file is left;
2. makes one sample fail on the last rank: every rank raises (the failing one its own error, the others a
   RuntimeError naming it), the existing output is byte-identical afterwards and no part file is left;
3. ranks passing different frame lists get a ValueError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
from mpi4py import MPI

from hpc_taskology.data.pack import hololens
from hpc_taskology.data.pack.common import FrameRange, SourceError
from hpc_taskology.data.parallel import pack_parallel, pack_plan, rank_slice

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
out_dir, shared = Path(sys.argv[1]), Path(sys.argv[2])
plan = hololens.plan(shared / "hololens_rgbd_000", FrameRange(3, 13)).resized(90, 135)
assert len(plan.frames) == 11

ref, par = out_dir / f"ref{size}.h5", out_dir / f"par{size}.h5"
if rank == 0:
    pack_plan(plan, ref, compression="lz4", comm=None, progress=False)
comm.Barrier()
got = pack_plan(plan, par, compression="lz4", comm=comm, progress=False)
assert got == par

if rank == 0:
    with h5py.File(ref, "r") as a, h5py.File(par, "r") as b:
        assert sorted(a) == sorted(b), (sorted(a), sorted(b))
        for k in a:
            x, y = a[k][:], b[k][:]
            assert x.dtype == y.dtype and x.shape == y.shape, k
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k
            assert a[k].chunks == b[k].chunks, k
        for i in range(11):  # chunks copied as stored: identical compressed bytes
            assert a["rgb"].id.read_direct_chunk((i, 0, 0, 0)) == b["rgb"].id.read_direct_chunk((i, 0, 0, 0))
        assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}
        assert b.attrs["num_samples"] == 11
    assert [p.name for p in out_dir.iterdir() if ".part" in p.name] == []
comm.Barrier()

# 2. failure on the last rank's slice
bad = rank_slice(11, size - 1, size).start
before = par.read_bytes()


def make(frame):
    if frame == bad:
        raise SourceError(f"frame {frame}: broken.png is truncated")
    return plan.make_sample(plan.frames[frame])


try:
    pack_parallel(list(range(11)), make, par, 90, 135, source="t", licence="t", comm=comm, progress=False)
    raise AssertionError("a failing sample must fail the run")
except SourceError as e:
    assert rank == size - 1 and "broken.png" in str(e)
except RuntimeError as e:
    assert rank != size - 1 and f"rank {size - 1}" in str(e) and "broken.png" in str(e), str(e)
comm.Barrier()
assert par.read_bytes() == before
assert [p.name for p in out_dir.iterdir() if ".part" in p.name or ".tmp" in p.name] == []

# 3. ranks disagreeing on the frame list
try:
    pack_parallel(list(range(5 + rank)), make, out_dir / "x.h5", 90, 135, source="t", licence="t", comm=comm)
    raise AssertionError("different frame lists must fail")
except ValueError as e:
    assert "different numbers of frames" in str(e)
assert not (out_dir / "x.h5").exists()

comm.Barrier()
if rank == 0:
    print(f"pack_parallel OK on {size} ranks")

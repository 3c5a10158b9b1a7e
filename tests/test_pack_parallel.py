"""Parallel packing: the MPI program tests/mpi/pack_parallel.py at 2 and 4 ranks, and `taskology pack` under MPI."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import run_mpi, run_mpi_cli

from hpc_taskology.data.pack import tum
from hpc_taskology.data.parallel import pack_plan, rank_slice


def test_rank_slice_covers_in_order():
    for n in (0, 1, 7, 11, 64):
        for size in (1, 2, 3, 4, 5):
            parts = [list(range(n))[rank_slice(n, r, size)] for r in range(size)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="rank"):
        rank_slice(4, 2, 2)


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_pack_parallel_equals_serial(n, tmp_path, shared_data):
    proc = run_mpi(n, "pack_parallel.py", str(tmp_path), str(shared_data), timeout=240)
    assert f"pack_parallel OK on {n} ranks" in proc.stdout


@pytest.mark.mpi
def test_cli_pack_under_mpi(tmp_path, shared_data):
    src = shared_data / "tum_rgbd_pairs"
    out = tmp_path / "tum_mpi.h5"
    proc = run_mpi_cli(2, "pack", "tum", str(src), "-o", str(out), "--no-progress", timeout=240)
    assert "wrote" in proc.stdout
    ref = pack_plan(tum.plan(src), tmp_path / "tum_ref.h5", progress=False)
    with h5py.File(out, "r") as a, h5py.File(ref, "r") as b:
        for k in b:
            assert np.array_equal(a[k][:], b[k][:], equal_nan=b[k].dtype.kind == "f"), k
    assert (tmp_path / "LICENSE-tum_mpi.txt").read_text().startswith("TUM RGB-D")

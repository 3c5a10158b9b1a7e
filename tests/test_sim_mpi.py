"""The same seed gives the same file whatever the number of ranks: a 1-rank run vs real 2- and 4-rank runs
(tests/mpi/sim_ranks.py) — every dataset (LiDAR group included), every root attribute, and the SceneNet layout's
files byte for byte."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import run_mpi, run_mpi_cli

from hpc_taskology.sim.config import load_sim_config
from hpc_taskology.sim.simulate import simulate

# 3 sequences x 3 frames: 9 frames do not split evenly, and sequences straddle ranks
CONFIG = """[sim]
kind = "street"
height = 24
width = 40
sequences = 3
frames = 3
seed = 11
objects = [6, 8]
hfov_deg = [80.0, 80.0]
max_depth = 50.0                 # the SceneNet layout stores ray lengths below 65.5 m
lidar = true
lidar_beams = 8
lidar_azimuths = 48
scenenet_photo_format = "png"
sensor_noise = 2.0
blur_sigma = 0.7
"""


def _datasets(f: h5py.File) -> dict:
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_files(a, b) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = _datasets(fa), _datasets(fb)
        assert sorted(da) == sorted(db)
        assert "lidar/points" in da and "object_motion" in da
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)
        assert dict(fa.attrs) == dict(fb.attrs)


def _assert_same_trees(a, b) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb and len(fa) > 9 * 3
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim1")
    (d / "c.toml").write_text(CONFIG)
    cfg = load_sim_config(d / "c.toml", {"scenenet_dir": str(d / "sn")})
    return d / "c.toml", simulate(cfg, d / "one.h5", progress=False), d / "sn"


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_same_seed_same_file_whatever_the_ranks(n, one_rank, tmp_path):
    config, ref, ref_sn = one_rank
    out = tmp_path / f"ranks{n}.h5"
    proc = run_mpi(n, "sim_ranks.py", str(config), str(out), str(tmp_path / "sn"), timeout=300)
    assert f"sim_ranks OK on {n} ranks" in proc.stdout
    _assert_same_files(ref, out)
    _assert_same_trees(ref_sn, tmp_path / "sn")


@pytest.mark.mpi
def test_cli_simulate_under_mpi(one_rank, tmp_path):
    config, ref, _ = one_rank
    out = tmp_path / "cli.h5"
    proc = run_mpi_cli(2, "simulate", str(config), "-o", str(out), "--scenenet-dir", str(tmp_path / "sn"),
                       "--no-progress", timeout=300)
    assert "wrote" in proc.stdout and "2 rank(s)" in proc.stdout
    _assert_same_files(ref, out)

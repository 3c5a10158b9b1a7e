"""KITTI stereo packer on the real kitti2012_stereo_pair, and on KITTI 2012's native layout with a calib file."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image

from hpc_taskology.data.pack import kitti_stereo
from hpc_taskology.data.parallel import pack_plan


@pytest.fixture(scope="module")
def example(shared_data) -> Path:
    return shared_data / "kitti2012_stereo_pair" / "Paddlestereo" / "Example"


def test_real_pair_with_assumed_calibration(example, tmp_path):
    out = tmp_path / "st.h5"
    pack_plan(kitti_stereo.plan(example.parent.parent), out, progress=False)
    disp = np.asarray(Image.open(example / "000001_10_disp.png")) / 256.0
    with h5py.File(out, "r") as f:
        assert f["rgb"].shape == (1, 370, 1226, 3)
        assert np.array_equal(f["rgb"][0], np.asarray(Image.open(example / "000001_10_l.png")))
        assert np.array_equal(f["rgb_right"][0], np.asarray(Image.open(example / "000001_10_r.png")))
        np.testing.assert_array_equal(f["disparity"][0], disp.astype(np.float32))
        ok = disp > 0
        assert np.array_equal(f["valid"][0], ok)
        assert 0.2 < ok.mean() < 0.3  # SOURCE.txt: about 24 % of the pixels have ground truth
        np.testing.assert_allclose(f["depth"][0][ok], 721.5377 * 0.54 / disp[ok], rtol=1e-6)
        assert f["baseline"][0] == 0.54
        assert f.attrs["intrinsics_assumed"] and f.attrs["baseline_assumed"]
        np.testing.assert_allclose(f["K"][0], [[721.5377, 0, 612.5], [0, 721.5377, 184.5], [0, 0, 1]])
        assert f["frame_id"][0] == 1 and f["sequence"][0].decode() == "000001_10"
        assert not f["pose_valid"][0]
        assert "NonCommercial" in f.attrs["licence"]


def test_options_change_depth(example):
    plan = kitti_stereo.plan(example, focal=700.0, baseline=0.5)
    s = plan.make_sample(plan.frames[0])
    ok = s["disparity"] > 0
    np.testing.assert_allclose(s["depth"][ok], 350.0 / s["disparity"][ok], rtol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        kitti_stereo.plan(example, baseline=0.0)


def test_native_2012_layout_uses_calib(example, tmp_path):
    root = tmp_path / "training"
    for sub in ("colored_0", "colored_1", "disp_occ", "calib"):
        (root / sub).mkdir(parents=True)
    shutil.copy(example / "000001_10_l.png", root / "colored_0" / "000001_10.png")
    shutil.copy(example / "000001_10_r.png", root / "colored_1" / "000001_10.png")
    shutil.copy(example / "000001_10_disp.png", root / "disp_occ" / "000001_10.png")
    P2 = [707.0, 0, 604.0, 45.0, 0, 707.0, 180.5, 0.2, 0, 0, 1, 0.003]
    P3 = [707.0, 0, 604.0, -337.0, 0, 707.0, 180.5, 2.2, 0, 0, 1, 0.003]
    (root / "calib" / "000001.txt").write_text(
        "P0: " + " ".join(["1"] * 12) + "\nP2: " + " ".join(map(str, P2)) + "\nP3: " + " ".join(map(str, P3)) + "\n")
    plan = kitti_stereo.plan(tmp_path)
    assert not plan.attrs["intrinsics_assumed"]
    fr = plan.frames[0]
    np.testing.assert_allclose(fr.K, [[707.0, 0, 604.0], [0, 707.0, 180.5], [0, 0, 1]])
    assert abs(fr.baseline - (45.0 + 337.0) / 707.0) < 1e-12


def test_missing_right_image_named(example, tmp_path):
    shutil.copy(example / "000001_10_l.png", tmp_path / "000001_10_l.png")
    shutil.copy(example / "000001_10_disp.png", tmp_path / "000001_10_disp.png")
    with pytest.raises(FileNotFoundError, match="000001_10_r.png"):
        kitti_stereo.plan(tmp_path)

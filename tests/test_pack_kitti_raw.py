"""KITTI raw packer on the real kitti_raw_tiny drive: contents equal the native files, poses as pykitti, bad input."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hpc_taskology.data.pack import kitti_raw
from hpc_taskology.data.pack.common import FrameRange, SourceError
from hpc_taskology.data.parallel import pack_plan

DATE = "2011_09_26"
DRIVE = "2011_09_26_drive_0023_sync"


@pytest.fixture(scope="module")
def root(shared_data) -> Path:
    return shared_data / "kitti_raw_tiny" / "KITTI_tiny"


@pytest.fixture(scope="module")
def packed(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kitti") / "kitti.h5"
    pack_plan(kitti_raw.plan(root), out, compression="lz4", progress=False)
    return out


def _calib(path: Path) -> dict:
    """Independent parse: 'key: numbers' lines, numeric ones only."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        try:
            out[key] = np.array(rest.split(), dtype=float)
        except ValueError:
            pass
    return out


def _expected_poses(root: Path, frames: range) -> np.ndarray:
    """cam2-to-world written from the devkit's definitions (scipy Euler angles, Mercator), not from the packer."""
    c2c, v2c, i2v = (_calib(root / DATE / f) for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt",
                                                        "calib_imu_to_velo.txt"))

    def rigid(c):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = c["R"].reshape(3, 3), c["T"]
        return T

    P2 = c2c["P_rect_02"].reshape(3, 4)
    R_rect = np.eye(4)
    R_rect[:3, :3] = c2c["R_rect_00"].reshape(3, 3)
    T2 = np.eye(4)
    T2[0, 3] = P2[0, 3] / P2[0, 0]
    imu_to_cam2 = T2 @ R_rect @ rigid(v2c) @ rigid(i2v)
    oxts = [np.loadtxt(root / DATE / DRIVE / "oxts" / "data" / f"{i:010d}.txt") for i in range(7)]
    lat0 = oxts[0][0]
    s = np.cos(np.radians(lat0))

    def merc(o):
        r = 6378137.0
        return np.array([s * r * np.radians(o[1]), s * r * np.log(np.tan(np.radians(90 + o[0]) / 2)), o[2]])

    out = []
    for i in frames:
        o = oxts[i]
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("xyz", o[3:6]).as_matrix()  # extrinsic x, y, z = Rz Ry Rx
        T[:3, 3] = merc(o) - merc(oxts[0])
        out.append(T @ np.linalg.inv(imu_to_cam2))
    return np.array(out)


def test_images_depth_equal_native(packed, root):
    drive = root / DATE / DRIVE
    with h5py.File(packed, "r") as f:
        assert f["rgb"].shape == (7, 375, 1242, 3)
        for i in range(7):
            rgb = np.asarray(Image.open(drive / "image_02" / "data" / f"{i:010d}.png"))
            right = np.asarray(Image.open(drive / "image_03" / "data" / f"{i:010d}.png"))
            npz = np.load(drive / "proj_depth" / "velodyne" / "image_02" / f"{i:010d}.npz")["velodyne_depth"]
            assert np.array_equal(f["rgb"][i], rgb)
            assert np.array_equal(f["rgb_right"][i], right)
            assert np.array_equal(f["depth"][i], npz)
            assert np.array_equal(f["valid"][i], npz > 0)
        assert list(f["frame_id"][:]) == list(range(7))
        assert {s.decode() for s in f["sequence"][:]} == {DRIVE}


def test_intrinsics_baseline_timestamps(packed, root):
    P2 = _calib(root / DATE / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4)
    lines = (root / DATE / DRIVE / "image_02" / "timestamps.txt").read_text().split("\n")[:7]
    ts = [dt.datetime.strptime(s[:26], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()
          for s in lines]
    with h5py.File(packed, "r") as f:
        np.testing.assert_array_equal(f["K"][3], P2[:, :3])
        # SOURCE.txt: the P_rect baseline is 0.5327 m
        assert abs(f["baseline"][0] - 0.5327) < 5e-4
        np.testing.assert_allclose(f["timestamp"][:], ts, atol=1e-5)
        assert "Attribution-NonCommercial-ShareAlike" in f.attrs["licence"]


def test_poses_follow_oxts_chain(packed, root):
    expected = _expected_poses(root, range(7))
    with h5py.File(packed, "r") as f:
        np.testing.assert_allclose(f["cam_to_world"][:], expected, atol=1e-9)
        assert f["pose_valid"][:].all()
        rel = np.linalg.inv(f["cam_to_world"][1]) @ f["cam_to_world"][0]
    # SOURCE.txt: frames 0 -> 1 move about 0.98 m, forward (camera z)
    assert abs(np.linalg.norm(rel[:3, 3]) - 0.98) < 0.02
    assert rel[2, 3] < -0.95


def test_frame_range_selects_ids(root):
    plan = kitti_raw.plan(root, FrameRange.parse("2:4"))
    assert [f.frame_id for f in plan.frames] == [2, 3, 4]
    # poses keep the drive's world origin (first OXTS packet), whatever the selection
    np.testing.assert_allclose(plan.frames[0].cam_to_world, _expected_poses(root, range(2, 3))[0], atol=1e-9)


def _mini_tree(root: Path, dst: Path, frames=(0, 1)) -> Path:
    """A two-frame copy of the drive (calib, images, OXTS, depth, timestamps)."""
    (dst / DATE).mkdir(parents=True)
    for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        shutil.copy(root / DATE / f, dst / DATE / f)
    src, out = root / DATE / DRIVE, dst / DATE / DRIVE
    for sub, ext in (("image_02/data", "png"), ("image_03/data", "png"), ("oxts/data", "txt"),
                     ("proj_depth/velodyne/image_02", "npz")):
        (out / sub).mkdir(parents=True)
        for i in frames:
            shutil.copy(src / sub / f"{i:010d}.{ext}", out / sub / f"{i:010d}.{ext}")
    shutil.copy(src / "image_02" / "timestamps.txt", out / "image_02" / "timestamps.txt")
    return dst


def test_missing_calibration_file_named(root, tmp_path):
    tree = _mini_tree(root, tmp_path / "src")
    (tree / DATE / "calib_imu_to_velo.txt").unlink()
    with pytest.raises(FileNotFoundError, match="calib_imu_to_velo.txt"):
        kitti_raw.plan(tree)


def test_missing_calibration_key_named(root, tmp_path):
    tree = _mini_tree(root, tmp_path / "src")
    c2c = tree / DATE / "calib_cam_to_cam.txt"
    c2c.write_text("\n".join(ln for ln in c2c.read_text().splitlines() if not ln.startswith("P_rect_02")))
    with pytest.raises(SourceError, match=r"calib_cam_to_cam.txt.*P_rect_02"):
        kitti_raw.plan(tree)


def test_nan_oxts_named(root, tmp_path):
    tree = _mini_tree(root, tmp_path / "src")
    p = tree / DATE / DRIVE / "oxts" / "data" / "0000000001.txt"
    v = p.read_text().split()
    v[0] = "nan"
    p.write_text(" ".join(v))
    with pytest.raises(SourceError, match="0000000001.txt"):
        kitti_raw.plan(tree)


def test_truncated_image_keeps_existing_output(root, tmp_path):
    tree = _mini_tree(root, tmp_path / "src")
    out = tmp_path / "out.h5"
    pack_plan(kitti_raw.plan(tree), out, progress=False)
    before = out.read_bytes()
    img = tree / DATE / DRIVE / "image_02" / "data" / "0000000001.png"
    img.write_bytes(img.read_bytes()[:20000])
    with pytest.raises(SourceError, match="0000000001.png"):
        pack_plan(kitti_raw.plan(tree), out, progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "src"]  # no temporary file left

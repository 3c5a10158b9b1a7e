"""ScanNet packer on a small exported-frames tree written here (no ScanNet sample can be shipped)."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image

from hpc_taskology.data.pack import scannet
from hpc_taskology.data.pack.common import SourceError
from hpc_taskology.data.parallel import pack_plan

CW, CH, DW, DH = 64, 48, 32, 24  # colour 2x the depth resolution, as ScanNet's 1296x968 -> 640x480 (about 2x)
K_COLOR = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])


def _pose(k: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = [0.1 * k, 0.0, 0.02 * k]
    return T


def _write_scene(root: Path, n: int = 4, bad_pose: int | None = 2) -> Path:
    scene = root / "scene0000_00"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        rgb = rng.integers(0, 255, (CH, CW, 3), dtype=np.uint8)
        if k == 0:  # a 2x2 white block centred on the projection of a known point (used below)
            rgb[:] = 0
            rgb[10:12, 20:22] = 255
        Image.fromarray(rgb).save(scene / "color" / f"{k}.jpg", quality=95)
        Image.fromarray(rng.integers(0, 5000, (DH, DW)).astype(np.uint16)).save(scene / "depth" / f"{k}.png")
        pose = _pose(k) if k != bad_pose else np.full((4, 4), -np.inf)
        np.savetxt(scene / "pose" / f"{k}.txt", pose)
    K4 = np.eye(4)
    K4[:3, :3] = K_COLOR
    np.savetxt(scene / "intrinsic" / "intrinsic_color.txt", K4)
    K4d = np.eye(4)
    K4d[:3, :3] = [[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]
    np.savetxt(scene / "intrinsic" / "intrinsic_depth.txt", K4d)
    return scene


def test_pack_scene_skips_bad_pose(tmp_path):
    scene = _write_scene(tmp_path / "src")
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        plan = scannet.plan(tmp_path / "src")
    out = tmp_path / "s.h5"
    pack_plan(plan, out, progress=False)
    with h5py.File(out, "r") as f:
        assert list(f["frame_id"][:]) == [0, 1, 3]
        assert f.attrs["num_skipped"] == 1
        assert f["rgb"].shape == (3, DH, DW, 3)
        for i, k in enumerate([0, 1, 3]):
            colour = Image.open(scene / "color" / f"{k}.jpg").convert("RGB")
            assert np.array_equal(f["rgb"][i], np.asarray(colour.resize((DW, DH), Image.Resampling.BILINEAR)))
            mm = np.asarray(Image.open(scene / "depth" / f"{k}.png"))
            np.testing.assert_allclose(f["depth"][i], mm / 1000.0, rtol=1e-7, atol=0)
            assert np.array_equal(f["valid"][i], mm > 0)
            np.testing.assert_array_equal(f["cam_to_world"][i], np.loadtxt(scene / "pose" / f"{k}.txt"))
        assert {s.decode() for s in f["sequence"][:]} == {"scene0000_00"}
        K = f["K"][0]
    # the resized colour's K still projects a 3-D point onto its image: the white block (centre x=20.5, y=10.5 in
    # the colour image, the projection of X below under K_COLOR) has its centroid at K @ X in the packed image
    X = np.linalg.inv(K_COLOR) @ np.array([20.5, 10.5, 1.0]) * 2.0
    p = K @ X
    with h5py.File(out, "r") as f:
        g = f["rgb"][0].astype(float).mean(-1)
    ys, xs = np.mgrid[:DH, :DW]
    np.testing.assert_allclose([(g * xs).sum() / g.sum(), (g * ys).sum() / g.sum()], p[:2] / p[2], atol=0.05)


def test_missing_intrinsics_named(tmp_path):
    scene = _write_scene(tmp_path / "src", bad_pose=None)
    (scene / "intrinsic" / "intrinsic_color.txt").unlink()
    with pytest.raises(FileNotFoundError, match="intrinsic_color.txt"):
        scannet.plan(scene)


def test_eight_bit_depth_named(tmp_path):
    scene = _write_scene(tmp_path / "src", bad_pose=None)
    Image.fromarray(np.zeros((DH, DW), np.uint8)).save(scene / "depth" / "1.png")
    plan = scannet.plan(scene)
    with pytest.raises(SourceError, match=r"depth/1.png.*16-bit"):
        pack_plan(plan, tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_truncated_jpeg_named(tmp_path):
    scene = _write_scene(tmp_path / "src", bad_pose=None)
    p = scene / "color" / "3.jpg"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(SourceError, match=r"color/3.jpg"):
        pack_plan(scannet.plan(scene), tmp_path / "x.h5", progress=False)


def test_all_poses_bad(tmp_path):
    scene = _write_scene(tmp_path / "src", n=1, bad_pose=0)
    with pytest.warns(UserWarning), pytest.raises(SourceError, match="non-finite pose"):
        scannet.plan(scene)

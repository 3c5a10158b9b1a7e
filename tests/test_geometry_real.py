"""Geometry end to end on real data: pack → PackedDataset → the project's warp (losses.warp).

Warping frame t onto frame t+k with t's depth, K and the relative pose from the packed camera-to-world poses must
explain the image change: the grey-level error after the warp is far below the error without warp, close to the
figures in the data's SOURCE.txt, and the inverse pose convention does worse.
"""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from hpc_taskology.data.loader import PackedDataset
from hpc_taskology.data.pack import hololens, kitti_raw
from hpc_taskology.data.pack.common import FrameRange
from hpc_taskology.data.parallel import pack_plan
from hpc_taskology.losses.warp import bilinear_sample, warp_coords

GREY = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]


def _errors(ds: PackedDataset, i: int, j: int, inverse: bool = False) -> tuple[float, float, int]:
    """(mean |grey_i - grey_j(warped)|, mean |grey_i - grey_j| on the same pixels, pixel count), grey in 0..255."""
    a, b = ds[i], ds[j]
    rel = torch.linalg.inv(b["cam_to_world"]) @ a["cam_to_world"]  # camera i -> camera j: X_j = R X_i + T
    if inverse:
        rel = torch.linalg.inv(rel)
    rot = torch.from_numpy(Rotation.from_matrix(rel[:3, :3].numpy()).as_rotvec())[None]
    trans = rel[:3, 3][None]
    depth = a["depth"][None].double()
    x, y, _, valid = warp_coords(depth, a["K"][None].double(), rot, trans)
    valid = valid & a["valid"][None]
    g1 = (a["rgb"].double() * GREY).sum(0, keepdim=True)[None] * 255
    g2 = (b["rgb"].double() * GREY).sum(0, keepdim=True)[None] * 255
    warped = bilinear_sample(g2, x, y)
    m = valid.double()
    n = m.sum()
    return float(((g1 - warped).abs() * m).sum() / n), float(((g1 - g2).abs() * m).sum() / n), int(n)


@pytest.fixture(scope="module")
def kitti(shared_data, tmp_path_factory) -> PackedDataset:
    out = tmp_path_factory.mktemp("geo") / "kitti.h5"
    pack_plan(kitti_raw.plan(shared_data / "kitti_raw_tiny", FrameRange(0, 2), stereo=False), out, progress=False)
    return PackedDataset(out)


@pytest.fixture(scope="module")
def holo(shared_data, tmp_path_factory) -> PackedDataset:
    out = tmp_path_factory.mktemp("geo") / "holo.h5"
    pack_plan(hololens.plan(shared_data / "hololens_rgbd_000", FrameRange(3, 8)), out, progress=False)
    return PackedDataset(out)


def test_kitti_oxts_ego_motion_explains_next_frame(kitti):
    warped, none, n = _errors(kitti, 0, 1)
    # SOURCE.txt (numpy warp, grey mean abs error): 15.3 vs 43.2 for frames 0 -> 1
    assert n > 5000
    assert warped < 0.5 * none
    assert warped < 15.3 * 1.3 and none > 43.2 * 0.7
    assert _errors(kitti, 0, 1, inverse=True)[0] > warped * 1.3
    w2, n2, _ = _errors(kitti, 0, 2)  # 0 -> 2: about 2 m of motion (SOURCE: 22.4 vs 64.3)
    assert w2 < 0.5 * n2


def test_hololens_poses_explain_later_frame(holo):
    warped, none, n = _errors(holo, 0, 5)  # frame 00003 -> 00008
    # SOURCE.txt: 4.6 vs 26.5 unwarped; the inverse pose convention gives 35.2
    assert n > 50000
    assert warped < 0.5 * none
    assert warped < 4.6 * 1.3 and none > 26.5 * 0.7
    inv = _errors(holo, 0, 5, inverse=True)[0]
    assert inv > 2 * warped


def test_resized_loader_keeps_geometry(holo):
    """The same warp through a resized, cropped view of the file (K updated by the loader) still works."""
    ds = PackedDataset(holo.path, size=(120, 160), mode="resize_crop")
    warped, none, _ = _errors(ds, 0, 5)
    assert warped < 0.5 * none

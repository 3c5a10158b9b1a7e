"""TUM RGB-D packer on the real tum_rgbd_pairs frames, association, ground-truth interpolation, camera choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hpc_taskology.data.pack import tum
from hpc_taskology.data.pack.common import SourceError
from hpc_taskology.data.parallel import pack_plan

# SOURCE.txt: the pairs and the published intrinsics
PAIRS = [("1305031102.175304", "1305031102.160407", "fr1"), ("1305031102.275326", "1305031102.262886", "fr1"),
         ("1341847980.722988", "1341847980.723020", "fr3"), ("1341847982.998783", "1341847982.998830", "fr3")]
K_PUBLISHED = {"fr1": (517.3, 516.5, 318.6, 255.3), "fr3": (535.4, 539.2, 320.1, 247.6)}


@pytest.fixture(scope="module")
def src(shared_data) -> Path:
    return shared_data / "tum_rgbd_pairs"


@pytest.fixture(scope="module")
def packed(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tum") / "tum.h5"
    pack_plan(tum.plan(src), out, progress=False)
    return out


def test_contents_equal_native(packed, src):
    with h5py.File(packed, "r") as f:
        assert f["rgb"].shape == (4, 480, 640, 3)
        seqs = [s.decode() for s in f["sequence"][:]]
        assert len(set(seqs[:2])) == 1 and len(set(seqs[2:])) == 1 and seqs[0] != seqs[2]  # two sequences
        assert list(f["frame_id"][:]) == [0, 1, 0, 1]
        for i, (rgb_ts, depth_ts, cam) in enumerate(PAIRS):
            assert np.array_equal(f["rgb"][i], np.asarray(Image.open(src / "rgb" / f"{rgb_ts}.png")))
            raw = np.asarray(Image.open(src / "depth" / f"{depth_ts}.png"))
            np.testing.assert_allclose(f["depth"][i], raw / 5000.0, rtol=1e-7, atol=0)
            assert np.array_equal(f["valid"][i], raw > 0)
            fx, fy, cx, cy = K_PUBLISHED[cam]
            np.testing.assert_array_equal(f["K"][i], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
            assert f["timestamp"][i] == float(rgb_ts)
            assert cam in seqs[i]
        assert not f["pose_valid"][:].any() and np.isnan(f["cam_to_world"][:]).all()  # no groundtruth.txt
        assert "CC BY 4.0" in f.attrs["licence"]


def _associate_reference(a: list[float], b: list[float], max_difference=0.02):
    """TUM associate.py's algorithm, in its plain O(n^2) form."""
    cands = sorted((abs(x - y), x, y) for x in a for y in b if abs(x - y) < max_difference)
    fa, fb, out = set(a), set(b), []
    for _, x, y in cands:
        if x in fa and y in fb:
            fa.remove(x)
            fb.remove(y)
            out.append((x, y))
    return sorted(out)


def test_associate_matches_reference():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 3, 90))
    b = np.sort(rng.uniform(0, 3, 100))
    got = [(a[i], b[j]) for i, j in tum.associate(a, b)]
    assert got == _associate_reference(list(a), list(b))
    assert len(got) > 30


def _seq(src: Path, dst: Path, gt_lines: list[str] | None) -> Path:
    for sub in ("rgb", "depth"):
        (dst / sub).mkdir(parents=True)
    for rgb_ts, depth_ts, _ in PAIRS[:2]:
        shutil.copy(src / "rgb" / f"{rgb_ts}.png", dst / "rgb" / f"{rgb_ts}.png")
        shutil.copy(src / "depth" / f"{depth_ts}.png", dst / "depth" / f"{depth_ts}.png")
    if gt_lines is not None:
        (dst / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(gt_lines) + "\n")
    return dst


def test_groundtruth_interpolated(src, tmp_path):
    t = float(PAIRS[0][0])
    q0 = Rotation.from_rotvec([0, 0, 0]).as_quat()
    q1 = Rotation.from_rotvec([0, 0.2, 0]).as_quat()
    gt = [f"{t - 0.01:.6f} 0 0 0 " + " ".join(map(str, q0)),
          f"{t + 0.03:.6f} 0.4 0 0 " + " ".join(map(str, q1))]
    folder = _seq(src, tmp_path / "rgbd_dataset_freiburg1_xyz", gt)
    with pytest.warns(UserWarning, match="packed 1 frame"):
        plan = tum.plan(folder)
    f0 = plan.frames[0]
    assert f0.sequence == "rgbd_dataset_freiburg1_xyz"
    # t is a quarter of the way: translation 0.1 m, rotation 0.05 rad about y
    np.testing.assert_allclose(f0.cam_to_world[:3, 3], [0.1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(Rotation.from_matrix(f0.cam_to_world[:3, :3]).as_rotvec(), [0, 0.05, 0], atol=1e-6)
    assert plan.frames[1].cam_to_world is None  # 0.1 s later: no ground truth within 0.02 s


def test_groundtruth_nan_named(src, tmp_path):
    folder = _seq(src, tmp_path / "fr1_x", ["1305031102.17 0 0 nan 0 0 0 1"])
    with pytest.raises(SourceError, match=r"groundtruth.txt:2.*NaN"):
        tum.plan(folder)


def test_camera_choice(src, tmp_path):
    folder = _seq(src, tmp_path / "mystery", None)
    assert tum.plan(folder).frames[0].K[0, 0] == 517.3  # recording date May 2011 -> fr1
    assert tum.plan(folder, camera="fr3").frames[0].K[0, 0] == 535.4
    with pytest.raises(ValueError, match="--camera"):
        tum.plan(folder, camera="kinect9")
    assert tum.detect_camera("rgbd_dataset_freiburg2_desk", 0.0) == "fr2"
    assert tum.detect_camera("somewhere", 0.0) is None  # 1970: unknown -> plan asks for --camera

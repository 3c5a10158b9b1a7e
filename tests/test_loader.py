"""PackedDataset / GroupBatchLoader: lazy per-worker open, K under resize and crop, sharding, corrupt files."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpc_taskology.data.loader import GroupBatchLoader, PackedDataset, group_loader, mediator_loader
from hpc_taskology.data.mediator import MediatorSchedule
from hpc_taskology.data.schema import H5Writer, SchemaError

N, H, W = 16, 36, 48
K0 = np.array([[40.0, 0, 23.3], [0, 42.0, 17.6], [0, 0, 1]])
BLOB = (21.3, 15.8)  # subpixel centre (x, y) of the blob in the file's images


def _blob_image(cx, cy, sigma=2.5) -> np.ndarray:
    ys, xs = np.mgrid[:H, :W]
    g = 255.0 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.repeat(np.round(g).astype(np.uint8)[..., None], 3, axis=2)


def _write(path: Path, compression="lz4") -> Path:
    rng = np.random.default_rng(0)
    with H5Writer(path, H, W, source="test", licence="test data, public domain", compression=compression,
                  optional=("normals", "segmentation")) as w:
        for i in range(N):
            depth = rng.uniform(1, 5, (H, W)).astype(np.float32)
            depth[rng.random((H, W)) < 0.2] = 0
            pose = np.eye(4)
            pose[:3, 3] = [i, 0, 0]
            n = rng.normal(size=(H, W, 3)).astype(np.float32)
            w.append({"rgb": _blob_image(*BLOB) if i == 0 else rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                      "depth": depth, "valid": depth > 0, "K": K0, "cam_to_world": pose, "pose_valid": True,
                      "frame_id": 100 + i, "sequence": "seq", "timestamp": 0.1 * i,
                      "normals": n / np.linalg.norm(n, axis=-1, keepdims=True),
                      "segmentation": rng.integers(-1, 5, (H, W)).astype(np.int16)})
    return path


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("loader") / "syn.h5")


def _open_files() -> int:
    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def test_lazy_open_and_pickle(packed):
    before = _open_files()
    ds = PackedDataset(packed, extras=("normals",))
    assert _open_files() == before and ds._file is None  # no handle created in __init__ survives it
    s = ds[3]
    assert ds._file is not None and _open_files() == before + 1
    clone = pickle.loads(pickle.dumps(ds))  # what a spawn-started worker receives
    assert clone._file is None
    assert torch.equal(clone[3]["rgb"], s["rgb"])
    ds.close()
    clone.close()
    assert _open_files() == before


def test_sample_matches_file(packed):
    ds = PackedDataset(packed, extras="all")
    s = ds[5]
    with h5py.File(packed, "r") as f:
        assert torch.allclose(s["rgb"], torch.from_numpy(f["rgb"][5]).permute(2, 0, 1).float() / 255)
        assert s["rgb"].shape == (3, H, W) and s["rgb"].dtype == torch.float32
        assert torch.equal(s["depth"][0], torch.from_numpy(f["depth"][5]))
        assert torch.equal(s["valid"][0], torch.from_numpy(f["valid"][5]))
        assert torch.equal(s["normals"], torch.from_numpy(f["normals"][5]).permute(2, 0, 1))
        assert torch.equal(s["segmentation"][0], torch.from_numpy(f["segmentation"][5]).long())
    assert s["index"].item() == 5 and s["frame_id"].item() == 105 and s["sequence"] == "seq"
    assert s["cam_to_world"].dtype == torch.float64 and s["cam_to_world"][0, 3].item() == 5.0


def _centroid(rgb: torch.Tensor) -> np.ndarray:
    g = rgb[0].double().numpy()
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    return np.array([(g * xs).sum() / g.sum(), (g * ys).sum() / g.sum()])


@pytest.mark.parametrize("size,mode,random_crop", [
    ((18, 24), "resize", False),        # exact halving
    ((30, 32), "resize", False),        # anisotropic, non-integer factors
    ((24, 24), "resize_crop", False),   # scale 2/3, centred crop
    ((27, 30), "resize_crop", True),    # scale 0.75 + random crop
    ((28, 36), "crop", True),           # crop only
    ((54, 72), "resize", False),        # upscale 1.5
])
def test_k_follows_resize_and_crop(packed, size, mode, random_crop):
    """The 3-D point whose projection is the blob centre projects, with the sample's K, onto the blob's centroid."""
    X = np.linalg.inv(K0) @ np.array([BLOB[0], BLOB[1], 1.0]) * 3.0
    ds = PackedDataset(packed, size=size, mode=mode, random_crop=random_crop, seed=4)
    s = ds[0]
    assert s["rgb"].shape == (3, *size) and s["depth"].shape == (1, *size)
    p = s["K"].double().numpy() @ X
    np.testing.assert_allclose(_centroid(s["rgb"]), p[:2] / p[2], atol=0.08)


def test_nearest_keeps_depth_values_and_validity(packed):
    ds = PackedDataset(packed, size=(25, 31), mode="resize")
    with h5py.File(packed, "r") as f:
        src = f["depth"][2]
    s = ds[2]
    assert set(np.unique(s["depth"].numpy())) <= set(np.unique(src))  # no blending of neighbours
    assert torch.equal(s["valid"], s["depth"] > 0)


def test_random_crop_deterministic_per_index(packed):
    ds = PackedDataset(packed, size=(20, 20), mode="crop", random_crop=True, seed=1)
    assert torch.equal(ds[4]["K"], ds[4]["K"])
    crops = {tuple(ds[i]["K"][:2, 2].tolist()) for i in range(N)}
    assert len(crops) > 1


def test_group_sharding_disjoint_with_workers(packed):
    ds = PackedDataset(packed)
    seen = []
    for rank in range(2):
        ids = []
        for step, b in group_loader(ds, 2, rank, 2, seed=3, n_steps=4, num_workers=2):
            ids += b["index"].tolist()
            assert b["rgb"].dtype == torch.float32 and b["rgb"].shape == (2, 3, H, W)
        seen.append(ids)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(N))  # one epoch: 4 steps x 2 ranks x 2 = 16 ids


def test_mediator_loader_follows_schedule_and_uint8_transport(packed):
    ds = PackedDataset(packed)
    sched = MediatorSchedule(N, 11, 3, 1, 2)
    for step, b in mediator_loader(ds, 3, 1, 2, seed=11, start_step=5, n_steps=3, num_workers=1):
        ids = sched.batch(step).tolist()
        assert b["index"].tolist() == ids
        ref = torch.stack([ds[i]["rgb"] for i in ids])
        assert torch.allclose(b["rgb"], ref, atol=1e-6)  # uint8 transport then float: same values
    steps = [s for s, _ in GroupBatchLoader(ds, sched, start_step=2, n_steps=2)]
    assert steps == [2, 3]


def test_corrupt_chunk_and_truncated_file(tmp_path):
    path = _write(tmp_path / "c.h5")
    with h5py.File(path, "r") as f:
        info = f["rgb"].id.get_chunk_info_by_coord((7, 0, 0, 0))
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + 8: info.byte_offset + info.size] = b"\xff" * (info.size - 8)
    path.write_bytes(bytes(raw))
    ds = PackedDataset(path)
    ds[6]  # other samples still read
    with pytest.raises(SchemaError, match=r"c.h5.*'rgb'\[7\]"):
        ds[7]
    trunc = tmp_path / "t.h5"
    trunc.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(SchemaError, match="t.h5"):
        PackedDataset(trunc)[0]
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        PackedDataset(tmp_path / "nope.h5")


def test_argument_errors(packed, tmp_path):
    with pytest.raises(ValueError, match="extras.*'norms'"):
        PackedDataset(packed, extras=("norms",))
    assert PackedDataset(packed, extras="normals").extras == ("normals",)
    with pytest.raises(ValueError, match="mode"):
        PackedDataset(packed, mode="squash")
    with pytest.raises(ValueError, match="size"):
        PackedDataset(packed, size=(100, 10), mode="crop")
    with pytest.raises(ValueError, match="size"):
        PackedDataset(packed, size=(0, 10))
    assert PackedDataset(packed, size=(0, 0))[0]["rgb"].shape == (3, H, W)  # 0 x 0 keeps the file's size
    with pytest.raises(ValueError, match="indices"):
        PackedDataset(packed, indices=[0, N])
    plain = tmp_path / "plain.h5"
    with H5Writer(plain, 4, 4, source="t", licence="t") as w:
        w.append({"rgb": np.zeros((4, 4, 3), np.uint8), "depth": np.ones((4, 4), np.float32),
                  "valid": np.ones((4, 4), bool), "K": np.eye(3), "cam_to_world": np.eye(4), "pose_valid": True,
                  "frame_id": 0, "sequence": "s", "timestamp": 0.0})
    with pytest.raises(SchemaError, match=r"plain.h5.*'normals'"):
        PackedDataset(plain, extras=("normals",))
    with pytest.raises(IndexError):
        PackedDataset(plain)[1]

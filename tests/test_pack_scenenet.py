"""SceneNet RGB-D layout: protobuf built without protoc, the writer, and the packer reading it back."""

from __future__ import annotations

import math
import struct

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image

from hpc_taskology.data.pack import scenenet
from hpc_taskology.data.pack.common import SourceError
from hpc_taskology.data.pack.scenenet_pb import messages
from hpc_taskology.data.parallel import pack_plan

W, H = 32, 24


def _look(camera, lookat) -> np.ndarray:
    """cam_to_world from SceneNet's definition (pySceneNetRGBD world_to_camera_with_pose), written out here."""
    camera, lookat = np.asarray(camera, float), np.asarray(lookat, float)
    R = np.eye(4)
    R[2, :3] = (lookat - camera) / np.linalg.norm(lookat - camera)
    R[0, :3] = np.cross(R[2, :3], [0, 1, 0])
    R[0, :3] /= np.linalg.norm(R[0, :3])
    R[1, :3] = -np.cross(R[0, :3], R[2, :3])
    R[1, :3] /= np.linalg.norm(R[1, :3])
    T = np.eye(4)
    T[:3, 3] = -camera
    return np.linalg.inv(R @ T)


def _frames(n=3):
    rng = np.random.default_rng(1)
    out = []
    for k in range(n):
        inst = np.zeros((H, W), np.int32)
        inst[:, W // 2:] = 3
        inst[: H // 2, : W // 2] = 7
        out.append({"rgb": rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                    "depth": rng.uniform(0.5, 4.0, (H, W)).astype(np.float32),
                    "cam_to_world": _look([0.1 * k, 1.5, 0.0], [0.1 * k + 1.0, 1.2, 2.0]),
                    "instance": inst, "frame_id": 25 * k, "timestamp": 0.5 * k})
    out[0]["depth"][0, 0] = 0.0  # no depth
    return out


INSTANCES = [{"instance_id": 0, "instance_type": "BACKGROUND"},
             {"instance_id": 3, "instance_type": "LAYOUT_OBJECT", "semantic_english": "wall"},
             {"instance_id": 7, "instance_type": "RANDOM_OBJECT", "semantic_english": "chair",
              "semantic_wordnet_id": "03001627"}]


def test_protobuf_wire_format():
    """Field numbers and types as scenenet.proto: bytes compared with a hand-encoded message."""
    m = messages()
    v = m.View()
    v.frame_num = 25
    v.shutter_open.camera.x = 1.5
    v.shutter_open.timestamp = 0.25
    pos = b"\x0d" + struct.pack("<f", 1.5)  # Position.x: field 1, fixed32
    pose = b"\x0a" + bytes([len(pos)]) + pos + b"\x1d" + struct.pack("<f", 0.25)  # Pose.camera=1, timestamp=3
    assert v.SerializeToString() == b"\x08\x19" + b"\x12" + bytes([len(pose)]) + pose  # frame_num=1, shutter_open=2
    t = m.Trajectories()
    tr = t.trajectories.add()
    tr.render_path = "0/1"
    assert t.SerializeToString() == b"\x0a\x05" + b"\x22\x03" + b"0/1"  # trajectories=1, render_path=4


def test_write_then_pack_roundtrip(tmp_path):
    frames = _frames()
    pb = scenenet.write_scenenet_layout(tmp_path / "sn", frames, render_path="0/17", instances=INSTANCES,
                                        photo_format="png", licence="Simulated frames: MIT licence")
    assert pb == tmp_path / "sn" / "scenenet.pb"
    assert (tmp_path / "sn" / "0" / "17" / "depth" / "25.png").is_file()
    out = tmp_path / "sn.h5"
    pack_plan(scenenet.plan(tmp_path / "sn"), out, progress=False)
    fx = (W / 2) / math.tan(math.radians(30))
    fy = (H / 2) / math.tan(math.radians(22.5))
    with h5py.File(out, "r") as f:
        assert list(f["frame_id"][:]) == [0, 25, 50]
        np.testing.assert_allclose(f["K"][0], [[fx, 0, W / 2 - 0.5], [0, fy, H / 2 - 0.5], [0, 0, 1]], rtol=1e-12)
        for i, fr in enumerate(frames):
            assert np.array_equal(f["rgb"][i], fr["rgb"])  # PNG photos: lossless
            # Euclidean mm rounding: |dz| <= 0.5 mm / |ray| <= 0.5 mm
            ok = fr["depth"] > 0
            assert np.abs(f["depth"][i] - fr["depth"])[ok].max() <= 0.5e-3 + 1e-6
            assert np.array_equal(f["valid"][i], ok)
            np.testing.assert_allclose(f["cam_to_world"][i], fr["cam_to_world"], atol=2e-6)  # float32 in protobuf
            np.testing.assert_array_equal(f["instance"][i], fr["instance"])
        assert f["timestamp"][2] == 1.0
        assert eval(f.attrs["class_names"]) == ["chair", "wall"]
        seg = f["segmentation"][0]
        assert seg[0, 0] == 0 and seg[-1, -1] == 1 and seg[-1, 0] == -1  # chair, wall, background
        assert {s.decode() for s in f["sequence"][:]} == {"0/17"}
        assert f.attrs["licence"].startswith("Simulated frames: MIT licence")  # the writer's LICENSE, copied


def test_euclidean_to_z_pixel_centres(tmp_path):
    """A fronto-parallel plane at z = 2 m written as SceneNet ray lengths with SceneNet's own pixel_to_ray
    ((x + 0.5)/W convention, pySceneNetRGBD calculate_surface_normals.py) reads back as z = 2 m everywhere."""
    root = tmp_path / "sn"
    folder = root / "0" / "0"
    for sub in ("photo", "depth"):
        (folder / sub).mkdir(parents=True)
    xs = math.tan(math.radians(30)) * (2 * (np.arange(W) + 0.5) / W - 1)
    ys = math.tan(math.radians(22.5)) * (2 * (np.arange(H) + 0.5) / H - 1)
    ray = np.sqrt(1 + xs[None, :] ** 2 + ys[:, None] ** 2)
    Image.fromarray(np.round(2000 * ray).astype(np.uint16)).save(folder / "depth" / "0.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "photo" / "0.jpg")
    m = messages()
    t = m.Trajectories()
    tr = t.trajectories.add()
    tr.render_path = "0/0"
    v = tr.views.add()
    v.frame_num = 0
    for p in (v.shutter_open, v.shutter_close):
        p.lookat.z = 1.0
    (root / "traj.pb").write_bytes(t.SerializeToString())
    s = scenenet.plan(root).make_sample(scenenet.plan(root).frames[0])
    np.testing.assert_allclose(s["depth"], 2.0, atol=0.6e-3)
    # looking along world +z with world up +y: camera y (down) = world -y, camera x (right) = world -x
    np.testing.assert_allclose(s["cam_to_world"], np.diag([-1.0, -1.0, 1.0, 1.0]), atol=1e-12)
    np.testing.assert_allclose(s["cam_to_world"], _look([0, 0, 0], [0, 0, 1]), atol=1e-12)


def test_shutter_midpoint_pose(tmp_path):
    frames = _frames(1)
    frames[0]["cam_to_world_close"] = _look([0.2, 1.5, 0.0], [1.2, 1.2, 2.0])
    scenenet.write_scenenet_layout(tmp_path / "sn", frames, instances=INSTANCES)
    mid = scenenet.plan(tmp_path / "sn").frames[0].cam_to_world
    np.testing.assert_allclose(mid, _look([0.1, 1.5, 0.0], [1.1, 1.2, 2.0]), atol=2e-6)
    first = scenenet.plan(tmp_path / "sn", pose="shutter_open").frames[0].cam_to_world
    np.testing.assert_allclose(first, frames[0]["cam_to_world"], atol=2e-6)


def test_writer_rejects_roll_and_wrong_k(tmp_path):
    fr = _frames(1)[0]
    T = fr["cam_to_world"].copy()
    c, s = math.cos(0.3), math.sin(0.3)
    T[:3, :3] = T[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # roll about the optical axis
    with pytest.raises(ValueError, match="frame 0.*roll"):
        scenenet.write_scenenet_layout(tmp_path / "a", [{**fr, "cam_to_world": T}])
    with pytest.raises(ValueError, match="field of view"):
        scenenet.write_scenenet_layout(tmp_path / "b", [{**fr, "K": np.eye(3)}])


def test_bad_inputs_named(tmp_path):
    scenenet.write_scenenet_layout(tmp_path / "sn", _frames(2), instances=INSTANCES)
    (tmp_path / "sn" / "0" / "0" / "depth" / "25.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth/25.png"):
        scenenet.plan(tmp_path / "sn")
    (tmp_path / "sn" / "scenenet.pb").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(SourceError, match="scenenet.pb"):
        scenenet.plan(tmp_path / "sn")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="protobuf"):
        scenenet.plan(tmp_path / "empty")

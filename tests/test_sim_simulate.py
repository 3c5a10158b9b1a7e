"""Simulator output files: schema, labels, the CLI, SceneNet's native layout read back by its packer, LiDAR."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hpc_taskology.data.schema import open_packed, read_sample
from hpc_taskology.sim.config import config_from_dict
from hpc_taskology.sim.scene import CLASSES, MOVABLE_CLASSES, SceneBuilder, C
from hpc_taskology.sim.simulate import OPTIONAL, Z_UP_TO_Y_UP, make_sequence, simulate


def _cfg(**kw):
    base = {"height": 32, "width": 48, "sequences": 2, "frames": 3}
    return config_from_dict({"sim": {**base, **kw}})


def test_file_follows_the_schema_and_labels_are_consistent(tmp_path):
    cfg = _cfg(kind="street", shadows=False, objects=[10, 12], movers=[1.0, 1.0])
    out = simulate(cfg, tmp_path / "s.h5", progress=False)
    with open_packed(out, require=OPTIONAL) as f:
        n = cfg.sequences * cfg.frames
        assert f["rgb"].shape == (n, 32, 48, 3) and f["normals"].shape == (n, 32, 48, 3)
        assert json.loads(f.attrs["class_names"]) == list(CLASSES)
        assert f.attrs["num_samples"] == n
        names = [s.decode() for s in f["sequence"][:]]
        assert names == [make_sequence(cfg, s).name for s in range(2) for _ in range(3)]
        np.testing.assert_array_equal(f["frame_id"][:], [0, 1, 2, 0, 1, 2])
        np.testing.assert_allclose(f["timestamp"][:], np.array([0, 1, 2, 0, 1, 2]) / cfg.fps)
        assert f["pose_valid"][:].all()
        for i in range(n):
            s = read_sample(f, i)
            valid = s["valid"]
            assert ((s["depth"] > 0) == valid).all() and (s["depth"][valid] <= cfg.max_depth).all()
            norm = np.linalg.norm(s["normals"], axis=-1)
            np.testing.assert_allclose(norm[valid], 1.0, atol=1e-5)
            # facing the camera: n . (K^-1 p) < 0
            j, ii = np.meshgrid(np.arange(48), np.arange(32))
            K = s["K"]
            ray = np.stack([(j - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(j, float)], -1)
            assert ((s["normals"] * ray).sum(-1)[valid] < 0).all()
            movable_ids = [CLASSES.index(c) for c in MOVABLE_CLASSES]
            np.testing.assert_array_equal(s["movable"], np.isin(s["segmentation"], movable_ids))
            assert (s["object_motion"][~s["movable"]] == 0).all()
            assert ((s["segmentation"] == C["sky"]) == (s["instance"] == 0)).all()
            np.testing.assert_allclose(s["cam_to_world"][:3, :3] @ s["cam_to_world"][:3, :3].T, np.eye(3), atol=1e-12)
        assert np.abs(f["object_motion"][:]).max() > 0  # some cars drive


def test_cli_writes_file_and_names_bad_fields(tmp_path, capsys):
    from hpc_taskology.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[sim]\nkind = "indoor"\nheight = 24\nwidth = 32\nsequences = 1\nframes = 5\n')
    out = tmp_path / "o.h5"
    assert main(["simulate", str(cfg), "-o", str(out), "--frames", "2", "--no-progress"]) == 0
    with open_packed(out, require=OPTIONAL) as f:
        assert f["rgb"].shape == (2, 24, 32, 3)
    assert (tmp_path / "LICENSE-o.txt").is_file()
    cfg.write_text('[sim]\nkind = "indoor"\nhfov_deg = [80.0, 40.0]\n')
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "x.h5"), "--no-progress"]) == 1
    assert "sim.hfov_deg" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_scenenet_layout_is_read_back_by_the_scenenet_packer(tmp_path):
    from hpc_taskology.data.pack.scenenet import plan
    from hpc_taskology.data.parallel import pack_plan

    sn = tmp_path / "scenenet"
    cfg = _cfg(hfov_deg=[60.0, 60.0], vfov_deg=45.0, scenenet_dir=str(sn), scenenet_photo_format="png")
    ours = simulate(cfg, tmp_path / "sim.h5", progress=False)
    fov = json.loads((sn / "fov.json").read_text())
    assert fov == pytest.approx({"hfov_deg": 60.0, "vfov_deg": 45.0})
    theirs = pack_plan(plan(sn, hfov=fov["hfov_deg"], vfov=fov["vfov_deg"]), tmp_path / "packed.h5",
                       progress=False)
    with open_packed(ours) as a, open_packed(theirs, require=("instance", "segmentation")) as b:
        assert [s.decode() for s in a["sequence"][:]] == [s.decode() for s in b["sequence"][:]]
        np.testing.assert_array_equal(a["frame_id"][:], b["frame_id"][:])
        np.testing.assert_array_equal(a["rgb"][:], b["rgb"][:])  # PNG: lossless
        np.testing.assert_array_equal(a["instance"][:], b["instance"][:])
        np.testing.assert_allclose(a["K"][:], b["K"][:], atol=1e-9)
        # depth went through Euclidean millimetres: half a millimetre of ray length at most
        np.testing.assert_array_equal(a["valid"][:], b["valid"][:])
        np.testing.assert_allclose(b["depth"][:], a["depth"][:], atol=6e-4)
        # SceneNet's world is y-up: the packer's pose is ours with (x, y, z) -> (x, z, -y)
        np.testing.assert_allclose(b["cam_to_world"][:], Z_UP_TO_Y_UP @ a["cam_to_world"][:], atol=1e-5)
        # the packer's class ids index its own sorted name list; the names must match ours
        names_b = json.loads(b.attrs["class_names"])
        seg_a, seg_b = a["segmentation"][:], b["segmentation"][:]
        inst = a["instance"][:] > 0
        assert [names_b[k] for k in seg_b[inst][:200]] == [CLASSES[k] for k in seg_a[inst][:200]]


def test_lidar_ranges_on_a_ground_plane_equal_closed_form():
    from hpc_taskology.sim.lidar import beam_angles, scan

    cfg = _cfg(kind="street", lidar=True, lidar_beams=16, lidar_azimuths=32, lidar_fov_deg=[-30.0, 10.0],
               lidar_range=40.0)
    b = SceneBuilder(np.random.default_rng(0))
    b.rect((0, 0, 0), np.eye(3), 0.0, 0.0, b.material("solid", (0.5, 0.5, 0.5)), C["road"], 1)
    scene = b.build()
    h = 1.8
    T = np.eye(4)
    T[:3, :3] = np.array([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0], [0, 0, 1]])
    T[:3, 3] = (2.0, -1.0, h)
    row = scan(cfg, scene, 0.0, T)
    elev, _ = beam_angles(cfg)
    expected = np.where(elev < 0, h / np.sin(np.radians(-np.minimum(elev, -1e-9))), 0.0)
    expected = np.where(expected <= cfg.lidar_range, expected, 0.0)
    assert (expected > 0).sum() >= 8 and (expected == 0).sum() >= 2
    np.testing.assert_allclose(row["range"], np.broadcast_to(expected[:, None], (16, 32)), rtol=1e-5)
    hit = row["range"] > 0
    np.testing.assert_allclose(row["points"][..., 2][hit], -h, atol=1e-4)
    assert (row["segmentation"][hit] == C["road"]).all() and (row["segmentation"][~hit] == -1).all()
    elev_px = np.broadcast_to(elev[:, None], (16, 32))[hit]
    np.testing.assert_allclose(row["intensity"][hit], np.sin(np.radians(-elev_px)), atol=1e-5)


def test_lidar_boxes_contain_their_points(tmp_path):
    cfg = _cfg(kind="street", lidar=True, lidar_beams=32, lidar_azimuths=256, sequences=1, frames=2,
               objects=[12, 14], pedestrians=[6, 8])
    out = simulate(cfg, tmp_path / "l.h5", progress=False)
    with open_packed(out) as f:
        g = f["lidar"]
        assert g["range"].shape == (2, 32, 256)
        checked = 0
        for i in range(2):
            pts, inst = g["points"][i], g["instance"][i]
            for k in range(int(g["num_boxes"][i])):
                x, y, z, length, width, height, yaw = g["boxes"][i, k]
                mine = pts[inst == g["box_instance"][i, k]]
                if len(mine) == 0:
                    continue
                c, s = math.cos(yaw), math.sin(yaw)
                rel = mine - (x, y, z)
                local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
                assert (np.abs(local) <= np.array([length, width, height]) / 2 + 0.02).all()
                checked += len(mine)
        assert checked > 20

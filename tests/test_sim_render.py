"""Simulator renderer vs closed forms: an analytic plane, a box corner, normals derived from the rendered depth
(hpc_taskology.losses.depth_normals), and thread-count invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hpc_taskology.sim.camera import intrinsics, look_pose
from hpc_taskology.sim.config import config_from_dict
from hpc_taskology.sim.render import render
from hpc_taskology.sim.scene import C, SceneBuilder, yaw_matrix
from hpc_taskology.sim.simulate import make_sequence, render_sample


def _pixel_rays(K: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W, 3) K^-1 (j, i, 1): camera-frame rays with z = 1 (float64)."""
    j, i = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)


def _builder() -> SceneBuilder:
    b = SceneBuilder(np.random.default_rng(0))
    b.ambient = (1.0, 1.0, 1.0)
    return b


def test_plane_depth_and_normal_equal_closed_form():
    h, w = 48, 64
    K = intrinsics(w, h, 70.0)
    b = _builder()
    # an unbounded plane through p0 with a tilted normal
    R_plane = yaw_matrix(0.4) @ np.array([[1, 0, 0], [0, math.cos(0.5), -math.sin(0.5)],
                                          [0, math.sin(0.5), math.cos(0.5)]])
    p0 = np.array([0.3, -0.2, -0.5])
    b.rect(p0, R_plane, 0.0, 0.0, b.material("solid", (0.5, 0.5, 0.5)), C["floor"], 1)
    scene = b.build()
    T = look_pose((0.1, 0.2, 1.5), yaw=0.7, pitch=-0.6, roll=0.1)
    out = render(scene, K, T, h, w, shadows=False)

    n_w = R_plane[:, 2]
    n_c = T[:3, :3].T @ n_w  # plane in camera coordinates: n_c . X = delta
    delta = n_w @ (p0 - T[:3, 3])
    rays = _pixel_rays(K, h, w)
    denom = rays @ n_c
    z = delta / denom
    front = z > 0
    assert front.mean() > 0.3 and (~front).any()  # the horizon crosses the image: both cases are exercised
    depth = out["depth"].numpy()
    np.testing.assert_array_equal(out["valid"].numpy(), front)
    np.testing.assert_allclose(depth[front], z[front], rtol=2e-5)
    assert (depth[~front] == 0).all()
    n_expected = np.where((denom < 0)[..., None], n_c, -n_c)  # facing the camera: n . ray < 0
    np.testing.assert_allclose(out["normals"].numpy()[front], np.broadcast_to(n_expected, (h, w, 3))[front], atol=1e-5)
    assert (out["segmentation"].numpy()[front] == C["floor"]).all()
    assert (out["segmentation"].numpy()[~front] == C["sky"]).all()


def _box_faces(centre, R, half):
    """The six faces of a box: (outward normal, offset, the two in-face axes with their half sizes)."""
    faces = []
    for ax in range(3):
        for sgn in (-1.0, 1.0):
            n = sgn * R[:, ax]
            others = [(R[:, k], half[k]) for k in range(3) if k != ax]
            faces.append((n, n @ centre + half[ax], others))
    return faces


def test_box_corner_depth_and_normals_equal_closed_form():
    h, w = 60, 80
    centre, size, yaw = np.array([4.0, 1.0, 0.6]), np.array([1.2, 0.8, 1.2]), 0.35
    R = yaw_matrix(yaw)
    half = size / 2
    corner = centre + R @ np.array([-half[0], -half[1], half[2]])  # the top corner facing the camera
    T = look_pose((0.5, -1.5, 2.4), yaw=math.atan2(corner[1] + 1.5, corner[0] - 0.5), pitch=-0.3)
    X = T[:3, :3].T @ (corner - T[:3, 3])  # corner in camera coordinates
    K = intrinsics(w, h, 60.0)
    u, v = K[0, 0] * X[0] / X[2] + K[0, 2], K[1, 1] * X[1] / X[2] + K[1, 2]
    j0, i0 = int(round(u)) + 3, int(round(v)) - 2
    K[0, 2] += j0 - u  # move the principal point so the corner projects exactly onto pixel (i0, j0)
    K[1, 2] += i0 - v
    b = _builder()
    b.box(centre, size, b.material("solid", (0.5, 0.5, 0.5)), C["cabinet"], 1, yaw=yaw)
    out = render(b.build(), K, T, h, w, shadows=False)
    depth, normals = out["depth"].numpy(), out["normals"].numpy()

    assert depth[i0, j0] == pytest.approx(X[2], rel=1e-5)

    # brute force over the faces: ray-plane intersection inside the face rectangle, nearest one wins
    o = T[:3, 3]
    d = _pixel_rays(K, h, w) @ T[:3, :3].T  # world directions with unit camera z: t = z-depth
    best = np.full((h, w), np.inf)
    best_n = np.zeros((h, w, 3))
    n_inside = np.zeros((h, w), int)
    for n, off, others in _box_faces(centre, R, half):
        dn = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (off - o @ n) / dn
        p = o + t[..., None] * d
        inside = (dn < 0) & (t > 0)
        for axis, hk in others:
            inside &= np.abs((p - centre) @ axis) <= hk * (1 + 1e-9)
        n_inside += inside
        closer = inside & (t < best)
        best = np.where(closer, t, best)
        best_n = np.where(closer[..., None], T[:3, :3].T @ n, best_n)
    hit = np.isfinite(best)
    assert 0.05 < hit.mean() < 0.9
    np.testing.assert_array_equal(out["valid"].numpy(), hit)
    np.testing.assert_allclose(depth[hit], best[hit], rtol=1e-5)
    one_face = hit & (n_inside == 1)  # away from the edges, where two faces tie
    assert one_face.sum() > 0.9 * hit.sum()
    np.testing.assert_allclose(normals[one_face], best_n[one_face], atol=1e-5)
    # all three faces meeting at the corner are seen
    assert len({tuple(np.round(n, 3)) for n in best_n[one_face]}) == 3


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def _uniform_window(x: np.ndarray, r: int) -> np.ndarray:
    """(H, W) bool: the (2r+1)^2 window around the pixel lies inside the image and x is constant over it."""
    h, w = x.shape[:2]
    ok = np.zeros((h, w), bool)
    ok[r:h - r, r:w - r] = True
    flat = x.reshape(h, w, -1)
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            shifted = np.roll(np.roll(flat, di, 0), dj, 1)
            ok &= (np.abs(shifted - flat) < 1e-4).all(-1)
    return ok


def test_normals_from_rendered_depth_agree_with_rendered_normals_on_planes():
    from hpc_taskology.losses.depth_normals import normals_from_depth

    cfg = config_from_dict({"sim": {"frames": 5, "sequences": 3, "height": 96, "width": 128}})
    checked = 0
    for s in range(3):
        smp = render_sample(cfg, make_sequence(cfg, s), 2)
        depth = torch.as_tensor(smp["depth"], dtype=torch.float64)[None, None]
        n_d, valid = normals_from_depth(depth, torch.as_tensor(smp["K"])[None], beta=0.05, window=5)
        n_d = n_d[0].permute(1, 2, 0).numpy()
        # planar interior: rendered normal and instance constant over the 7x7 window the estimate reads
        planar = _uniform_window(smp["normals"], 3) & _uniform_window(smp["instance"].astype(float), 3)
        mask = planar & valid[0, 0].numpy() & smp["valid"]
        assert mask.mean() > 0.3
        ang = _angles_deg(n_d[mask], smp["normals"][mask])
        assert np.median(ang) < 0.1 and np.percentile(ang, 99) < 1.0, (s, np.median(ang), np.percentile(ang, 99))
        checked += mask.sum()
    assert checked > 10000


def test_normals_from_rendered_depth_agree_on_a_sphere():
    from hpc_taskology.losses.depth_normals import normals_from_depth

    h, w = 96, 128
    b = _builder()
    b.sphere((3.0, 0.2, 1.0), 0.9, b.material("solid", (0.5, 0.5, 0.5)), C["object"], 1)
    T = look_pose((0.0, 0.0, 1.2), yaw=0.05, pitch=-0.05)
    K = intrinsics(w, h, 60.0)
    out = render(b.build(), K, T, h, w, shadows=False)
    n_d, valid = normals_from_depth(out["depth"].double()[None, None], torch.as_tensor(K)[None], window=1)
    inner = _uniform_window(out["instance"].numpy().astype(float), 1) & out["valid"].numpy() & valid[0, 0].numpy()
    assert inner.sum() > 1000
    ang = _angles_deg(n_d[0].permute(1, 2, 0).numpy()[inner], out["normals"].numpy()[inner])
    assert np.median(ang) < 0.5 and np.percentile(ang, 95) < 2.0, (np.median(ang), np.percentile(ang, 95))
    # the rendered normal is the analytic one: (X - centre) / r in camera coordinates
    z = out["depth"].numpy()
    X = _pixel_rays(K, h, w) * z[..., None]
    c_cam = T[:3, :3].T @ (np.array([3.0, 0.2, 1.0]) - T[:3, 3])
    np.testing.assert_allclose(out["normals"].numpy()[inner], ((X - c_cam) / 0.9)[inner], atol=2e-4)


def test_frames_do_not_depend_on_thread_count():
    cfg = config_from_dict({"sim": {"frames": 3, "sequences": 1, "height": 48, "width": 64}})
    seq = make_sequence(cfg, 0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = render_sample(cfg, seq, 1)
        torch.set_num_threads(max(2, threads))
        b = render_sample(cfg, seq, 1)
    finally:
        torch.set_num_threads(threads)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_render_rejects_bad_shapes():
    b = _builder()
    b.sphere((3, 0, 0), 1.0, 0, C["object"], 1)
    scene = b.build()
    with pytest.raises(ValueError, match="K: expected shape"):
        render(scene, np.eye(4), np.eye(4), 8, 8)
    with pytest.raises(ValueError, match="cam_to_world: expected shape"):
        render(scene, np.eye(3), np.eye(3), 8, 8)

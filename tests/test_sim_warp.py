"""Simulated frame pairs are consistent under the project's warp (hpc_taskology.losses.warp / photometric):
warping frame t onto t+1 with the true depth, ego-motion (T_1→2 = inv(cam_to_world_2) · cam_to_world_1) and object
motion lands every non-occluded point on the same surface (geometric check) and the same colour (photometric)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hpc_taskology.losses.photometric import photometric_consistency
from hpc_taskology.losses.warp import bilinear_sample, occlusion_mask, warp_coords
from hpc_taskology.sim.config import config_from_dict
from hpc_taskology.sim.simulate import make_sequence, render_sample


def pose_1to2(c2w1: np.ndarray, c2w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(axis-angle (3,), translation (3,), R (3, 3)) of T_1→2 = inv(cam_to_world_2) · cam_to_world_1."""
    T = np.linalg.inv(c2w2) @ c2w1
    return Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3], T[:3, :3]


def _t(x, dtype=torch.float64):
    return torch.as_tensor(np.asarray(x), dtype=dtype)[None]


def warp_errors(s1: dict, s2: dict, motion: str = "rotated"):
    """Per-pixel photometric (mean |ΔRGB| in [0, 1]) and relative depth errors of frame 1 warped into frame 2, on
    the pixels kept by the occlusion test; and the movable mask.  ``motion``: how object motion enters the warp —
    'rotated' (R m, exact for the warp's X2 = R X1 + T + m), 'none', or 'wrong_pose' (T_2→1 used as T_1→2)."""
    rot, trans, R = pose_1to2(s1["cam_to_world"], s2["cam_to_world"])
    if motion == "wrong_pose":
        rot, trans, R = pose_1to2(s2["cam_to_world"], s1["cam_to_world"])
    m1 = s1["object_motion"]  # (H, W, 3) m, frame-1 camera coordinates
    obj = None if motion == "none" else torch.as_tensor(m1 @ R.T, dtype=torch.float64).permute(2, 0, 1)[None]
    depth1 = _t(s1["depth"])[None]
    depth2 = _t(s2["depth"])[None]
    x, y, z, valid = warp_coords(depth1, _t(s1["K"]), _t(rot), _t(trans), obj, _t(s1["movable"], torch.bool)[None])
    z2 = bilinear_sample(depth2, x, y)
    keep = occlusion_mask(z, z2, valid)[0, 0].numpy()
    # bilinear depth mixes the two sides of a depth edge: keep pixels whose four frame-2 taps agree
    img1 = _t(s1["rgb"]).permute(0, 3, 1, 2) / 255.0
    img2 = _t(s2["rgb"]).permute(0, 3, 1, 2) / 255.0
    photo = (bilinear_sample(img2, x, y) - img1).abs().mean(1)[0].numpy()
    rel = ((z - z2).abs() / z2.clamp(min=1e-6))[0, 0].numpy()
    return photo, rel, keep, s1["movable"]


@pytest.fixture(scope="module")
def indoor_pair():
    cfg = config_from_dict({"sim": {"frames": 4, "sequences": 2, "height": 96, "width": 128, "seed": 3,
                                    "texture_scale": [0.2, 0.8]}})
    seq = make_sequence(cfg, 1)
    return cfg, render_sample(cfg, seq, 1), render_sample(cfg, seq, 2)


def test_static_indoor_pair_warps_onto_itself(indoor_pair):
    cfg, s1, s2 = indoor_pair
    photo, rel, keep, _ = warp_errors(s1, s2)
    assert keep.mean() > 0.6
    # geometry: the warped depth meets frame 2's depth (float32 depth, bilinear taps across edges aside)
    assert np.median(rel[keep]) < 1e-4 and np.mean(rel[keep] < 1e-2) > 0.97
    # colour: Lambertian shading is view-independent; residuals come from sampling textures at sub-pixel offsets
    assert np.median(photo[keep]) < 0.01 and photo[keep].mean() < 0.03
    wrong, wrong_rel, wrong_keep, _ = warp_errors(s1, s2, "wrong_pose")
    assert np.median(wrong_rel[wrong_keep]) > 30 * max(np.median(rel[keep]), 1e-5)
    assert wrong[wrong_keep].mean() > 2 * photo[keep].mean()


def test_photometric_loss_is_near_zero_with_true_pose(indoor_pair):
    cfg, s1, s2 = indoor_pair
    rot12, t12, _ = pose_1to2(s1["cam_to_world"], s2["cam_to_world"])
    rot21, t21, _ = pose_1to2(s2["cam_to_world"], s1["cam_to_world"])
    args = [_t(s["rgb"]).permute(0, 3, 1, 2) / 255.0 for s in (s1, s2)] + \
           [_t(s["depth"])[None] for s in (s1, s2)] + [_t(s1["K"])]
    zero = np.zeros(3)
    poses = {"true": (rot12, t12, rot21, t21), "swapped": (rot21, t21, rot12, t12), "identity": (zero,) * 4}
    loss = {}
    for name, (r12, tr12, r21, tr21) in poses.items():
        for weights in ((1.0, 0.0), (1.0, 1.5)):  # the L1 term alone, and L1 + SSIM (depth_and_motion_learning)
            loss[name, weights] = photometric_consistency(*args, _t(r12), _t(tr12), _t(r21), _t(tr21),
                                                          rgb_weight=weights[0], ssim_weight=weights[1],
                                                          impl="reference")
    good_l1, n_good = loss["true", (1.0, 0.0)]
    assert int(n_good) > 0.6 * 2 * cfg.height * cfg.width
    assert float(good_l1) < 0.01  # mean |ΔRGB| in [0, 1] over the kept pixels of both directions
    for wrong in ("swapped", "identity"):
        assert float(loss[wrong, (1.0, 0.0)][0]) > 4 * float(good_l1)
        assert float(loss[wrong, (1.0, 1.5)][0]) > 4 * float(loss["true", (1.0, 1.5)][0])


def test_moving_objects_need_their_object_motion():
    cfg = config_from_dict({"sim": {"kind": "street", "frames": 6, "sequences": 6, "height": 96, "width": 160,
                                    "shadows": False, "seed": 1, "objects": [12, 16], "movers": [1.0, 1.0]}})
    found = None
    for s in range(cfg.sequences):
        seq = make_sequence(cfg, s)
        for f in range(cfg.frames - 1):
            s1 = render_sample(cfg, seq, f)
            moving = s1["movable"] & (np.linalg.norm(s1["object_motion"], axis=-1) > 0.2) & s1["valid"]
            if moving.sum() > 150:
                found = (s1, render_sample(cfg, seq, f + 1))
                break
        if found:
            break
    assert found is not None, "no frame with moving objects in view (the street generator changed?)"
    s1, s2 = found
    m = np.linalg.norm(s1["object_motion"], axis=-1)
    assert (m[~s1["movable"]] == 0).all()  # only movable things move
    photo, rel, keep, movable = warp_errors(s1, s2)
    moving = keep & movable & (m > 0.2)
    static = keep & ~movable
    assert moving.sum() > 50
    assert np.median(rel[moving]) < 1e-3 and np.median(rel[static]) < 1e-3
    assert np.median(photo[moving]) < 0.03
    # without the object motion the moving pixels land elsewhere
    _, rel0, keep0, _ = warp_errors(s1, s2, "none")
    still = keep0 & movable & (m > 0.2)
    assert np.median(rel0[still]) > 20 * max(np.median(rel[moving]), 1e-5)

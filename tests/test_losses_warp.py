"""References of the warp, photometric and segmentation consistency losses against analytic cases.

Taskology CVPR 2021 eq. 3, 4, supp. eq. 9; masks and SSIM of google-research depth_and_motion_learning.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation
from two_frame_cases import GRAD_KEYS, plane_scene, random_pair

from hpc_taskology.losses.photometric import (
    PhotometricConsistency,
    photometric_consistency,
    photometric_consistency_reference,
)
from hpc_taskology.losses.segmentation import SegmentationConsistency, segmentation_consistency
from hpc_taskology.losses.warp import axis_angle_to_matrix, bilinear_sample, warp_coords

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def dyadic_K(b, fx=4.0, fy=8.0, cx=2.0, cy=1.5, dtype=F64):
    """Intrinsics whose inverse and products are exact in binary floating point."""
    return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=dtype).expand(b, 3, 3).contiguous()


def split(d: dict, name: str):
    d = dict(d)
    return d.pop("frame1"), d.pop("frame2"), d


# ------------------------------------------------------------------------------------------------------ rotation
def test_axis_angle_matches_scipy_and_zero_is_identity():
    w = torch.cat([torch.randn(6, 3, dtype=F64), torch.tensor([[0.0, 0, 0], [1e-5, -2e-5, 3e-6], [0, 0, math.pi]],
                                                             dtype=F64)])
    expected = torch.from_numpy(Rotation.from_rotvec(w.numpy()).as_matrix())
    torch.testing.assert_close(axis_angle_to_matrix(w), expected, rtol=0, atol=1e-12)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(1, 3)), torch.eye(3)[None])


@pytest.mark.parametrize("scale", [0.0, 1e-4, 0.5])
def test_axis_angle_gradcheck_including_zero(scale):
    w = (torch.randn(3, 3, dtype=F64) * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (w,))


def test_axis_angle_float32_small_angle_is_accurate():
    w = torch.tensor([[1e-3, -2e-3, 5e-4]], dtype=F64)
    R32 = axis_angle_to_matrix(w.float()).double()
    torch.testing.assert_close(R32, axis_angle_to_matrix(w), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------- warp
def test_identity_motion_gives_exactly_p_and_z():
    b, h, w = 2, 5, 7
    jj = torch.arange(w, dtype=F64).expand(b, 1, h, w)
    ii = torch.arange(h, dtype=F64)[:, None].expand(b, 1, h, w)
    inside = (jj < w - 1) & (ii < h - 1)  # half-open frame [0, W-1) x [0, H-1)
    zero = torch.zeros(b, 3, dtype=F64)
    # dyadic depths and K: every product is exact, so p' = p and z' = z bit for bit
    depth = 1.0 + torch.randint(0, 12, (b, 1, h, w)).to(F64) / 4
    x, y, z, valid = warp_coords(depth, dyadic_K(b), zero, zero)
    assert torch.equal(valid, inside)
    assert torch.equal(x[inside], jj[inside]) and torch.equal(y[inside], ii[inside])
    assert torch.equal(z[inside], depth[inside])
    # any depth: equal to rounding (on the first and last rows / columns p' may then round across the frame edge)
    depth = torch.rand(b, 1, h, w, dtype=F64) + 1.0
    x, y, z, valid = warp_coords(depth, dyadic_K(b), zero, zero)
    assert torch.equal(valid[..., 1:-1, 1:-1], inside[..., 1:-1, 1:-1])
    torch.testing.assert_close(x[valid], jj[valid], rtol=0, atol=1e-13)
    torch.testing.assert_close(y[valid], ii[valid], rtol=0, atol=1e-13)


def test_pure_translation_moves_pixels_by_f_T_over_z():
    b, h, w = 2, 6, 8
    K = dyadic_K(b)
    depth = torch.rand(b, 1, h, w, dtype=F64) * 3 + 2
    T = torch.tensor([[0.3, -0.2, 0.0], [-0.1, 0.05, 0.0]], dtype=F64)
    x, y, z, valid = warp_coords(depth, K, torch.zeros(b, 3, dtype=F64), T)
    jj = torch.arange(w, dtype=F64).expand(b, 1, h, w)
    ii = torch.arange(h, dtype=F64)[:, None].expand(b, 1, h, w)
    fx, fy = K[:, 0, 0, None, None, None], K[:, 1, 1, None, None, None]
    flow_x = fx * T[:, 0, None, None, None] / depth  # f T / z
    flow_y = fy * T[:, 1, None, None, None] / depth
    v = valid
    assert v.sum() > 0.3 * v.numel()
    torch.testing.assert_close((x - jj)[v], flow_x[v], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((y - ii)[v], flow_y[v], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z[v], depth[v])


def test_translation_with_forward_motion_closed_form():
    # x' - cx = ((x - cx) z + fx tx) / (z + tz)
    b, h, w = 1, 6, 8
    K = dyadic_K(b)
    depth = torch.rand(b, 1, h, w, dtype=F64) * 3 + 2
    T = torch.tensor([[0.1, 0.05, 0.4]], dtype=F64)
    x, y, z, valid = warp_coords(depth, K, torch.zeros(b, 3, dtype=F64), T)
    jj = torch.arange(w, dtype=F64).expand(b, 1, h, w)
    ii = torch.arange(h, dtype=F64)[:, None].expand(b, 1, h, w)
    ex = 2.0 + ((jj - 2.0) * depth + 4.0 * 0.1) / (depth + 0.4)
    ey = 1.5 + ((ii - 1.5) * depth + 8.0 * 0.05) / (depth + 0.4)
    assert valid.any()
    torch.testing.assert_close(x[valid], ex[valid])
    torch.testing.assert_close(y[valid], ey[valid])
    torch.testing.assert_close(z[valid], (depth + 0.4)[valid])


def test_rotation_matches_projection_of_rotated_points():
    b, h, w = 2, 5, 6
    K = dyadic_K(b)
    depth = torch.rand(b, 1, h, w, dtype=F64) + 3
    rot = torch.randn(b, 3, dtype=F64) * 0.05
    T = torch.randn(b, 3, dtype=F64) * 0.1
    x, y, z, valid = warp_coords(depth, K, rot, T)
    R = torch.from_numpy(Rotation.from_rotvec(rot.numpy()).as_matrix())
    ii, jj = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    Kinv = torch.linalg.inv(K[0])
    for bi in range(b):
        for i in range(h):
            for j in range(w):
                X1 = depth[bi, 0, i, j] * (Kinv @ torch.tensor([j, i, 1.0], dtype=F64))
                P = K[bi] @ (R[bi] @ X1 + T[bi])
                if valid[bi, 0, i, j]:
                    assert abs(x[bi, 0, i, j] - P[0] / P[2]) < 1e-10
                    assert abs(y[bi, 0, i, j] - P[1] / P[2]) < 1e-10
                    assert abs(z[bi, 0, i, j] - P[2]) < 1e-10
                else:
                    u, v = float(P[0] / P[2]), float(P[1] / P[2])
                    assert not (0 <= u < w - 1 and 0 <= v < h - 1)


def test_object_motion_adds_to_translation_only_where_movable():
    b, h, w = 2, 5, 6
    K, depth = dyadic_K(b), torch.rand(b, 1, h, w, dtype=F64) + 2
    rot, T = torch.randn(b, 3, dtype=F64) * 0.02, torch.randn(b, 3, dtype=F64) * 0.1
    delta = torch.tensor([[0.05, -0.02, 0.1], [0.0, 0.03, -0.05]], dtype=F64)
    field = delta[:, :, None, None].expand(b, 3, h, w).contiguous()
    moved = warp_coords(depth, K, rot, T + delta)
    static = warp_coords(depth, K, rot, T)
    all_movable = warp_coords(depth, K, rot, T, field, torch.ones(b, 1, h, w, dtype=torch.bool))
    unmasked = warp_coords(depth, K, rot, T, field, None)
    none_movable = warp_coords(depth, K, rot, T, field, torch.zeros(b, 1, h, w))
    for a, e in ((all_movable, moved), (unmasked, moved), (none_movable, static)):
        assert torch.equal(a[3], e[3])
        for k in range(3):
            torch.testing.assert_close(a[k], e[k], rtol=1e-12, atol=1e-12)


def test_bilinear_sample_equals_grid_sample_align_corners_true():
    b, c, h, w = 2, 3, 5, 7
    src = torch.randn(b, c, h, w, dtype=F64)
    x = torch.rand(b, 1, 4, 6, dtype=F64) * (w - 1)
    y = torch.rand(b, 1, 4, 6, dtype=F64) * (h - 1)
    x[0, 0, 0, 0], y[0, 0, 0, 0] = w - 1, h - 1  # the far corner is inside with align_corners=True
    grid = torch.stack([2 * x[:, 0] / (w - 1) - 1, 2 * y[:, 0] / (h - 1) - 1], -1)
    expected = F.grid_sample(src, grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(bilinear_sample(src, x, y), expected, rtol=1e-12, atol=1e-12)
    # integer coordinates are pixel centres: sampling at (j, i) returns src[..., i, j]
    assert bilinear_sample(src, torch.full((b, 1, 1, 1), 3.0, dtype=F64),
                           torch.full((b, 1, 1, 1), 2.0, dtype=F64))[:, :, 0, 0].equal(src[:, :, 2, 3])


# --------------------------------------------------------------------------------------- analytic two-view scene
def _wrong(d: dict) -> dict:
    d = dict(d)
    d["trans_1to2"] = d["trans_1to2"] + torch.tensor([0.1, 0.0, 0.0])
    d["trans_2to1"] = d["trans_2to1"] - torch.tensor([0.1, 0.0, 0.0])
    return d


def test_true_geometry_gives_near_zero_photometric_loss_on_textured_plane():
    img1, img2, geo = split(plane_scene(h=48, w=64), "img")
    loss, n = photometric_consistency(img1, img2, **geo)
    wrong, _ = photometric_consistency(img1, img2, **_wrong(geo))
    assert int(n) > 0.85 * 2 * img1[:, :1].numel()  # small motion: most pixels stay in view
    assert float(loss) < 2e-3, float(loss)
    assert float(wrong) > 30 * float(loss)
    # the residual is bilinear-interpolation error only: O(pixel^2), so it drops ~4x when the resolution doubles
    # (a half-pixel convention error would leave an O(pixel) residual that only halves)
    coarse, _ = photometric_consistency(*split(plane_scene(h=24, w=32), "img")[:2],
                                        **split(plane_scene(h=24, w=32), "img")[2], ssim_weight=0.0)
    fine, _ = photometric_consistency(img1, img2, **geo, ssim_weight=0.0)
    assert float(coarse) / float(fine) > 3.0


def test_true_geometry_gives_near_zero_logit_loss_on_textured_plane():
    l1, l2, geo = split(plane_scene(h=48, w=64, channels=5), "logits")
    loss, n = segmentation_consistency(l1, l2, **geo)
    wrong, _ = segmentation_consistency(l1, l2, **_wrong(geo))
    assert int(n) > 0.85 * 2 * l1[:, :1].numel()
    assert float(loss) < 1e-4, float(loss)
    assert float(wrong) > 100 * float(loss)


def test_object_motion_with_movable_mask_reproduces_the_rigid_scene():
    img1, img2, geo = split(plane_scene(h=48, w=64), "img")
    b, _, h, w = img1.shape
    delta = torch.tensor([0.4, -0.2, 0.0])
    moved = dict(geo, trans_1to2=geo["trans_1to2"] - delta,
                 obj_motion_1to2=delta[None, :, None, None].expand(b, 3, h, w).contiguous())
    ref, n_ref = photometric_consistency(img1, img2, **geo)
    loss, n = photometric_consistency(img1, img2, **moved, movable1=torch.ones(b, 1, h, w, dtype=torch.bool))
    unmoved, _ = photometric_consistency(img1, img2, **moved, movable1=torch.zeros(b, 1, h, w, dtype=torch.bool))
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-6)
    assert int(n) == int(n_ref)
    assert float(unmoved) > 5 * float(ref)


def test_identical_frames_identity_motion_give_exact_zero_and_count():
    b, h, w = 2, 6, 9
    img = torch.rand(b, 3, h, w, dtype=F64)
    depth = 1.0 + torch.randint(0, 12, (b, 1, h, w)).to(F64) / 4  # dyadic: p' = p exactly, so I' = I bit for bit
    zero = torch.zeros(b, 3, dtype=F64)
    loss, n = photometric_consistency(img, img.clone(), depth, depth.clone(), dyadic_K(b), zero, zero, zero, zero)
    assert float(loss) == 0.0 and int(n) == 2 * b * (h - 1) * (w - 1)
    logits = torch.randn(b, 4, h, w, dtype=F64)
    loss, n = segmentation_consistency(logits, logits.clone(), depth, depth.clone(), dyadic_K(b), zero, zero, zero,
                                       zero)
    assert float(loss) == 0.0 and int(n) == 2 * b * (h - 1) * (w - 1)


# ------------------------------------------------------------------------------------------------ masks, counting
def _const_pair(b, h, w, value=2.0):
    d1 = torch.full((b, 1, h, w), value, dtype=F64)
    return d1, d1.clone()


@pytest.mark.parametrize("loss_name", ["photometric", "segmentation"])
def test_invalid_depths_are_masked_and_counted(loss_name):
    b, h, w = 1, 7, 9
    d1, d2 = _const_pair(b, h, w)
    bad = {(1, 1): 0.0, (1, 4): -1.0, (3, 2): float("nan"), (4, 5): float("inf")}
    for (i, j), v in bad.items():
        d1[0, 0, i, j] = v
    d1.requires_grad_(True)
    zero = torch.zeros(b, 3, dtype=F64, requires_grad=True)
    frames = (torch.rand(b, 3, h, w, dtype=F64), torch.rand(b, 3, h, w, dtype=F64))
    fn = photometric_consistency if loss_name == "photometric" else segmentation_consistency
    if loss_name == "segmentation":  # its gradients go to the logits, not the geometry
        frames = tuple(f.requires_grad_(True) for f in frames)
    loss, n = fn(*frames, d1, d2, dyadic_K(b), zero, zero, zero, zero)
    region = (h - 1) * (w - 1)
    # 1 -> 2: the four invalid source depths.  2 -> 1 (identity, taps at p, p+x, p+y, p+x+y of depth1): the pixel
    # itself for all four, and its three up/left neighbours for NaN and inf (0 * NaN and 0 * inf are NaN in the
    # bilinear weights, so a non-finite tap spoils the sample even at weight 0).
    assert int(n) == (region - 4) + (region - 4 - 3 - 3)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [frames[0].grad, frames[1].grad] if loss_name == "segmentation" else [d1.grad, zero.grad]
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_out_of_frame_pixels_are_masked_and_counted():
    b, h, w = 1, 5, 10
    d1, d2 = _const_pair(b, h, w)
    K = dyadic_K(b)  # fx = 4: tx = 1 m at z = 2 m moves pixels by exactly 2
    T = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    zero = torch.zeros(b, 3, dtype=F64)
    img = torch.rand(b, 3, h, w, dtype=F64)
    _, n = photometric_consistency(img, img, d1, d2, K, zero, T, zero, -T)
    assert int(n) == (h - 1) * (w - 3) + (h - 1) * (w - 2)  # x+2 < W-1, and 0 <= x-2 (< W-1)


def test_occluded_pixels_are_dropped_one_way_only():
    b, h, w = 1, 6, 8
    d1, d2 = _const_pair(b, h, w, 4.0)
    d2[..., 2:4, 3:6] = 2.0  # an occluder in frame 2 only
    zero = torch.zeros(b, 3, dtype=F64)
    img = torch.rand(b, 3, h, w, dtype=F64)
    _, n = photometric_consistency(img, img, d1, d2, dyadic_K(b), zero, zero, zero, zero)
    region = (h - 1) * (w - 1)
    # identity motion samples frame 2's depth exactly at p: 1 -> 2 drops the 2 x 3 occluder patch (frame 1's point at
    # 4 m lies behind frame 2's surface at 2 m); 2 -> 1 keeps everything (the occluder is in front of frame 1's 4 m)
    assert int(n) == (region - 2 * 3) + region


def test_no_valid_pixel_gives_zero_loss_and_zero_gradients():
    b, h, w = 1, 4, 5
    d1 = torch.full((b, 1, h, w), -1.0, dtype=F64, requires_grad=True)
    d2 = torch.full((b, 1, h, w), float("nan"), dtype=F64, requires_grad=True)
    rot = torch.zeros(b, 3, dtype=F64, requires_grad=True)
    img = torch.rand(b, 3, h, w, dtype=F64)
    loss, n = photometric_consistency(img, img, d1, d2, dyadic_K(b), rot, rot, rot, rot)
    assert int(n) == 0 and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(d1.grad, torch.zeros_like(d1)) and torch.equal(rot.grad, torch.zeros_like(rot))
    logits = torch.randn(b, 3, h, w, dtype=F64, requires_grad=True)
    loss, n = segmentation_consistency(logits, logits, d1, d2, dyadic_K(b), rot, rot, rot, rot)
    assert int(n) == 0 and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ------------------------------------------------------------------------------------------------------ gradcheck
def _tiny(channels=3, **kw):
    return random_pair(1, 4, 5, channels=channels, dtype=F64, seed=3, **kw)


def test_photometric_gradcheck_l1_term():
    img1, img2, geo = split(_tiny(), "img")
    keys = [k for k in GRAD_KEYS if geo[k] is not None]

    def f(*ts):
        return photometric_consistency(img1, img2, **dict(geo, **dict(zip(keys, ts))), ssim_weight=0.0)[0]

    assert torch.autograd.gradcheck(f, tuple(geo[k] for k in keys), fast_mode=True)


def test_photometric_gradcheck_with_frozen_ssim_weights():
    # the depth-proximity weights are stop-gradient: freeze them so finite differences see the same function
    img1, img2, geo = split(_tiny(), "img")
    keys = [k for k in GRAD_KEYS if geo[k] is not None]
    weights = (torch.rand(1, 1, 4, 5, dtype=F64), torch.rand(1, 1, 4, 5, dtype=F64))

    def f(*ts):
        return photometric_consistency_reference(img1, img2, **dict(geo, **dict(zip(keys, ts))),
                                                 proximity_weights=weights)[0]

    assert torch.autograd.gradcheck(f, tuple(geo[k] for k in keys), fast_mode=True)


def test_segmentation_gradcheck():
    l1, l2, geo = split(_tiny(channels=4), "logits")
    l1.requires_grad_(True)
    l2.requires_grad_(True)

    def f(a, b):
        return segmentation_consistency(a, b, **geo)[0]

    assert torch.autograd.gradcheck(f, (l1, l2))


def test_segmentation_no_gradient_through_geometry():
    l1, l2, geo = split(_tiny(channels=4), "logits")
    l1.requires_grad_(True)
    segmentation_consistency(l1, l2, **geo)[0].backward()
    assert l1.grad is not None and l1.grad.abs().sum() > 0
    assert all(geo[k].grad is None for k in GRAD_KEYS if geo[k] is not None)


def test_modules_match_functional():
    img1, img2, geo = split(_tiny(), "img")
    a = PhotometricConsistency(rgb_weight=0.5, ssim_weight=2.0)(img1, img2, **geo)
    b = photometric_consistency(img1, img2, **geo, rgb_weight=0.5, ssim_weight=2.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    l1, l2, geo = split(_tiny(channels=4), "logits")
    assert torch.equal(SegmentationConsistency()(l1, l2, **geo)[0], segmentation_consistency(l1, l2, **geo)[0])


# ----------------------------------------------------------------------------------------------------- bad input
def _bad_cases():
    def base():
        return split(random_pair(2, 5, 6, dtype=torch.float32, requires_grad=False), "img")

    def case(name, mutate, exc, match):
        return pytest.param(mutate, exc, match, id=name)

    return [
        case("depth1-3d", lambda i1, i2, g: g.update(depth1=g["depth1"][:, 0]), ValueError, "depth1"),
        case("depth2-channels", lambda i1, i2, g: g.update(depth2=g["depth2"].expand(2, 2, 5, 6)), ValueError,
             "depth2"),
        case("K-shape", lambda i1, i2, g: g.update(K=g["K"][:, :2]), ValueError, "K"),
        case("K-bottom-row", lambda i1, i2, g: g["K"].__setitem__((slice(None), 2, 0), 0.5), ValueError, "K"),
        case("rot-shape", lambda i1, i2, g: g.update(rot_2to1=torch.zeros(2, 4)), ValueError, "rot_2to1"),
        case("trans-batch", lambda i1, i2, g: g.update(trans_1to2=torch.zeros(3, 3)), ValueError, "trans_1to2"),
        case("motion-size", lambda i1, i2, g: g.update(obj_motion_1to2=torch.zeros(2, 3, 5, 7)), ValueError,
             "obj_motion_1to2"),
        case("movable-dtype", lambda i1, i2, g: g.update(movable2=torch.ones(2, 1, 5, 6, dtype=torch.int64)),
             TypeError, "movable2"),
        case("depth-int", lambda i1, i2, g: g.update(depth1=torch.ones(2, 1, 5, 6, dtype=torch.int32)), TypeError,
             "depth1"),
        case("too-small", lambda i1, i2, g: g.update(depth1=torch.ones(2, 1, 1, 6), depth2=torch.ones(2, 1, 1, 6),
                                                     obj_motion_1to2=None, obj_motion_2to1=None, movable1=None,
                                                     movable2=None),
             ValueError, "H >= 2"),
    ]


@pytest.mark.parametrize("mutate,exc,match", _bad_cases())
def test_bad_inputs_raise_naming_the_argument(mutate, exc, match):
    img1, img2, geo = split(random_pair(2, 5, 6, dtype=torch.float32, requires_grad=False), "img")
    geo["K"] = geo["K"].clone()
    mutate(img1, img2, geo)
    with pytest.raises(exc, match=match):
        photometric_consistency(img1, img2, **geo)


def test_bad_frames_and_options_raise_naming_the_argument():
    img1, img2, geo = split(random_pair(2, 5, 6, dtype=torch.float32, requires_grad=False), "img")
    with pytest.raises(ValueError, match="img2"):
        photometric_consistency(img1, img2[:, :2], **geo)
    with pytest.raises(TypeError, match="img1"):
        photometric_consistency((img1 * 255).to(torch.uint8), img2, **geo)
    with pytest.raises(ValueError, match="impl"):
        photometric_consistency(img1, img2, **geo, impl="cuda")
    with pytest.raises(ValueError, match="ssim_weight"):
        photometric_consistency(img1, img2, **geo, ssim_weight=-1.0)
    with pytest.raises(ValueError, match="occlusion_rtol"):
        segmentation_consistency(img1, img2, **geo, occlusion_rtol=float("nan"))
    with pytest.raises(ValueError, match="logits2"):
        segmentation_consistency(img1, torch.zeros(2, 3, 5, 7), **geo)
    with pytest.raises(ValueError, match="depth1"):
        warp_coords(geo["depth1"][0], geo["K"], geo["rot_1to2"], geo["trans_1to2"])

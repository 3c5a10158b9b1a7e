"""Reference depth → normals consistency loss (Taskology supp. §7) against analytic cases and an independent loop.

Analytic cases: a plane n·X = d seen through K has depth z = d / (n · K⁻¹(j, i, 1)) at pixel (i, j), and its normal
from depth must be n (facing the camera) wherever valid; a fronto-parallel wall gives (0, 0, −1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_taskology.losses.checks import check_shape
from hpc_taskology.losses.depth_normals import (
    DepthNormalConsistency,
    depth_normal_consistency,
    depth_normal_consistency_reference,
    normals_from_depth,
)

F64 = torch.float64

def intrinsics(B, H, W, fx=40.0, fy=36.0, cx=None, cy=None, dtype=F64):
    cx = (W - 1) / 2 + 0.7 if cx is None else cx
    cy = (H - 1) / 2 - 0.4 if cy is None else cy
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=dtype)
    return K.repeat(B, 1, 1)

def rays(K, H, W):
    """(B, 3, H, W) K⁻¹ (j, i, 1) with pixel centres at integer coordinates (written independently of the module)."""
    j, i = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pix = np.stack([j, i, np.ones_like(j)], 0).reshape(3, -1)
    out = [np.linalg.inv(k.numpy().astype(np.float64)) @ pix for k in K]
    return torch.tensor(np.stack(out), dtype=F64).reshape(len(K), 3, H, W)

def plane_depth(normal, d, K, H, W):
    """Depth of the plane {X : normal · X = d} (normal facing the camera, d < 0) at every pixel."""
    a = rays(K, H, W)
    return d / (normal.view(-1, 3, 1, 1) * a).sum(1, keepdim=True)

def unit(v):
    v = torch.as_tensor(v, dtype=F64)
    return v / v.norm(dim=-1, keepdim=True)

# ------------------------------------------------------------------------------------------------ analytic cases
@pytest.mark.parametrize("window", [1, 3, 5])
def test_plane_gives_its_normal(window):
    H, W = 17, 23
    normal = unit([[0.3, -0.2, -1.0], [-0.5, 0.4, -0.8]])
    K = torch.cat([intrinsics(1, H, W), intrinsics(1, H, W, fx=55.0, fy=50.0, cx=9.0, cy=10.0)])
    depth = plane_depth(normal, torch.tensor([-4.0, -7.5], dtype=F64).view(2, 1, 1, 1), K, H, W)
    assert bool((depth > 0).all())
    n, valid = normals_from_depth(depth, K, beta=0.2, window=window)
    inner = valid[:, :, 3:-3, 3:-3]
    assert bool(inner.all()), "every pixel away from the border must be valid on a smooth plane"
    err = (n - normal.view(2, 3, 1, 1)).abs().amax(1, keepdim=True)
    assert float(err[valid].max()) < 1e-9
    # unit length and facing the camera: n · r <= 0 for the back-projected point r
    assert torch.allclose(n.norm(dim=1, keepdim=True)[valid], torch.ones((), dtype=F64))
    r = depth * rays(K, H, W)
    assert bool(((n * r).sum(1, keepdim=True)[valid] < 0).all())

@pytest.mark.parametrize("window,expected", [(1, "interior"), (3, "all")])
def test_fronto_parallel_wall_faces_camera(window, expected):
    H, W = 9, 12
    K = intrinsics(1, H, W)
    depth = torch.full((1, 1, H, W), 3.0, dtype=F64)
    n, valid = normals_from_depth(depth, K, window=window)
    want = (H - 2) * (W - 2) if expected == "interior" else H * W  # window 1: borders have no central difference
    assert int(valid.sum()) == want
    assert torch.allclose(n.permute(0, 2, 3, 1)[valid[:, 0]], torch.tensor([0.0, 0.0, -1.0], dtype=F64))
    if window == 1:
        assert not bool(valid[0, 0, 0].any() or valid[0, 0, -1].any() or valid[0, 0, :, 0].any())

def naive_normals(z, K, beta, N):
    """Eqs. 10–17 written as plain loops over pixels (independent of the vectorised reference)."""
    H, W = z.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    def r(i, j):
        return z[i, j] * np.array([(j - cx) / fx, (i - cy) / fy, 1.0])

    def ok(i, j):
        return np.isfinite(z[i, j]) and z[i, j] > 0

    dx = np.zeros((H, W, 3))
    dy = np.zeros((H, W, 3))
    for i in range(1, H - 1):
        for j in range(1, W - 1):
            if not all(ok(a, b) for a, b in [(i, j), (i, j - 1), (i, j + 1), (i - 1, j), (i + 1, j)]):
                continue
            if abs(z[i, j + 1] - z[i, j - 1]) < beta * z[i, j] and abs(z[i + 1, j] - z[i - 1, j]) < beta * z[i, j]:
                dx[i, j] = r(i, j + 1) - r(i, j - 1)
                dy[i, j] = r(i + 1, j) - r(i - 1, j)
    n = np.zeros((H, W, 3))
    valid = np.zeros((H, W), bool)
    h = N // 2
    for i in range(H):
        for j in range(W):
            sx = np.zeros(3)
            sy = np.zeros(3)
            for a in range(i - h, i + h + 1):
                for b in range(j - h, j + h + 1):
                    if 0 <= a < H and 0 <= b < W:
                        sx += dx[a, b]
                        sy += dy[a, b]
            c = np.cross(sy / N**2, sx / N**2)
            if ok(i, j) and np.linalg.norm(c) > 1e-3 * np.linalg.norm(sx / N**2) * np.linalg.norm(sy / N**2):
                n[i, j] = c / np.linalg.norm(c)
                valid[i, j] = True
    return n, valid

@pytest.mark.parametrize("window", [3, 5])
def test_window_average_matches_loop_implementation(window):
    H, W = 9, 11
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    z = 2.0 + 0.1 * torch.sin(xx / 3.0) + 0.08 * torch.cos(yy / 2.5) + 0.01 * torch.rand(H, W, generator=g, dtype=F64)
    z[4, 6:] += 0.8  # a step: masked derivatives inside some windows
    z[2, 2] = float("nan")
    K = intrinsics(1, H, W)
    n, valid = normals_from_depth(z.view(1, 1, H, W), K, beta=0.05, window=window)
    n_loop, v_loop = naive_normals(z.numpy(), K[0].numpy(), 0.05, window)
    assert np.array_equal(valid[0, 0].numpy(), v_loop)
    np.testing.assert_allclose(n[0].permute(1, 2, 0).numpy(), n_loop, atol=1e-12)
    # the average really changes the result on a curved surface
    n1, v1 = normals_from_depth(z.view(1, 1, H, W), K, beta=0.05, window=1)
    both = (v1 & valid)[0, 0]
    assert float((n1 - n)[0].permute(1, 2, 0)[both].abs().max()) > 1e-3

def test_beta_masks_a_depth_step():
    H, W = 10, 16
    K = intrinsics(1, H, W)
    depth = torch.full((1, 1, H, W), 2.0, dtype=F64)
    depth[..., 8:] = 3.0  # a 50 % jump between columns 7 and 8
    wall = torch.tensor([0.0, 0.0, -1.0], dtype=F64)
    n, valid = normals_from_depth(depth, K, beta=0.05, window=1)
    # columns 7 and 8 straddle the step: their central differences jump by 1 m > 0.05 z, so they are invalid
    assert not bool(valid[..., 7].any() or valid[..., 8].any())
    assert int(valid.sum()) == (H - 2) * (W - 2 - 2)
    n3, valid3 = normals_from_depth(depth, K, beta=0.05, window=3)
    assert bool(valid3.all())
    assert torch.allclose(n3.permute(0, 2, 3, 1)[valid3[:, 0]], wall, atol=1e-12)
    # without the mask (β huge) the step tilts the normals next to it
    n_nomask, v_nomask = normals_from_depth(depth, K, beta=10.0, window=3)
    assert float((n_nomask[..., 7] - wall.view(1, 3, 1)).abs().max()) > 0.1

# ------------------------------------------------------------------------------------------------------- the loss
def wall_and_normals(B=2, H=10, W=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = intrinsics(B, H, W)
    depth = (2.0 + 0.05 * torch.rand(B, 1, H, W, generator=g, dtype=F64))
    normals = torch.randn(B, 3, H, W, generator=g, dtype=F64)
    return depth, normals, K

def test_loss_zero_for_matching_normals_and_scale_invariant():
    H, W = 12, 15
    normal = unit([[0.2, 0.1, -1.0]])
    K = intrinsics(1, H, W)
    depth = plane_depth(normal, torch.tensor(-3.0, dtype=F64), K, H, W)
    pred = normal.view(1, 3, 1, 1).expand(1, 3, H, W) * 2.5  # not unit: the loss normalises
    loss, n_valid = depth_normal_consistency(depth, pred, K)
    assert abs(float(loss)) < 1e-12 and int(n_valid) == H * W
    # opposite normals: cosine distance 2
    loss, _ = depth_normal_consistency(depth, -pred, K)
    assert abs(float(loss) - 2.0) < 1e-12
    # perpendicular: 1
    perp = torch.linalg.cross(normal, unit([[1.0, 0.0, 0.0]])).view(1, 3, 1, 1).expand(1, 3, H, W)
    loss, _ = depth_normal_consistency(depth, perp, K)
    assert abs(float(loss) - 1.0) < 1e-12

def test_loss_is_mean_cosine_distance_over_valid_pixels():
    depth, normals, K = wall_and_normals()
    nd, vd = normals_from_depth(depth, K)
    nhat = normals / normals.norm(dim=1, keepdim=True)
    expected = (1 - (nd * nhat).sum(1, keepdim=True))[vd].mean()
    loss, n_valid = depth_normal_consistency(depth, normals, K)
    assert int(n_valid) == int(vd.sum())
    assert torch.allclose(loss, expected)
    extra = torch.zeros_like(vd)
    extra[..., :, :6] = True
    loss2, n2 = depth_normal_consistency(depth, normals, K, valid=extra)
    assert int(n2) == int((vd & extra).sum())
    assert torch.allclose(loss2, (1 - (nd * nhat).sum(1, keepdim=True))[vd & extra].mean())

@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_invalid_depth_pixels_are_masked_counted_and_finite(bad):
    depth, normals, K = wall_and_normals()
    depth[0, 0, 4, 5] = bad
    depth[1, 0, 2, 8] = bad
    normals[1, :, 6, 3] = float("nan")
    depth.requires_grad_()
    normals.requires_grad_()
    loss, n_valid = depth_normal_consistency(depth, normals, K, window=3)
    # the two bad-depth pixels and the NaN-normal pixel are the only invalid ones (the windows keep others valid)
    assert int(n_valid) == depth.numel() - 3
    loss.backward()
    assert torch.isfinite(loss)
    assert bool(torch.isfinite(depth.grad).all() and torch.isfinite(normals.grad).all())
    assert float(depth.grad[0, 0, 4, 5]) == 0.0 and float(depth.grad[1, 0, 2, 8]) == 0.0
    assert float(normals.grad[1, :, 6, 3].abs().max()) == 0.0
    assert float(depth.grad.abs().max()) > 0 and float(normals.grad.abs().max()) > 0

def test_zero_predicted_normal_is_eps_safe():
    depth, normals, K = wall_and_normals(B=1)
    normals[0, :, 4, 4] = 0.0
    normals.requires_grad_()
    loss, n_valid = depth_normal_consistency(depth, normals, K)
    loss.backward()
    assert int(n_valid) == depth.numel()  # a zero normal is a (bad) prediction, not an invalid pixel
    assert bool(torch.isfinite(normals.grad).all())
    # cos = 0 there, and the gradient is that of n / 1e-6: −n̂_d / (1e-6 · n_valid)
    nd, _ = normals_from_depth(depth, K)
    assert torch.allclose(normals.grad[0, :, 4, 4], -nd[0, :, 4, 4] / (1e-6 * int(n_valid)))


def test_no_valid_pixel_gives_zero_loss_and_zero_gradient():
    depth, normals, K = wall_and_normals(B=1)
    depth = torch.zeros_like(depth).requires_grad_()
    normals = normals.requires_grad_()
    loss, n_valid = depth_normal_consistency(depth, normals, K)
    assert int(n_valid) == 0 and float(loss.detach()) == 0.0
    loss.backward()
    assert float(depth.grad.abs().max()) == 0.0 and float(normals.grad.abs().max()) == 0.0
    assert n_valid.dtype == torch.int64 and loss.dim() == 0

def test_gradcheck_float64():
    H, W = 6, 7
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    depth = (2.0 + 0.1 * xx / W + 0.05 * torch.sin(yy) + 0.01 * torch.rand(H, W, generator=g, dtype=F64))
    depth = depth.view(1, 1, H, W).clone()
    depth[0, 0, 3, 2] = float("nan")  # stays NaN under the finite-difference perturbation: masked, zero gradient
    normals = torch.randn(1, 3, H, W, generator=g, dtype=F64)
    K = intrinsics(1, H, W, fx=8.0, fy=7.0)
    valid = torch.ones(1, 1, H, W, dtype=torch.bool)
    valid[0, 0, 0, 0] = False

    def f(z, n):
        return depth_normal_consistency(z, n, K, beta=0.2, window=3, valid=valid, impl="reference")[0]

    assert torch.autograd.gradcheck(f, (depth.requires_grad_(), normals.requires_grad_()), eps=1e-6, atol=1e-7)

    def g_normals(z):
        return normals_from_depth(z, K, beta=0.2, window=3)[0]

    assert torch.autograd.gradcheck(g_normals, (depth,), eps=1e-6, atol=1e-7)

def test_gradient_flows_only_where_asked():
    depth, normals, K = wall_and_normals(B=1)
    depth.requires_grad_()
    loss, _ = depth_normal_consistency(depth, normals, K)  # normals are a peer's stale constants
    loss.backward()
    assert depth.grad is not None and normals.grad is None

def test_module_matches_functional_and_holds_only_hyperparameters():
    depth, normals, K = wall_and_normals()
    m = DepthNormalConsistency(beta=0.1, window=3)
    assert list(m.parameters()) == [] and list(m.buffers()) == []
    assert "beta=0.1" in repr(m) and "window=3" in repr(m)
    a = m(depth, normals, K)
    b = depth_normal_consistency_reference(depth, normals, K, beta=0.1, window=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

# --------------------------------------------------------------------------------------------------------- errors
def _err(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)

def test_bad_inputs_raise_errors_naming_the_argument():
    depth, normals, K = wall_and_normals(B=2, H=8, W=9)
    f = depth_normal_consistency
    _err(ValueError, r"depth: expected shape \(B, 1, H, W\).*got \(2, 3, 8, 9\)", f, normals, normals, K)
    _err(ValueError, r"depth: expected shape .*4 dims", f, depth[0], normals, K)
    _err(ValueError, r"normals: expected shape \(B, 3, H, W\) = \(2, 3, 8, 9\), got \(2, 3, 8, 8\)",
         f, depth, normals[..., :8], K)
    _err(ValueError, r"normals: .*dim 0 'B': expected 2", f, depth, normals[:1], K)
    _err(ValueError, r"K: expected shape \(B, 3, 3\)", f, depth, normals, torch.eye(4, dtype=F64).repeat(2, 1, 1))
    _err(ValueError, r"K: .*dim 0 'B': expected 2 .*got 1", f, depth, normals, K[:1])
    _err(TypeError, r"expected one dtype, got depth=torch.float64, normals=torch.float32",
         f, depth, normals.float(), K)
    _err(TypeError, r"depth: expected dtype in", f, depth.long(), normals, K)
    _err(TypeError, r"depth: expected a torch.Tensor, got ndarray", f, depth.numpy(), normals, K)
    _err(TypeError, r"valid: expected dtype torch.bool, got torch.float64", f, depth, normals, K,
         valid=torch.ones_like(depth))
    _err(ValueError, r"valid: expected shape \(B, 1, H, W\)", f, depth, normals, K,
         valid=torch.ones(2, 1, 8, 8, dtype=torch.bool))
    bad_K = K.clone()
    bad_K[1, 1, 1] = -3.0
    _err(ValueError, r"K: expected focal lengths .*fy=-3.0 in batch 1", f, depth, normals, bad_K)
    bad_K = K.clone()
    bad_K[0, 0, 2] = float("nan")
    _err(ValueError, r"K: expected finite intrinsics", f, depth, normals, bad_K)
    _err(ValueError, r"window: expected an odd positive int, got 4", f, depth, normals, K, window=4)
    _err(TypeError, r"window: expected an int", f, depth, normals, K, window=3.0)
    _err(ValueError, r"beta: expected a finite number > 0, got 0", f, depth, normals, K, beta=0)
    _err(ValueError, r"impl: expected 'auto', 'triton' or 'reference', got 'cuda'", f, depth, normals, K, impl="cuda")
    _err(ValueError, r"depth: expected H >= 3 and W >= 3", f, depth[..., :2, :], normals[..., :2, :], K)
    _err(ValueError, r"window: expected an odd positive int", DepthNormalConsistency, 0.05, 2)

def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    depth, normals, K = wall_and_normals(B=1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _err(RuntimeError, r"impl='triton' needs CUDA tensors, or TRITON_INTERPRET=1", depth_normal_consistency,
         depth, normals, K, impl="triton")

def test_check_shape_binds_names_across_calls():
    sizes = check_shape(torch.zeros(2, 1, 4, 5), "depth", "B,1,H,W")
    assert sizes == {"B": 2, "H": 4, "W": 5}
    check_shape(torch.zeros(2, 3, 4, 5), "normals", "B,3,H,W", sizes)
    with pytest.raises(ValueError, match=r"normals: expected shape \(B, 3, H, W\) = \(2, 3, 4, 5\), got \(2, 3, 4, 6\)"):
        check_shape(torch.zeros(2, 3, 4, 6), "normals", "B,3,H,W", sizes)
    with pytest.raises(ValueError, match=r"x: expected shape .*dim 0: expected 3, got 2"):
        check_shape(torch.zeros(2), "x", "3")
    assert check_shape(torch.zeros(7, 3), "y", "*,3") == {}

"""Depth → surface-normal consistency loss (Taskology §3.2.3, supplementary §7, eqs. 10–18).

Normals are computed analytically from a depth map and compared with predicted normals by cosine distance.  This
module holds the **pure-torch reference** (the single oracle shared by the tests and the benchmarks), the functional
API that picks the fused Triton kernel (``hpc_taskology.kernels.depth_normals``) on CUDA and the reference elsewhere,
and the ``nn.Module`` wrapper holding only the hyperparameters β and N.

Conventions (every function here):

* ``depth``: (B, 1, H, W), metres, z along the optical axis (not the Euclidean ray length).
* ``K``: (B, 3, 3) pinhole intrinsics in pixels, ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; only fx, fy, cx, cy are
  read (no skew).  ``K`` receives no gradient.
* Pixel (row i, column j) has its centre at integer image coordinates (x = j, y = i); the top-left pixel centre is
  (0, 0).  So cx = (W − 1) / 2 puts the principal point at the image centre.
* Camera frame: OpenCV, x right, y down, z forward.  Normals are unit vectors in that frame and **face the camera**:
  n · r ≤ 0 on visible surfaces, a fronto-parallel wall has n = (0, 0, −1).

The maths (supp. §7; numbers are the paper's equations):

* (10) back-projection r_ij = z_ij K⁻¹ (j, i, 1)ᵀ.
* (11) central differences ∂x r_ij = r_i,j+1 − r_i,j−1, ∂y r_ij = r_i+1,j − r_i−1,j.  Pixels without both neighbours
  (the first/last row and column) have no derivative.
* (12, 13) validity V_ij = [|∂x z| < β z_ij] · [|∂y z| < β z_ij] (absolute value, which the paper's eq. 13 omits);
  additionally the depth at the pixel and at its four neighbours must be finite and > 0.
* (14) masked derivatives ∂r' = ∂r · V (implemented with ``where`` so NaN/Inf never propagate).
* (15) N×N box average of the masked derivatives, normalised by N² as the paper notes (zero padding outside the frame).
* (16) cross product.  The paper writes ∂x r × ∂y r, which in the OpenCV frame points *away* from the camera
  ((0, 0, +1) for a fronto-parallel wall); this code uses **n_d = ∂y r̄ × ∂x r̄** to face the camera (the project's
  convention, shared with the simulator and the evaluation).
* (17) normalise.  A pixel is invalid if its own depth is not finite and > 0, or if its averaged tangents are (nearly)
  parallel or zero: |∂y r̄ × ∂x r̄| ≤ ε_sin · |∂x r̄| · |∂y r̄| with ε_sin = 1e-3 (a window with no valid derivative has
  ∂r̄ = 0 and fails this test too).
* (18) cosine distance 1 − n̂_d · n̂_p averaged over the valid pixels.

Predicted normals n_p need not be unit length: the loss normalises them itself, n̂_p = n_p / max(|n_p|, 1e-6) (the
``torch.nn.functional.normalize`` rule), and the gradient is that of this normalisation.  Pixels whose predicted normal
is not finite are invalid.

Defaults β = 0.05 and N = 5: with β = 0.05 a central difference may change the depth by up to 5 % of the depth, which
keeps planes slanted up to atan(β f / 2) from fronto-parallel (≈ 80° at f = 240 px, a KITTI frame resized to
128×416) while rejecting occlusion boundaries where depth jumps by more than 5 %; a 5×5 window averages out the
pixel-level noise of predicted depth yet stays well below object size at 128×416.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (
    check_bool_mask,
    check_floating,
    check_intrinsics,
    check_positive,
    check_same_device_dtype,
    check_shape,
)

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_WINDOW",
    "SIN_EPS",
    "NORMAL_EPS",
    "normals_from_depth",
    "depth_normal_consistency",
    "depth_normal_consistency_reference",
    "DepthNormalConsistency",
]

DEFAULT_BETA = 0.05
DEFAULT_WINDOW = 5
SIN_EPS = 1e-3  # averaged tangents closer than ~0.06° to parallel give no normal
NORMAL_EPS = 1e-6  # n̂_p = n_p / max(|n_p|, NORMAL_EPS)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------------------- checks
def _check_hyper(beta, window) -> None:
    check_positive(beta, "beta")
    check_positive(window, "window", integer=True, odd=True)


def _check_depth_K(depth, K) -> dict[str, int]:
    sizes = check_shape(depth, "depth", "B,1,H,W")
    check_floating(depth, "depth", _DTYPES)
    check_intrinsics(K, "K", sizes)
    check_same_device_dtype(("depth", depth), ("K", K), dtype=False)
    if sizes["H"] < 3 or sizes["W"] < 3:
        raise ValueError(f"depth: expected H >= 3 and W >= 3 for central differences, got shape {tuple(depth.shape)}")
    return sizes


def _check_inputs(depth, normals, K, valid) -> None:
    sizes = _check_depth_K(depth, K)
    check_shape(normals, "normals", "B,3,H,W", sizes)
    check_floating(normals, "normals", _DTYPES)
    check_same_device_dtype(("depth", depth), ("normals", normals))
    if valid is not None:
        check_bool_mask(valid, "valid", "B,1,H,W", sizes)
        check_same_device_dtype(("depth", depth), ("valid", valid), dtype=False)


# ------------------------------------------------------------------------------------------------------- reference
def _rays(K: torch.Tensor, H: int, W: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """u_j = (j − cx) / fx with shape (B, 1, 1, W) and v_i = (i − cy) / fy with shape (B, 1, H, 1) (eq. 10)."""
    K = K.detach().to(dtype)
    fx, fy, cx, cy = (K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2])
    j = torch.arange(W, device=K.device, dtype=dtype)
    i = torch.arange(H, device=K.device, dtype=dtype)
    u = (j[None, :] - cx[:, None]) / fx[:, None]
    v = (i[None, :] - cy[:, None]) / fy[:, None]
    return u[:, None, None, :], v[:, None, :, None]


def _masked_tangents(depth: torch.Tensor, K: torch.Tensor, beta: float):
    """Eqs. 10–14: masked central differences ∂x r', ∂y r' (B, 3, H, W), the mask V and the depth-ok mask (B, 1, H, W)."""
    B, _, H, W = depth.shape
    ok = torch.isfinite(depth) & (depth > 0)
    z = torch.where(ok, depth, torch.zeros_like(depth))  # sanitised first: no NaN/Inf reaches autograd
    u, v = _rays(K, H, W, depth.dtype)
    r = torch.cat([z * u, z * v, z], dim=1)  # eq. 10, (B, 3, H, W)
    dx = F.pad(r[..., :, 2:] - r[..., :, :-2], (1, 1, 0, 0))  # eq. 11, zero on the first/last column
    dy = F.pad(r[..., 2:, :] - r[..., :-2, :], (0, 0, 1, 1))
    okp = F.pad(ok, (1, 1, 1, 1), value=False)
    ok5 = (okp[..., 1:-1, 1:-1] & okp[..., 1:-1, :-2] & okp[..., 1:-1, 2:]
           & okp[..., :-2, 1:-1] & okp[..., 2:, 1:-1])
    interior = torch.zeros(1, 1, H, W, dtype=torch.bool, device=depth.device)
    interior[..., 1:-1, 1:-1] = True
    V = ok5 & interior & (dx[:, 2:3].abs() < beta * z) & (dy[:, 2:3].abs() < beta * z)  # eqs. 12, 13
    zero = torch.zeros((), dtype=depth.dtype, device=depth.device)
    return torch.where(V, dx, zero), torch.where(V, dy, zero), V, ok  # eq. 14


def _normals_and_valid(depth, K, beta, window):
    dx, dy, _, ok = _masked_tangents(depth, K, beta)
    Dx = F.avg_pool2d(dx, window, stride=1, padding=window // 2, count_include_pad=True)  # eq. 15, / N²
    Dy = F.avg_pool2d(dy, window, stride=1, padding=window // 2, count_include_pad=True)
    n = torch.linalg.cross(Dy, Dx, dim=1)  # eq. 16, order swapped to face the camera
    nn2 = (n * n).sum(1, keepdim=True)
    thr = (SIN_EPS ** 2) * (Dx * Dx).sum(1, keepdim=True) * (Dy * Dy).sum(1, keepdim=True)
    valid = ok & (nn2 > thr)
    norm = torch.sqrt(torch.where(valid, nn2, torch.ones_like(nn2)))  # safe sqrt: no inf gradient at |n| = 0
    nd = torch.where(valid, n / norm, torch.zeros_like(n))  # eq. 17
    return nd, valid


def normals_from_depth(depth: torch.Tensor, K: torch.Tensor, beta: float = DEFAULT_BETA,
                       window: int = DEFAULT_WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface normals from a depth map (Taskology supp. §7, eqs. 10–17; pure torch, differentiable w.r.t. depth).

    Args:
        depth: (B, 1, H, W) depth in metres (z along the optical axis), H, W >= 3; float16/bfloat16/float32/float64.
            Pixels with depth <= 0, NaN or Inf are invalid and never produce NaN.
        K: (B, 3, 3) pinhole intrinsics in pixels (fx, fy > 0, finite), same device; no gradient flows to it.
        beta: relative depth-discontinuity threshold β of eq. 13 (|∂z| < β z), > 0.
        window: odd box size N of eq. 15, >= 1.

    Returns:
        ``(normals, valid)``: normals (B, 3, H, W) unit vectors in the OpenCV camera frame (x right, y down,
        z forward) facing the camera (a fronto-parallel wall gives (0, 0, −1)), zero where invalid; valid (B, 1, H, W)
        bool.  Pixel centres are at integer coordinates (x = column j, y = row i).

    Raises:
        ValueError: a shape is wrong (message names the argument, expected vs actual), H or W < 3, K not finite or
            fx/fy <= 0, beta <= 0 or window not an odd positive int; TypeError: not a tensor / not floating.
    """
    _check_hyper(beta, window)
    _check_depth_K(depth, K)
    return _normals_and_valid(depth, K, float(beta), int(window))


def depth_normal_consistency_reference(depth: torch.Tensor, normals: torch.Tensor, K: torch.Tensor,
                                       beta: float = DEFAULT_BETA, window: int = DEFAULT_WINDOW,
                                       valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch reference of :func:`depth_normal_consistency` (eqs. 10–18), the oracle for tests and benchmarks.

    Same arguments, returns and errors as :func:`depth_normal_consistency` (without ``impl``); gradients come from
    torch autograd.
    """
    _check_hyper(beta, window)
    _check_inputs(depth, normals, K, valid)
    return _reference(depth, normals, K, float(beta), int(window), valid)


def _reference(depth, normals, K, beta, window, valid):
    nd, vd = _normals_and_valid(depth, K, beta, window)
    finite = torch.isfinite(normals).all(1, keepdim=True)
    npred = torch.where(finite, normals, torch.zeros_like(normals))
    # max(|n|, eps) written as sqrt(max(|n|², eps²)): same values and gradients, no sqrt'(0)
    nhat = npred / torch.sqrt((npred * npred).sum(1, keepdim=True).clamp(min=NORMAL_EPS ** 2))
    mask = vd & finite
    if valid is not None:
        mask = mask & valid
    cos_dist = 1 - (nd * nhat).sum(1, keepdim=True)  # eq. 18
    n_valid = mask.sum()
    loss = torch.where(mask, cos_dist, torch.zeros_like(cos_dist)).sum() / n_valid.clamp(min=1).to(cos_dist.dtype)
    return loss, n_valid


# ------------------------------------------------------------------------------------------------------ functional
def _resolve_impl(impl: str, depth: torch.Tensor) -> str:
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"impl: expected 'auto', 'triton' or 'reference', got {impl!r}")
    if impl == "auto":
        return "triton" if depth.is_cuda else "reference"
    if impl == "triton" and not depth.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("impl='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before the kernels are "
                           f"imported to run on the CPU interpreter; got depth on {depth.device}")
    return impl


def depth_normal_consistency(depth: torch.Tensor, normals: torch.Tensor, K: torch.Tensor,
                             beta: float = DEFAULT_BETA, window: int = DEFAULT_WINDOW,
                             valid: torch.Tensor | None = None,
                             impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Depth–normal consistency loss: mean cosine distance between normals from depth and predicted normals.

    Taskology eq. 6 / supp. eqs. 10–18 (see the module docstring for every convention).  The depth task calls it with
    its own depth (requires grad) and a peer's stale normals (constants); the normals task with a peer's stale depth
    and its own normals; gradients flow to whichever of ``depth`` and ``normals`` require grad.

    Args:
        depth: (B, 1, H, W) depth in metres, z along the optical axis, H, W >= 3.  depth <= 0, NaN or Inf → invalid.
        normals: (B, 3, H, W) predicted normals in the OpenCV camera frame (x right, y down, z forward), facing the
            camera; any non-zero length (normalised here as n / max(|n|, 1e-6)); non-finite → invalid.  Same dtype
            and device as ``depth``.
        K: (B, 3, 3) pinhole intrinsics in pixels, pixel centres at integer coordinates; no gradient.
        beta: discontinuity threshold β (eq. 13), > 0.  Default 0.05 (see module docstring).
        window: odd box size N (eq. 15).  Default 5.
        valid: optional (B, 1, H, W) bool mask ANDed with the computed per-pixel mask (e.g. board coverage or where
            depth was measured).
        impl: ``"auto"`` (Triton on CUDA tensors, reference elsewhere), ``"triton"`` (forced; on CPU only under
            ``TRITON_INTERPRET=1``) or ``"reference"``.

    Returns:
        ``(loss, n_valid)``: loss a 0-dim tensor in the dtype of ``depth`` = Σ_valid (1 − n̂_d·n̂_p) / max(n_valid, 1)
        (0 with zero gradients when no pixel is valid); n_valid a 0-dim int64 tensor counting the valid pixels.

    Raises:
        ValueError: wrong shapes (naming the argument, expected vs actual), H or W < 3, bad K, beta or window, or an
            unknown ``impl``; TypeError: non-tensor, non-floating, dtype mismatch or non-bool ``valid``;
        RuntimeError: ``impl="triton"`` on CPU without ``TRITON_INTERPRET=1``.
    """
    _check_hyper(beta, window)
    _check_inputs(depth, normals, K, valid)
    if _resolve_impl(impl, depth) == "reference":
        return _reference(depth, normals, K, float(beta), int(window), valid)
    from hpc_taskology.kernels.depth_normals import depth_normal_consistency_triton

    return depth_normal_consistency_triton(depth, normals, K, float(beta), int(window), valid)


class DepthNormalConsistency(nn.Module):
    """Depth–normal consistency loss module (Taskology eq. 6, supp. eqs. 10–18); holds only β and N.

    Args:
        beta: discontinuity threshold β (eq. 13), > 0.
        window: odd box size N (eq. 15).
        impl: ``"auto"``, ``"triton"`` or ``"reference"`` (see :func:`depth_normal_consistency`).

    Shape:
        - depth: (B, 1, H, W), metres, z along the optical axis; H, W >= 3.
        - normals: (B, 3, H, W), OpenCV camera frame, facing the camera, any non-zero length.
        - K: (B, 3, 3), pixels, pixel centres at integer coordinates.
        - valid: optional (B, 1, H, W) bool.
        - Output: ``(loss, n_valid)``, both 0-dim (loss in depth's dtype, n_valid int64).
    """

    def __init__(self, beta: float = DEFAULT_BETA, window: int = DEFAULT_WINDOW, impl: str = "auto") -> None:
        super().__init__()
        _check_hyper(beta, window)
        if impl not in ("auto", "triton", "reference"):
            raise ValueError(f"impl: expected 'auto', 'triton' or 'reference', got {impl!r}")
        self.beta, self.window, self.impl = float(beta), int(window), impl

    def forward(self, depth: torch.Tensor, normals: torch.Tensor, K: torch.Tensor,
                valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return depth_normal_consistency(depth, normals, K, self.beta, self.window, valid, self.impl)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, window={self.window}, impl={self.impl!r}"

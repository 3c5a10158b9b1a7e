"""Device-side warp shared by the fused photometric and segmentation kernels (one copy of eq. 9 in Triton).

Mirrors :func:`hpc_taskology.losses.warp.warp_coords` (the oracle) pixel by pixel: ``X1 = z K^-1 p``,
``X2 = R X1 + T + m dt``, ``P = K X2``; ``x' = P0 / P2``, ``y' = P1 / P2``, ``z' = P2``; valid where the source depth is
finite and > 0, ``P2`` finite and > 0 and ``(x', y')`` in ``[0, W-1) x [0, H-1)``.  Conventions as there: OpenCV camera
axes, pixel (i, j) centre at (x, y) = (j, i), ``(rot, trans)`` map frame-t camera coordinates to frame s.

Per batch item the host packs 32 float32 numbers (:func:`pack_warp_params`): ``K`` (9, row-major), ``K^-1`` (9),
``R`` (9, Rodrigues of the axis-angle, computed in torch) and ``T`` (3), padded to 32.  The backward returns
``dL/dR`` and ``dL/dT``; the chain through Rodrigues to the axis-angle runs in torch (:func:`rotation_grad`).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from hpc_taskology.losses.warp import axis_angle_to_matrix

N_PARAMS = 32


def interpreting() -> bool:
    """True when Triton runs on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def pixel_block(hw: int) -> int:
    """Pixels per program: large under the interpreter (~50 ms per program instance), 1024 on a GPU."""
    cap = 1 << 14 if interpreting() else 1024
    return max(16, min(triton.next_power_of_2(hw), cap))


def pack_warp_params(K: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(B, 32) float32: ``K`` (pixels), ``K^-1``, ``R(rot)`` (rot: (B, 3) axis-angle, radians), ``T`` (metres)."""
    b = K.shape[0]
    Kf = K.detach().float()
    R = axis_angle_to_matrix(rot.detach().float())
    pad = torch.zeros(b, N_PARAMS - 30, dtype=torch.float32, device=K.device)
    return torch.cat([Kf.reshape(b, 9), torch.linalg.inv(Kf).reshape(b, 9), R.reshape(b, 9),
                      trans.detach().float().reshape(b, 3), pad], 1).contiguous()


def rotation_grad(rot: torch.Tensor, grad_R: torch.Tensor) -> torch.Tensor:
    """``dL/d rot`` (B, 3) from ``dL/dR`` (B, 3, 3) through Rodrigues' formula (torch autograd, tiny)."""
    with torch.enable_grad():
        w = rot.detach().float().requires_grad_(True)
        (g,) = torch.autograd.grad(axis_angle_to_matrix(w), w, grad_R.float())
    return g.to(rot.dtype)


def movable_u8(movable: torch.Tensor | None) -> torch.Tensor | None:
    """Movable mask as contiguous uint8 0/1 (bool, or float > 0.5), or None."""
    if movable is None:
        return None
    m = movable if movable.dtype == torch.bool else movable > 0.5
    return m.contiguous().view(torch.uint8)


@triton.jit
def load_motion(om_ptr, mov_ptr, b, offs, inb, HW, HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr):
    """Per-pixel object motion ``m * dt`` (metres, 3 components; zeros without motion) and ``m`` (float 0/1)."""
    if HAS_MOTION:
        base = om_ptr + b * 3 * HW + offs
        dtx = tl.load(base, mask=inb, other=0.0).to(tl.float32)
        dty = tl.load(base + HW, mask=inb, other=0.0).to(tl.float32)
        dtz = tl.load(base + 2 * HW, mask=inb, other=0.0).to(tl.float32)
        if HAS_MASK:
            m = tl.load(mov_ptr + b * HW + offs, mask=inb, other=0).to(tl.float32)
            dtx = m * dtx
            dty = m * dty
            dtz = m * dtz
        else:
            m = tl.full(offs.shape, 1.0, tl.float32)
    else:
        dtx = tl.zeros(offs.shape, tl.float32)
        dty = tl.zeros(offs.shape, tl.float32)
        dtz = tl.zeros(offs.shape, tl.float32)
        m = tl.zeros(offs.shape, tl.float32)
    return dtx, dty, dtz, m


@triton.jit
def warp_pixels(prm, offs, inb, depth, W, H, dtx, dty, dtz):
    """Warp the pixels ``offs`` (flat i * W + j) of one batch item.

    Returns ``(x', y', z' = P2, valid, u0, u1, u2, zs)``: ``u = K^-1 p`` and ``zs`` the (safe) source depth, kept for
    the backward (``X1 = zs u``).
    """
    i = offs // W
    j = offs - i * W
    xf = j.to(tl.float32)
    yf = i.to(tl.float32)
    z_ok = inb & (depth > 0.0) & (depth < float("inf"))
    zs = tl.where(z_ok, depth, 1.0)
    u0 = tl.load(prm + 9) * xf + tl.load(prm + 10) * yf + tl.load(prm + 11)
    u1 = tl.load(prm + 12) * xf + tl.load(prm + 13) * yf + tl.load(prm + 14)
    u2 = tl.load(prm + 15) * xf + tl.load(prm + 16) * yf + tl.load(prm + 17)
    a0 = zs * u0
    a1 = zs * u1
    a2 = zs * u2
    X0 = tl.load(prm + 18) * a0 + tl.load(prm + 19) * a1 + tl.load(prm + 20) * a2 + tl.load(prm + 27) + dtx
    X1 = tl.load(prm + 21) * a0 + tl.load(prm + 22) * a1 + tl.load(prm + 23) * a2 + tl.load(prm + 28) + dty
    X2 = tl.load(prm + 24) * a0 + tl.load(prm + 25) * a1 + tl.load(prm + 26) * a2 + tl.load(prm + 29) + dtz
    P0 = tl.load(prm + 0) * X0 + tl.load(prm + 1) * X1 + tl.load(prm + 2) * X2
    P1 = tl.load(prm + 3) * X0 + tl.load(prm + 4) * X1 + tl.load(prm + 5) * X2
    P2 = tl.load(prm + 6) * X0 + tl.load(prm + 7) * X1 + tl.load(prm + 8) * X2
    ok = z_ok & (P2 > 0.0) & (P2 < float("inf"))
    P2s = tl.where(ok, P2, 1.0)
    x = P0 / P2s
    y = P1 / P2s
    valid = ok & (x >= 0.0) & (x < W - 1) & (y >= 0.0) & (y < H - 1)
    return x, y, P2, valid, u0, u1, u2, zs


@triton.jit
def bilinear_setup(x, y, valid, W):
    """Flat index of the top-left tap and the fractions ``fx``, ``fy`` (zeros at invalid pixels)."""
    xs = tl.where(valid, x, 0.0)
    ys = tl.where(valid, y, 0.0)
    x0 = tl.floor(xs)
    y0 = tl.floor(ys)
    idx = y0.to(tl.int32) * W + x0.to(tl.int32)
    return idx, xs - x0, ys - y0


@triton.jit
def gather4(ptr, idx, W, valid):
    """The four taps ``v00, v01, v10, v11`` around ``idx`` (float32; 0 at invalid pixels)."""
    v00 = tl.load(ptr + idx, mask=valid, other=0.0).to(tl.float32)
    v01 = tl.load(ptr + idx + 1, mask=valid, other=0.0).to(tl.float32)
    v10 = tl.load(ptr + idx + W, mask=valid, other=0.0).to(tl.float32)
    v11 = tl.load(ptr + idx + W + 1, mask=valid, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


@triton.jit
def lerp2(v00, v01, v10, v11, fx, fy):
    """Bilinear value, same formula and order as :func:`hpc_taskology.losses.warp.bilinear_sample`."""
    return (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11)


@triton.jit
def warp_backward(prm, gx, gy, x, y, P2, valid, u0, u1, u2, zs):
    """Chain ``dL/dx'``, ``dL/dy'`` back through ``P = K (R zs u + t)``.

    Returns ``(dz, dX0, dX1, dX2, X1_0, X1_1, X1_2)``: ``dL/dz`` of the source depth, ``dL/dX2`` (= ``dL/dt`` per pixel,
    which sums to ``dL/dT`` and gives ``dL/d dt = m dL/dX2``) and ``X1 = zs u`` for ``dL/dR = sum dX2 X1^T``; zeros at
    invalid pixels.
    """
    gx = tl.where(valid, gx, 0.0)
    gy = tl.where(valid, gy, 0.0)
    inv = 1.0 / tl.where(valid, P2, 1.0)
    dP0 = gx * inv
    dP1 = gy * inv
    dP2 = -(gx * x + gy * y) * inv
    dX0 = tl.load(prm + 0) * dP0 + tl.load(prm + 3) * dP1 + tl.load(prm + 6) * dP2
    dX1 = tl.load(prm + 1) * dP0 + tl.load(prm + 4) * dP1 + tl.load(prm + 7) * dP2
    dX2 = tl.load(prm + 2) * dP0 + tl.load(prm + 5) * dP1 + tl.load(prm + 8) * dP2
    # dL/dX1 = R^T dL/dX2;  dL/dz = <dL/dX1, u>
    dA0 = tl.load(prm + 18) * dX0 + tl.load(prm + 21) * dX1 + tl.load(prm + 24) * dX2
    dA1 = tl.load(prm + 19) * dX0 + tl.load(prm + 22) * dX1 + tl.load(prm + 25) * dX2
    dA2 = tl.load(prm + 20) * dX0 + tl.load(prm + 23) * dX1 + tl.load(prm + 26) * dX2
    dz = dA0 * u0 + dA1 * u1 + dA2 * u2
    return dz, dX0, dX1, dX2, zs * u0, zs * u1, zs * u2

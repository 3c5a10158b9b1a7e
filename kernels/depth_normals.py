"""Fused Triton kernels for the depth → normals consistency loss (Taskology supp. §7, eqs. 10–18).

Layout follows Liger-Kernel ``src/liger_kernel/ops/jsd.py``: ``@triton.jit`` kernels, plain launchers, and a
``torch.autograd.Function`` whose ``forward``/``backward`` are wrapped in :func:`ensure_contiguous`.  The maths and
every convention (pixel centres at integer coordinates, OpenCV camera frame, normals facing the camera
n_d = ∂y r̄ × ∂x r̄, masks, ε's) are those of the reference :mod:`hpc_taskology.losses.depth_normals`; the tests check
forward, n_valid and both gradients against it.

Forward — one fused pass (``_dn_fwd_kernel``): each program owns a BLOCK_H × BLOCK_W tile of pixels q; for each of the
N² window offsets it loads the depth at the 5-point stencil (halo N/2 + 1, cache hits after the first touch), forms
the masked central differences V·∂r (eqs. 10–14) and accumulates them (eq. 15); then cross product, normalisation,
cosine distance to the loaded normals, and a per-program partial sum of the loss and of the valid count (summed by
torch afterwards: deterministic, no atomics).  Full-resolution reads: depth, normals, optional mask; writes: none.

Backward — the chain rule, with q a pixel of the loss and p a pixel of the masked derivatives (s = upstream grad /
max(n_valid, 1), a_ij = ((j − cx)/fx, (i − cy)/fy, 1) the ray of eq. 10):

* per valid q: ∂L/∂m = −s n̂_p, ∂L/∂n̂_p = −s m, g_n = (I − m mᵀ) ∂L/∂m / |n|, and for n = D_y × D_x:
  g_Dx = g_n × D_y, g_Dy = D_x × g_n (from the triple product g·(a×b) = a·(b×g) = b·(g×a));
* the N×N box average is symmetric, so its transpose is the same box: g_∂x r'_p = V_p / N² · Σ_{q∈W(p)} g_Dx_q;
* the central differences give g_z_ij = a_ij · (g_∂x r'_i,j−1 − g_∂x r'_i,j+1 + g_∂y r'_i−1,j − g_∂y r'_i+1,j);
  the masks (V, validity) are step functions with zero gradient; K gets no gradient.

``_dn_bwd_tangent_kernel`` recomputes the window sums at q (nothing full-resolution is saved by the forward), writes
d normals and the 6-channel g_D/N² (B, 6, H, W) scratch in the compute dtype; ``_dn_bwd_depth_kernel`` applies the
transposed box + transposed central differences and writes d depth.  The g_D scratch (24 B/pixel written + read in
fp32) is the one full-resolution intermediate: fusing it away needs the box of the box at a halo of N + 1, which in
registers costs O(N⁴) recomputation per pixel.

Compute dtype: float64 for float64 inputs, float32 otherwise (bf16/fp16 are loaded and upcast; outputs are cast back).

Window loops: the rows of the window are a runtime loop (``range``), only the columns are unrolled
(``tl.static_range``).  Fully unrolled (N² = 25 offsets × 5 loads at N = 5), ptxas for sm_90 needed 255 registers per
thread plus up to 4.7 KB of spills per thread and 10-36 s per kernel variant; with the row loop: ~100-120 registers,
no spills, 1-3 s (``python tests/test_kernels_aot.py`` prints the figures).

Status: verified against the reference under ``TRITON_INTERPRET=1`` and compiled ahead of time for sm_90 (H100) by
tests/test_kernels_aot.py; the GPU tile (8×64, 8 warps) is untuned and no GPU timing has been taken yet
(``taskology bench kernels`` on a CUDA box does it).  Expected traffic per pixel in fp32: forward 16 B (depth +
normals), backward 16 B read + 16 B written + 48 B of g_D scratch; L1/L2 traffic is higher (N² shifted stencil loads
per pixel), so the forward is likely load-issue-bound rather than DRAM-bound.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from hpc_taskology.kernels.warp_common import interpreting
from hpc_taskology.losses.depth_normals import NORMAL_EPS, SIN_EPS

__all__ = [
    "ensure_contiguous",
    "depth_normals_forward",
    "depth_normals_backward",
    "DepthNormalConsistencyFunction",
    "depth_normal_consistency_triton",
]


def ensure_contiguous(fn):
    """Make every tensor argument contiguous before calling ``fn(ctx, ...)`` (Liger-Kernel ``ops/utils.py``)."""

    @functools.wraps(fn)
    def wrapper(ctx, *args, **kwargs):
        args = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
        kwargs = {k: (v.contiguous() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
        return fn(ctx, *args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------------------------- kernels
SIN_EPS_SQ: tl.constexpr = tl.constexpr(SIN_EPS * SIN_EPS)
NEPS: tl.constexpr = tl.constexpr(NORMAL_EPS)
INF: tl.constexpr = tl.constexpr(float("inf"))


@triton.jit
def _finite_pos(z):
    # finite and > 0 (NaN fails both comparisons)
    return (z > 0) & (z < INF)


@triton.jit
def _tangents_at(zb, ii, jj, H, W, fx, fy, cx, cy, beta):
    """Masked central differences V·∂x r, V·∂y r at pixels (ii, jj) (eqs. 10–14) and the mask V."""
    inter = (ii >= 1) & (ii < H - 1) & (jj >= 1) & (jj < W - 1)
    off = ii * W + jj
    zc = tl.load(zb + off, mask=inter, other=0.0).to(fx.dtype)
    zl = tl.load(zb + off - 1, mask=inter, other=0.0).to(fx.dtype)
    zr = tl.load(zb + off + 1, mask=inter, other=0.0).to(fx.dtype)
    zu = tl.load(zb + off - W, mask=inter, other=0.0).to(fx.dtype)
    zd = tl.load(zb + off + W, mask=inter, other=0.0).to(fx.dtype)
    ok = inter & _finite_pos(zc) & _finite_pos(zl) & _finite_pos(zr) & _finite_pos(zu) & _finite_pos(zd)
    dzx = zr - zl
    dzy = zd - zu
    v = ok & (tl.abs(dzx) < beta * zc) & (tl.abs(dzy) < beta * zc)
    jf = jj.to(fx.dtype)
    if_ = ii.to(fx.dtype)
    uc = (jf - cx) / fx
    ur = ((jf + 1) - cx) / fx
    ul = ((jf - 1) - cx) / fx
    vc = (if_ - cy) / fy
    vd = ((if_ + 1) - cy) / fy
    vu = ((if_ - 1) - cy) / fy
    # same operation order as the reference: r = (z u, z v, z), then differences of r
    dxx = tl.where(v, zr * ur - zl * ul, 0.0)
    dxy = tl.where(v, zr * vc - zl * vc, 0.0)
    dxz = tl.where(v, dzx, 0.0)
    dyx = tl.where(v, zd * uc - zu * uc, 0.0)
    dyy = tl.where(v, zd * vd - zu * vu, 0.0)
    dyz = tl.where(v, dzy, 0.0)
    return v, dxx, dxy, dxz, dyx, dyy, dyz


@triton.jit
def _deriv_valid(zb, ii, jj, H, W, beta, like):
    """Only the mask V of eqs. 12–13 at pixels (ii, jj), computed in the dtype of ``like``."""
    inter = (ii >= 1) & (ii < H - 1) & (jj >= 1) & (jj < W - 1)
    off = ii * W + jj
    zc = tl.load(zb + off, mask=inter, other=0.0).to(like.dtype)
    zl = tl.load(zb + off - 1, mask=inter, other=0.0).to(like.dtype)
    zr = tl.load(zb + off + 1, mask=inter, other=0.0).to(like.dtype)
    zu = tl.load(zb + off - W, mask=inter, other=0.0).to(like.dtype)
    zd = tl.load(zb + off + W, mask=inter, other=0.0).to(like.dtype)
    ok = inter & _finite_pos(zc) & _finite_pos(zl) & _finite_pos(zr) & _finite_pos(zu) & _finite_pos(zd)
    return ok & (tl.abs(zr - zl) < beta * zc) & (tl.abs(zd - zu) < beta * zc)


@triton.jit
def _normal_at(zb, nb, vb, ii, jj, H, W, HW, fx, fy, cx, cy, beta,
               HAS_VALID: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Window-averaged tangents (eq. 15), n = Dy × Dx (eq. 16), the validity of each q, and the loaded normals."""
    inframe = (ii < H) & (jj < W)
    sxx = tl.zeros((BLOCK_H, BLOCK_W), fx.dtype)
    sxy = sxx
    sxz = sxx
    syx = sxx
    syy = sxx
    syz = sxx
    for a in range(-HALF, HALF + 1):  # runtime loop over rows: unrolling all N² offsets spills (module doc)
        for b in tl.static_range(-HALF, HALF + 1):
            _, dxx, dxy, dxz, dyx, dyy, dyz = _tangents_at(zb, ii + a, jj + b, H, W, fx, fy, cx, cy, beta)
            sxx += dxx
            sxy += dxy
            sxz += dxz
            syx += dyx
            syy += dyy
            syz += dyz
    inv = 1.0 / ((2 * HALF + 1) * (2 * HALF + 1))
    Dxx = sxx * inv
    Dxy = sxy * inv
    Dxz = sxz * inv
    Dyx = syx * inv
    Dyy = syy * inv
    Dyz = syz * inv
    nx = Dyy * Dxz - Dyz * Dxy
    ny = Dyz * Dxx - Dyx * Dxz
    nz = Dyx * Dxy - Dyy * Dxx
    nn2 = nx * nx + ny * ny + nz * nz
    thr = (SIN_EPS_SQ * (Dxx * Dxx + Dxy * Dxy + Dxz * Dxz)) * (Dyx * Dyx + Dyy * Dyy + Dyz * Dyz)
    off = ii * W + jj
    zq = tl.load(zb + off, mask=inframe, other=0.0).to(fx.dtype)
    px = tl.load(nb + off, mask=inframe, other=0.0).to(fx.dtype)
    py = tl.load(nb + HW + off, mask=inframe, other=0.0).to(fx.dtype)
    pz = tl.load(nb + 2 * HW + off, mask=inframe, other=0.0).to(fx.dtype)
    finite = (tl.abs(px) < INF) & (tl.abs(py) < INF) & (tl.abs(pz) < INF)
    valid = inframe & _finite_pos(zq) & (nn2 > thr) & finite
    if HAS_VALID:
        valid = valid & (tl.load(vb + off, mask=inframe, other=0) != 0)
    px = tl.where(finite, px, 0.0)
    py = tl.where(finite, py, 0.0)
    pz = tl.where(finite, pz, 0.0)
    return valid, Dxx, Dxy, Dxz, Dyx, Dyy, Dyz, nx, ny, nz, nn2, px, py, pz



@triton.jit
def _dn_fwd_kernel(z_ptr, n_ptr, prm_ptr, v_ptr, loss_ptr, count_ptr, H, W,
                   HAS_VALID: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    bi = tl.program_id(2)
    ii = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    jj = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    HW = H * W
    b64 = bi.to(tl.int64)
    zb = z_ptr + b64 * HW
    nb = n_ptr + b64 * 3 * HW
    vb = v_ptr + b64 * HW
    fx = tl.load(prm_ptr + bi * 5)
    fy = tl.load(prm_ptr + bi * 5 + 1)
    cx = tl.load(prm_ptr + bi * 5 + 2)
    cy = tl.load(prm_ptr + bi * 5 + 3)
    beta = tl.load(prm_ptr + bi * 5 + 4)
    valid, Dxx, Dxy, Dxz, Dyx, Dyy, Dyz, nx, ny, nz, nn2, px, py, pz = _normal_at(
        zb, nb, vb, ii, jj, H, W, HW, fx, fy, cx, cy, beta, HAS_VALID, HALF, BLOCK_H, BLOCK_W)
    rn = 1.0 / tl.sqrt(tl.where(valid, nn2, 1.0))
    pn = tl.sqrt(px * px + py * py + pz * pz)
    rp = 1.0 / tl.maximum(pn, NEPS)
    cos = (nx * px + ny * py + nz * pz) * rn * rp
    contrib = tl.where(valid, 1.0 - cos, 0.0)
    pid = (bi * tl.num_programs(1) + pid_h) * tl.num_programs(0) + pid_w
    tl.store(loss_ptr + pid, tl.sum(tl.sum(contrib, axis=1), axis=0))
    tl.store(count_ptr + pid, tl.sum(tl.sum(valid.to(tl.int32), axis=1), axis=0))


@triton.jit
def _dn_bwd_tangent_kernel(z_ptr, n_ptr, prm_ptr, v_ptr, scale_ptr, gd_ptr, gn_ptr, H, W,
                           HAS_VALID: tl.constexpr, HALF: tl.constexpr, NEED_GD: tl.constexpr,
                           NEED_GN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    bi = tl.program_id(2)
    ii = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    jj = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    HW = H * W
    b64 = bi.to(tl.int64)
    zb = z_ptr + b64 * HW
    nb = n_ptr + b64 * 3 * HW
    vb = v_ptr + b64 * HW
    fx = tl.load(prm_ptr + bi * 5)
    fy = tl.load(prm_ptr + bi * 5 + 1)
    cx = tl.load(prm_ptr + bi * 5 + 2)
    cy = tl.load(prm_ptr + bi * 5 + 3)
    beta = tl.load(prm_ptr + bi * 5 + 4)
    s = tl.load(scale_ptr).to(fx.dtype)
    valid, Dxx, Dxy, Dxz, Dyx, Dyy, Dyz, nx, ny, nz, nn2, px, py, pz = _normal_at(
        zb, nb, vb, ii, jj, H, W, HW, fx, fy, cx, cy, beta, HAS_VALID, HALF, BLOCK_H, BLOCK_W)
    inframe = (ii < H) & (jj < W)
    off = ii * W + jj
    rn = 1.0 / tl.sqrt(tl.where(valid, nn2, 1.0))
    mx = nx * rn
    my = ny * rn
    mz = nz * rn
    pn = tl.sqrt(px * px + py * py + pz * pz)
    rp = 1.0 / tl.maximum(pn, NEPS)
    hx = px * rp
    hy = py * rp
    hz = pz * rp
    if NEED_GN:
        # d/dn̂_p of −s m·n̂_p is −s m; through n̂_p = n_p / max(|n_p|, eps)
        gx = -s * mx
        gy = -s * my
        gz = -s * mz
        hg = hx * gx + hy * gy + hz * gz
        big = pn > NEPS
        ox = tl.where(big, (gx - hx * hg) * rp, gx * rp)
        oy = tl.where(big, (gy - hy * hg) * rp, gy * rp)
        oz = tl.where(big, (gz - hz * hg) * rp, gz * rp)
        gnb = gn_ptr + b64 * 3 * HW
        tl.store(gnb + off, tl.where(valid, ox, 0.0).to(gn_ptr.dtype.element_ty), mask=inframe)
        tl.store(gnb + HW + off, tl.where(valid, oy, 0.0).to(gn_ptr.dtype.element_ty), mask=inframe)
        tl.store(gnb + 2 * HW + off, tl.where(valid, oz, 0.0).to(gn_ptr.dtype.element_ty), mask=inframe)
    if NEED_GD:
        gmx = -s * hx
        gmy = -s * hy
        gmz = -s * hz
        mg = mx * gmx + my * gmy + mz * gmz
        qx = (gmx - mx * mg) * rn
        qy = (gmy - my * mg) * rn
        qz = (gmz - mz * mg) * rn
        inv = 1.0 / ((2 * HALF + 1) * (2 * HALF + 1))
        # g_Dx = g_n × D_y ; g_Dy = D_x × g_n ; both divided by N² (the box average's factor)
        ax = tl.where(valid, (qy * Dyz - qz * Dyy) * inv, 0.0)
        ay = tl.where(valid, (qz * Dyx - qx * Dyz) * inv, 0.0)
        az = tl.where(valid, (qx * Dyy - qy * Dyx) * inv, 0.0)
        bx = tl.where(valid, (Dxy * qz - Dxz * qy) * inv, 0.0)
        by = tl.where(valid, (Dxz * qx - Dxx * qz) * inv, 0.0)
        bz = tl.where(valid, (Dxx * qy - Dxy * qx) * inv, 0.0)
        gdb = gd_ptr + b64 * 6 * HW
        tl.store(gdb + off, ax, mask=inframe)
        tl.store(gdb + HW + off, ay, mask=inframe)
        tl.store(gdb + 2 * HW + off, az, mask=inframe)
        tl.store(gdb + 3 * HW + off, bx, mask=inframe)
        tl.store(gdb + 4 * HW + off, by, mask=inframe)
        tl.store(gdb + 5 * HW + off, bz, mask=inframe)


@triton.jit
def _dn_bwd_depth_kernel(z_ptr, prm_ptr, gd_ptr, gz_ptr, H, W,
                         HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    bi = tl.program_id(2)
    ii = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    jj = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    HW = H * W
    b64 = bi.to(tl.int64)
    zb = z_ptr + b64 * HW
    gdb = gd_ptr + b64 * 6 * HW
    fx = tl.load(prm_ptr + bi * 5)
    fy = tl.load(prm_ptr + bi * 5 + 1)
    cx = tl.load(prm_ptr + bi * 5 + 2)
    cy = tl.load(prm_ptr + bi * 5 + 3)
    beta = tl.load(prm_ptr + bi * 5 + 4)
    zero = tl.zeros((BLOCK_H, BLOCK_W), fx.dtype)
    # transposed box: sums of g_Dx/N² over the windows centred at (i, j−1) [m] and (i, j+1) [p]
    xmx = zero
    xmy = zero
    xmz = zero
    xpx = zero
    xpy = zero
    xpz = zero
    for a in range(-HALF, HALF + 1):
        for c in tl.static_range(-HALF - 1, HALF + 2):
            r = ii + a
            k = jj + c
            m = (r >= 0) & (r < H) & (k >= 0) & (k < W)
            o = r * W + k
            gx = tl.load(gdb + o, mask=m, other=0.0)
            gy = tl.load(gdb + HW + o, mask=m, other=0.0)
            gz = tl.load(gdb + 2 * HW + o, mask=m, other=0.0)
            if c <= HALF - 1:
                xmx += gx
                xmy += gy
                xmz += gz
            if c >= -HALF + 1:
                xpx += gx
                xpy += gy
                xpz += gz
    # same for g_Dy/N² over the windows centred at (i−1, j) [m] and (i+1, j) [p]
    ymx = zero
    ymy = zero
    ymz = zero
    ypx = zero
    ypy = zero
    ypz = zero
    # here the runtime loop runs over columns (the row offset dr picks the sums, so it stays a constexpr); new names
    # (dc, dr): rebinding a, the runtime loop variable above, to a constexpr in a runtime loop does not compile
    for dc in range(-HALF, HALF + 1):
        for dr in tl.static_range(-HALF - 1, HALF + 2):
            r = ii + dr
            k = jj + dc
            m = (r >= 0) & (r < H) & (k >= 0) & (k < W)
            o = r * W + k
            gx = tl.load(gdb + 3 * HW + o, mask=m, other=0.0)
            gy = tl.load(gdb + 4 * HW + o, mask=m, other=0.0)
            gz = tl.load(gdb + 5 * HW + o, mask=m, other=0.0)
            if dr <= HALF - 1:
                ymx += gx
                ymy += gy
                ymz += gz
            if dr >= -HALF + 1:
                ypx += gx
                ypy += gy
                ypz += gz
    vl = _deriv_valid(zb, ii, jj - 1, H, W, beta, fx)
    vr = _deriv_valid(zb, ii, jj + 1, H, W, beta, fx)
    vu = _deriv_valid(zb, ii - 1, jj, H, W, beta, fx)
    vd = _deriv_valid(zb, ii + 1, jj, H, W, beta, fx)
    sx = tl.where(vl, xmx, 0.0) - tl.where(vr, xpx, 0.0) + tl.where(vu, ymx, 0.0) - tl.where(vd, ypx, 0.0)
    sy = tl.where(vl, xmy, 0.0) - tl.where(vr, xpy, 0.0) + tl.where(vu, ymy, 0.0) - tl.where(vd, ypy, 0.0)
    sz = tl.where(vl, xmz, 0.0) - tl.where(vr, xpz, 0.0) + tl.where(vu, ymz, 0.0) - tl.where(vd, ypz, 0.0)
    u = (jj.to(fx.dtype) - cx) / fx
    v = (ii.to(fx.dtype) - cy) / fy
    g = u * sx + v * sy + sz
    inframe = (ii < H) & (jj < W)
    tl.store(gz_ptr + b64 * HW + ii * W + jj, g.to(gz_ptr.dtype.element_ty), mask=inframe)


# ------------------------------------------------------------------------------------------------------- launchers
def _blocks(H: int, W: int, block: tuple[int, int] | None) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_W, num_warps): 8×64 tiles with 8 warps (2 pixels per thread) when compiled; on the interpreter
    one big tile (few program instances).  Chosen by the mode, not the device (as :func:`pixel_block`), so tools
    that trace the launchers on ``meta`` tensors (tests/test_kernels_aot.py) see the GPU configuration.

    8 warps rather than 4: at 4 pixels per thread ptxas needs ~150-180 registers per thread for the window sums
    (sm_90, ``python tests/test_kernels_aot.py``), at 2 pixels ~100-120 — twice the resident warps per SM."""
    if block is not None:
        bh, bw = block
        if bh & (bh - 1) or bw & (bw - 1):
            raise ValueError(f"block: expected powers of two, got {block}")
    elif not interpreting():
        bh, bw = 8, 64
    else:
        bh, bw = min(triton.next_power_of_2(H), 64), min(triton.next_power_of_2(W), 64)
    return bh, bw, (8 if bh * bw >= 512 else 4)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def make_params(K: torch.Tensor, beta: float, dtype: torch.dtype) -> torch.Tensor:
    """(B, 5) [fx, fy, cx, cy, β] in the compute dtype of ``dtype`` (β rounded to ``dtype`` as the reference does)."""
    cdt = _compute_dtype(dtype)
    K = K.detach().to(dtype).to(cdt)
    b = torch.full_like(K[:, 0, 0], float(beta)).to(dtype).to(cdt) if dtype != torch.float64 else \
        torch.full_like(K[:, 0, 0], float(beta))
    return torch.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], b], 1).contiguous()


def depth_normals_forward(depth, normals, params, valid_u8, window: int, block=None):
    """Launch the fused forward.  Returns (loss sum in the compute dtype, n_valid int64), both 0-dim."""
    B, _, H, W = depth.shape
    bh, bw, warps = _blocks(H, W, block)
    grid = (triton.cdiv(W, bw), triton.cdiv(H, bh), B)
    n_prog = grid[0] * grid[1] * grid[2]
    loss_part = torch.empty(n_prog, dtype=params.dtype, device=depth.device)
    count_part = torch.empty(n_prog, dtype=torch.int32, device=depth.device)
    has_valid = valid_u8 is not None
    _dn_fwd_kernel[grid](depth, normals, params, valid_u8 if has_valid else depth, loss_part, count_part, H, W,
                         HAS_VALID=has_valid, HALF=window // 2, BLOCK_H=bh, BLOCK_W=bw, num_warps=warps)
    return loss_part.sum(), count_part.sum(dtype=torch.int64)


def depth_normals_backward(depth, normals, params, valid_u8, scale, window: int, need_depth: bool,
                           need_normals: bool, block=None):
    """Launch the two backward kernels.  ``scale`` is a 1-element tensor g / max(n_valid, 1).

    Returns (d depth or None, d normals or None) in the dtypes of ``depth`` and ``normals``.
    """
    B, _, H, W = depth.shape
    bh, bw, warps = _blocks(H, W, block)
    grid = (triton.cdiv(W, bw), triton.cdiv(H, bh), B)
    has_valid = valid_u8 is not None
    gd = (torch.empty((B, 6, H, W), dtype=params.dtype, device=depth.device) if need_depth
          else torch.empty(0, dtype=params.dtype, device=depth.device))
    gn = torch.empty_like(normals) if need_normals else torch.empty(0, dtype=normals.dtype, device=depth.device)
    _dn_bwd_tangent_kernel[grid](depth, normals, params, valid_u8 if has_valid else depth, scale, gd, gn, H, W,
                                 HAS_VALID=has_valid, HALF=window // 2, NEED_GD=need_depth,
                                 NEED_GN=need_normals, BLOCK_H=bh, BLOCK_W=bw, num_warps=warps)
    gz = None
    if need_depth:
        gz = torch.empty_like(depth)
        _dn_bwd_depth_kernel[grid](depth, params, gd, gz, H, W, HALF=window // 2, BLOCK_H=bh, BLOCK_W=bw,
                                   num_warps=warps)
    return gz, (gn if need_normals else None)


class DepthNormalConsistencyFunction(torch.autograd.Function):
    """autograd Function over the fused kernels; inputs as :func:`depth_normal_consistency_triton` after checks.

    forward(depth (B,1,H,W), normals (B,3,H,W), params (B,5), valid_u8 (B,1,H,W) uint8 or None, window, block)
    → (loss 0-dim in depth's dtype, n_valid 0-dim int64, non-differentiable).
    """

    @staticmethod
    @ensure_contiguous
    def forward(ctx, depth, normals, params, valid_u8, window, block):
        total, n_valid = depth_normals_forward(depth, normals, params, valid_u8, window, block)
        loss = (total / n_valid.clamp(min=1).to(total.dtype)).to(depth.dtype)
        ctx.save_for_backward(depth, normals, params, valid_u8, n_valid)
        ctx.window, ctx.block = window, block
        ctx.mark_non_differentiable(n_valid)
        return loss, n_valid

    @staticmethod
    @ensure_contiguous
    def backward(ctx, grad_loss, grad_n_valid):
        depth, normals, params, valid_u8, n_valid = ctx.saved_tensors
        need_d, need_n = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_d or need_n):
            return None, None, None, None, None, None
        scale = (grad_loss.to(params.dtype) / n_valid.clamp(min=1).to(params.dtype)).reshape(1).contiguous()
        gz, gn = depth_normals_backward(depth, normals, params, valid_u8, scale, ctx.window, need_d, need_n,
                                        ctx.block)
        return gz, gn, None, None, None, None


def depth_normal_consistency_triton(depth: torch.Tensor, normals: torch.Tensor, K: torch.Tensor, beta: float,
                                    window: int, valid: torch.Tensor | None = None,
                                    block: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton path of :func:`hpc_taskology.losses.depth_normals.depth_normal_consistency` (inputs already checked).

    Args as there (depth (B,1,H,W) metres, normals (B,3,H,W), K (B,3,3) pixels, valid (B,1,H,W) bool or None);
    ``block`` = (BLOCK_H, BLOCK_W) powers of two overrides the tile (tests use small tiles to cross tile seams).
    Returns (loss 0-dim in depth's dtype, n_valid 0-dim int64).
    """
    params = make_params(K, beta, depth.dtype)
    valid_u8 = None if valid is None else valid.contiguous().view(torch.uint8)
    return DepthNormalConsistencyFunction.apply(depth, normals, params, valid_u8, int(window), block)

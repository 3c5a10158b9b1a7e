"""Fused Triton photometric consistency (Taskology eq. 3 with the warp of supp. eq. 9), forward and backward.

The loss, masks and conventions are those of the reference :mod:`hpc_taskology.losses.photometric` (the oracle the
tests compare against; read its docstring first).  Layout follows Liger-Kernel ``ops/jsd.py``: ``@triton.jit``
kernels, plain launchers, one ``torch.autograd.Function``.

Design (memory-bandwidth bound; per direction t -> s, every kernel one program per ``BLOCK`` pixels of one image):

1. ``_warp_fwd_kernel``: warp + validity + bilinear gather of ``I_s`` (3 channels) and ``z_s`` + occlusion test + L1,
   in one pass.  It writes the warped image (3 float32 / pixel), the squared depth mismatch ``d2`` (inf where not
   valid, 1 float) and ``keep`` (int8), plus per-program partial sums (L1, kept pixels, kept d2).
   The warped image is materialised rather than recomputed because the SSIM needs it at all 9 neighbours of a pixel
   (recomputing would be 9 warps and 36 gathers per output pixel), and because the SSIM weights need ``s2``, a
   per-image reduction over the whole frame, before any SSIM window can be evaluated — two passes are unavoidable.
2. ``_ssim_fwd_kernel``: weighted 3x3 SSIM over the interior windows from the warped image, ``I_t`` and ``d2``; writes
   per-program partial sums and, when a gradient is needed, 9 coefficients per pixel (alpha, beta, gamma per
   channel) such that ``dL_ssim/dx_k = (w_k + eps) (alpha x_k + beta y_k + gamma)`` summed over the windows that
   contain pixel k (derivation below).  This replaces a separate SSIM backward pass over the 3x3 moments.
3. ``_photometric_bwd_kernel``: recomputes the warp and the 4-tap gathers (needed anyway for dI'/dx'), gathers the
   coefficients of the 9 windows around each pixel, adds the L1 term, and chains through the bilinear weights and
   ``P = K (R z K^-1 p + T + m dt)`` to ``dL/dz`` (per pixel), ``dL/d dt`` (per pixel) and per-program partials of
   ``dL/dR`` (9) and ``dL/dT`` (3); those and ``dL/d rot`` (through Rodrigues, in torch) are reduced in torch —
   deterministic, no atomics (nothing is scattered: the images receive no gradient).

SSIM gradient (c1 = inf): ``S = N / D``, ``N = 2 sxy + c2``, ``D = sx + sy + c2``, moments with weights
``omega_k = (w_k + eps) / W_q``, ``W_q = sum_k (w_k + eps)``.  ``dS/dsx = -N / D^2 =: A``, ``dS/dsxy = 2 / D =: B``,
``dsx/dx_k = 2 omega_k (x_k - mu_x)``, ``dsxy/dx_k = omega_k (y_k - mu_y)``, so with ``G = dloss/dS`` of the window
(``-ssim_weight * avgpool(w) / 3 / 2`` inside the clip, 0 outside):
``dloss/dx_k = (w_k + eps) [ (2 G A / W_q) x_k + (G B / W_q) y_k + G (-2 A mu_x - B mu_y) / W_q ]``.
The depth-proximity weights ``w`` are stop-gradient (as in depth_and_motion_learning).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hpc_taskology.kernels.warp_common import (
    bilinear_setup,
    gather4,
    lerp2,
    load_motion,
    movable_u8,
    pack_warp_params,
    pixel_block,
    rotation_grad,
    warp_backward,
    warp_pixels,
)
from hpc_taskology.losses.photometric import (
    DEPTH_MISMATCH_FLOOR,
    RGB_WEIGHT,
    SSIM_C2,
    SSIM_WEIGHT,
    SSIM_WEIGHT_EPSILON,
)
from hpc_taskology.losses.warp import OCCLUSION_RTOL

__all__ = ["PhotometricConsistencyFunction", "photometric_consistency_triton", "photometric_direction_forward"]


@triton.jit
def _warp_fwd_kernel(img_t_ptr, img_s_ptr, depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr,
                     warped_ptr, d2_ptr, keep_ptr, part_ptr, H, W, n_blocks, rtol,
                     HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HW = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    prm = prm_ptr + b * 32
    depth = tl.load(depth_t_ptr + b * HW + offs, mask=inb, other=1.0).to(tl.float32)
    dtx, dty, dtz, m = load_motion(om_ptr, mov_ptr, b, offs, inb, HW, HAS_MOTION, HAS_MASK)
    x, y, zp, valid, u0, u1, u2, zs = warp_pixels(prm, offs, inb, depth, W, H, dtx, dty, dtz)
    idx, fx, fy = bilinear_setup(x, y, valid, W)

    a, b_, c, d = gather4(depth_s_ptr + b * HW, idx, W, valid)
    z2 = lerp2(a, b_, c, d, fx, fy)
    z2_ok = (z2 == z2) & (tl.abs(z2) < float("inf"))
    keep = valid & z2_ok & (zp < z2 * (1.0 + rtol))
    dz = z2 - zp
    dz2 = dz * dz
    d2 = tl.where(valid & (dz2 < float("inf")), dz2, float("inf"))  # NaN fails "<" too

    l1 = tl.zeros([BLOCK], tl.float32)
    for ch in tl.static_range(3):
        yt = tl.load(img_t_ptr + (b * 3 + ch) * HW + offs, mask=inb, other=0.0).to(tl.float32)
        a, b_, c, d = gather4(img_s_ptr + (b * 3 + ch) * HW, idx, W, valid)
        xw = tl.where(valid, lerp2(a, b_, c, d, fx, fy), yt)  # filler: frame t's own pixel
        tl.store(warped_ptr + (b * 3 + ch) * HW + offs, xw, mask=inb)
        l1 += tl.abs(xw - yt)
    tl.store(d2_ptr + b * HW + offs, d2, mask=inb)
    tl.store(keep_ptr + b * HW + offs, keep.to(tl.int8), mask=inb)
    part = part_ptr + (b * n_blocks + pid) * 3
    tl.store(part + 0, tl.sum(tl.where(keep, l1 / 3.0, 0.0), 0))
    tl.store(part + 1, tl.sum(keep.to(tl.float32), 0))
    tl.store(part + 2, tl.sum(tl.where(keep, d2, 0.0), 0))


@triton.jit
def _ssim_channel(warped_ptr, img_t_ptr, d2_ptr, offs, W, interior, sig2, ssim_weight,
                  C2: tl.constexpr, EPS: tl.constexpr):
    """Weighted 3x3 SSIM of one channel at the windows centred on ``offs``: (loss, alpha, beta, gamma)."""
    sw = tl.zeros(offs.shape, tl.float32)
    sx = tl.zeros(offs.shape, tl.float32)
    sy = tl.zeros(offs.shape, tl.float32)
    sxx = tl.zeros(offs.shape, tl.float32)
    syy = tl.zeros(offs.shape, tl.float32)
    sxy = tl.zeros(offs.shape, tl.float32)
    for di in tl.static_range(3):
        for dj in tl.static_range(3):
            o = offs + (di - 1) * W + (dj - 1)
            d2 = tl.load(d2_ptr + o, mask=interior, other=float("inf"))
            w = sig2 / (d2 + sig2)
            wpe = w + EPS
            xv = tl.load(warped_ptr + o, mask=interior, other=0.0)
            yv = tl.load(img_t_ptr + o, mask=interior, other=0.0).to(tl.float32)
            sw += w
            sx += wpe * xv
            sy += wpe * yv
            sxx += wpe * xv * xv
            syy += wpe * yv * yv
            sxy += wpe * xv * yv
    wq = sw + 9.0 * EPS
    mux = sx / wq
    muy = sy / wq
    vx = sxx / wq - mux * mux
    vy = syy / wq - muy * muy
    vxy = sxy / wq - mux * muy
    num = 2.0 * vxy + C2
    den = vx + vy + C2
    v = (1.0 - num / den) * 0.5
    avgw = sw / 9.0
    loss = tl.where(interior, avgw * tl.minimum(tl.maximum(v, 0.0), 1.0), 0.0)
    g = tl.where(interior & (v >= 0.0) & (v <= 1.0), -0.5 * ssim_weight * avgw / 3.0, 0.0)
    ga = g * (-num / (den * den)) / wq  # G A / W_q
    gb = g * (2.0 / den) / wq  # G B / W_q
    return loss, 2.0 * ga, gb, -2.0 * ga * mux - gb * muy


@triton.jit
def _ssim_fwd_kernel(warped_ptr, img_t_ptr, d2_ptr, sig2_ptr, coef_ptr, part_ptr, H, W, n_blocks, ssim_weight,
                     C2: tl.constexpr, EPS: tl.constexpr, STORE_COEF: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HW = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    i = offs // W
    j = offs - i * W
    interior = inb & (i >= 1) & (i < H - 1) & (j >= 1) & (j < W - 1)
    sig2 = tl.load(sig2_ptr + b)
    total = tl.zeros([BLOCK], tl.float32)
    for ch in tl.static_range(3):
        loss, al, be, ga = _ssim_channel(warped_ptr + (b * 3 + ch) * HW, img_t_ptr + (b * 3 + ch) * HW,
                                         d2_ptr + b * HW, offs, W, interior, sig2, ssim_weight, C2, EPS)
        total += loss
        if STORE_COEF:
            cp = coef_ptr + (b * 9 + ch * 3) * HW + offs
            tl.store(cp, al, mask=inb)
            tl.store(cp + HW, be, mask=inb)
            tl.store(cp + 2 * HW, ga, mask=inb)
    tl.store(part_ptr + b * n_blocks + pid, tl.sum(total, 0) / 3.0)


@triton.jit
def _photometric_bwd_kernel(img_t_ptr, img_s_ptr, depth_t_ptr, prm_ptr, om_ptr, mov_ptr, d2_ptr, keep_ptr,
                            coef_ptr, sig2_ptr, scale_ptr, ddepth_ptr, dom_ptr, part_ptr, H, W, n_blocks,
                            EPS: tl.constexpr, HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr,
                            BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HW = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    i = offs // W
    j = offs - i * W
    prm = prm_ptr + b * 32
    s_rgb = tl.load(scale_ptr + 0)  # upstream grad * rgb_weight / n_valid
    s_ssim = tl.load(scale_ptr + 1)  # upstream grad / n_valid (ssim_weight is in the coefficients)
    depth = tl.load(depth_t_ptr + b * HW + offs, mask=inb, other=1.0).to(tl.float32)
    dtx, dty, dtz, m = load_motion(om_ptr, mov_ptr, b, offs, inb, HW, HAS_MOTION, HAS_MASK)
    x, y, zp, valid, u0, u1, u2, zs = warp_pixels(prm, offs, inb, depth, W, H, dtx, dty, dtz)
    idx, fx, fy = bilinear_setup(x, y, valid, W)
    keep = tl.load(keep_ptr + b * HW + offs, mask=inb, other=0) != 0
    sig2 = tl.load(sig2_ptr + b)
    wpe = sig2 / (tl.load(d2_ptr + b * HW + offs, mask=inb, other=float("inf")) + sig2) + EPS

    gx = tl.zeros([BLOCK], tl.float32)
    gy = tl.zeros([BLOCK], tl.float32)
    # a runtime loop over channels: unrolled (3 x 31 loads per pixel), ptxas for sm_90 needed 255 registers and
    # ~600 B of spills per thread at BLOCK=1024 / 8 warps; as a loop 188 registers, no spills
    for ch in range(3):
        yt = tl.load(img_t_ptr + (b * 3 + ch) * HW + offs, mask=inb, other=0.0).to(tl.float32)
        v00, v01, v10, v11 = gather4(img_s_ptr + (b * 3 + ch) * HW, idx, W, valid)
        xw = lerp2(v00, v01, v10, v11, fx, fy)
        # sum the SSIM coefficients of the (up to) 9 windows containing this pixel
        ca = tl.zeros([BLOCK], tl.float32)
        cb = tl.zeros([BLOCK], tl.float32)
        cg = tl.zeros([BLOCK], tl.float32)
        for di in tl.static_range(3):
            for dj in tl.static_range(3):
                qi = i + (di - 1)
                qj = j + (dj - 1)
                qm = valid & (qi >= 1) & (qi < H - 1) & (qj >= 1) & (qj < W - 1)
                cp = coef_ptr + (b * 9 + ch * 3) * HW + offs + (di - 1) * W + (dj - 1)
                ca += tl.load(cp, mask=qm, other=0.0)
                cb += tl.load(cp + HW, mask=qm, other=0.0)
                cg += tl.load(cp + 2 * HW, mask=qm, other=0.0)
        diff = xw - yt
        sgn = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
        gI = s_ssim * wpe * (ca * xw + cb * yt + cg) + tl.where(keep, s_rgb * sgn / 3.0, 0.0)
        gx += gI * ((1 - fy) * (v01 - v00) + fy * (v11 - v10))
        gy += gI * ((1 - fx) * (v10 - v00) + fx * (v11 - v01))

    dz, dX0, dX1, dX2, X10, X11, X12 = warp_backward(prm, gx, gy, x, y, zp, valid, u0, u1, u2, zs)
    tl.store(ddepth_ptr + b * HW + offs, dz, mask=inb)
    if HAS_MOTION:
        tl.store(dom_ptr + b * 3 * HW + offs, m * dX0, mask=inb)
        tl.store(dom_ptr + b * 3 * HW + HW + offs, m * dX1, mask=inb)
        tl.store(dom_ptr + b * 3 * HW + 2 * HW + offs, m * dX2, mask=inb)
    part = part_ptr + (b * n_blocks + pid) * 12
    tl.store(part + 0, tl.sum(dX0 * X10, 0))
    tl.store(part + 1, tl.sum(dX0 * X11, 0))
    tl.store(part + 2, tl.sum(dX0 * X12, 0))
    tl.store(part + 3, tl.sum(dX1 * X10, 0))
    tl.store(part + 4, tl.sum(dX1 * X11, 0))
    tl.store(part + 5, tl.sum(dX1 * X12, 0))
    tl.store(part + 6, tl.sum(dX2 * X10, 0))
    tl.store(part + 7, tl.sum(dX2 * X11, 0))
    tl.store(part + 8, tl.sum(dX2 * X12, 0))
    tl.store(part + 9, tl.sum(dX0, 0))
    tl.store(part + 10, tl.sum(dX1, 0))
    tl.store(part + 11, tl.sum(dX2, 0))


# ------------------------------------------------------------------------------------------------------ launchers
def _launch_cfg(h: int, w: int):
    block = pixel_block(h * w)
    return block, triton.cdiv(h * w, block), (8 if block >= 1024 else 4)


def photometric_direction_forward(img_t, img_s, depth_t, depth_s, prm, obj_motion, movable, occlusion_rtol,
                                  ssim_weight, store_coef):
    """Forward of one direction t -> s.

    Args:
        img_t, img_s: (B, 3, H, W) contiguous.  depth_t, depth_s: (B, 1, H, W) contiguous, metres.
        prm: (B, 32) from :func:`pack_warp_params`.  obj_motion: (B, 3, H, W) or None.  movable: uint8 or None.

    Returns:
        ``(rgb_sum, ssim_sum, n_kept, state)``: 0-dim float32 sums (SSIM not yet weighted), 0-dim float64 count, and
        the tensors the backward needs: ``(d2, keep, coef, sig2)`` (``coef`` None unless ``store_coef``).
    """
    bsz, _, h, w = img_t.shape
    block, nblk, warps = _launch_cfg(h, w)
    dev = img_t.device
    warped = torch.empty(bsz, 3, h, w, dtype=torch.float32, device=dev)
    d2 = torch.empty(bsz, 1, h, w, dtype=torch.float32, device=dev)
    keep = torch.empty(bsz, 1, h, w, dtype=torch.int8, device=dev)
    part = torch.empty(bsz, nblk, 3, dtype=torch.float32, device=dev)
    has_motion = obj_motion is not None
    has_mask = has_motion and movable is not None
    dummy = depth_t  # never read when the constexpr flag is off
    _warp_fwd_kernel[(nblk, bsz)](
        img_t, img_s, depth_t, depth_s, prm, obj_motion if has_motion else dummy, movable if has_mask else dummy,
        warped, d2, keep, part, h, w, nblk, float(occlusion_rtol),
        HAS_MOTION=has_motion, HAS_MASK=has_mask, BLOCK=block, num_warps=warps)
    sums = part.double().sum(1)  # (B, 3); float64: the kept-pixel count exceeds float32's 2^24 at 32x384x1280
    sig2 = (sums[:, 2] / (sums[:, 1] + 1.0) + DEPTH_MISMATCH_FLOOR).float().contiguous()
    coef = torch.empty(bsz, 9, h, w, dtype=torch.float32, device=dev) if store_coef else d2
    part2 = torch.empty(bsz, nblk, dtype=torch.float32, device=dev)
    _ssim_fwd_kernel[(nblk, bsz)](
        warped, img_t, d2, sig2, coef, part2, h, w, nblk, float(ssim_weight),
        C2=SSIM_C2, EPS=SSIM_WEIGHT_EPSILON, STORE_COEF=store_coef, BLOCK=block, num_warps=warps)
    return (sums[:, 0].sum().float(), part2.double().sum().float(), sums[:, 1].sum(),
            (d2, keep, coef if store_coef else None, sig2))


def photometric_direction_backward(img_t, img_s, depth_t, prm, obj_motion, movable, state, scale):
    """Backward of one direction: ``(d depth_t (B,1,H,W) f32, d obj_motion (B,3,H,W) f32 or None, dR (B,3,3),
    dT (B,3))``; ``scale`` = float32 tensor ``[g * rgb_weight / n, g / n]``."""
    d2, keep, coef, sig2 = state
    bsz, _, h, w = img_t.shape
    block, nblk, warps = _launch_cfg(h, w)
    dev = img_t.device
    ddepth = torch.empty(bsz, 1, h, w, dtype=torch.float32, device=dev)
    has_motion = obj_motion is not None
    has_mask = has_motion and movable is not None
    dom = torch.empty(bsz, 3, h, w, dtype=torch.float32, device=dev) if has_motion else ddepth
    part = torch.empty(bsz, nblk, 12, dtype=torch.float32, device=dev)
    dummy = depth_t
    _photometric_bwd_kernel[(nblk, bsz)](
        img_t, img_s, depth_t, prm, obj_motion if has_motion else dummy, movable if has_mask else dummy,
        d2, keep, coef, sig2, scale, ddepth, dom, part, h, w, nblk,
        EPS=SSIM_WEIGHT_EPSILON, HAS_MOTION=has_motion, HAS_MASK=has_mask, BLOCK=block, num_warps=warps)
    red = part.sum(1)
    return ddepth, (dom if has_motion else None), red[:, :9].reshape(bsz, 3, 3), red[:, 9:]


class PhotometricConsistencyFunction(torch.autograd.Function):
    """Fused two-direction photometric consistency; returns ``(loss, n_valid)`` like the reference.

    Gradients: ``depth1``, ``depth2``, ``rot_*``, ``trans_*``, ``obj_motion_*``; ``None`` for the images, ``K``, the
    masks and the hyperparameters.  All kernel arithmetic is float32; gradients are cast to the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                obj_motion_1to2, obj_motion_2to1, movable1, movable2, rgb_weight, ssim_weight, occlusion_rtol):
        c = [None if t is None else t.contiguous() for t in
             (img1, img2, depth1, depth2, obj_motion_1to2, obj_motion_2to1)]
        img1, img2, depth1, depth2, om12, om21 = c
        mv1, mv2 = movable_u8(movable1), movable_u8(movable2)
        prm12 = pack_warp_params(K, rot_1to2, trans_1to2)
        prm21 = pack_warp_params(K, rot_2to1, trans_2to1)
        need = any(ctx.needs_input_grad[2:11])
        r12, s12, n12, st12 = photometric_direction_forward(img1, img2, depth1, depth2, prm12, om12, mv1,
                                                            occlusion_rtol, ssim_weight, need)
        r21, s21, n21, st21 = photometric_direction_forward(img2, img1, depth2, depth1, prm21, om21, mv2,
                                                            occlusion_rtol, ssim_weight, need)
        n = n12 + n21  # float64, exact
        inv_n = torch.where(n > 0, 1.0 / n.clamp(min=1.0), torch.zeros_like(n)).float()
        loss = (rgb_weight * (r12 + r21) + ssim_weight * (s12 + s21)) * inv_n
        n_valid = torch.round(n).to(torch.int64)
        ctx.mark_non_differentiable(n_valid)
        if need:
            ctx.save_for_backward(img1, img2, depth1, depth2, rot_1to2, rot_2to1, prm12, prm21, inv_n,
                                  *st12, *st21, om12, om21, mv1, mv2)
            ctx.rgb_weight = rgb_weight
            ctx.dtypes = tuple(None if t is None else t.dtype for t in
                               (depth1, depth2, rot_1to2, trans_1to2, rot_2to1, trans_2to1, om12, om21))
        return loss, n_valid

    @staticmethod
    def backward(ctx, grad_loss, _grad_n):
        saved = list(ctx.saved_tensors)
        img1, img2, depth1, depth2, rot12, rot21, prm12, prm21, inv_n = saved[:9]
        st12, st21 = saved[9:13], saved[13:17]
        om12, om21, mv1, mv2 = saved[17:21]  # None where absent (save_for_backward keeps the Nones)
        g = grad_loss.float() * inv_n
        scale = torch.stack([g * ctx.rgb_weight, g]).contiguous()
        dd1, dom12, dR12, dT12 = photometric_direction_backward(img1, img2, depth1, prm12, om12, mv1, st12, scale)
        dd2, dom21, dR21, dT21 = photometric_direction_backward(img2, img1, depth2, prm21, om21, mv2, st21, scale)
        dts = ctx.dtypes
        grads = [dd1.to(dts[0]), dd2.to(dts[1]), rotation_grad(rot12, dR12).to(dts[2]), dT12.to(dts[3]),
                 rotation_grad(rot21, dR21).to(dts[4]), dT21.to(dts[5]),
                 None if dom12 is None else dom12.to(dts[6]), None if dom21 is None else dom21.to(dts[7])]
        return (None, None, grads[0], grads[1], None, grads[2], grads[3], grads[4], grads[5], grads[6], grads[7],
                None, None, None, None, None)


def photometric_consistency_triton(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                                   obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None,
                                   rgb_weight: float = RGB_WEIGHT, ssim_weight: float = SSIM_WEIGHT,
                                   occlusion_rtol: float = OCCLUSION_RTOL):
    """Triton path of :func:`hpc_taskology.losses.photometric.photometric_consistency` (inputs not checked here;
    same arguments, conventions and returns).  Requires CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``."""
    return PhotometricConsistencyFunction.apply(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1,
                                                trans_2to1, obj_motion_1to2, obj_motion_2to1, movable1, movable2,
                                                float(rgb_weight), float(ssim_weight), float(occlusion_rtol))

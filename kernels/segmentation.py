"""Fused Triton segmentation-logit consistency (Taskology eq. 4 with the warp of supp. eq. 9), forward and backward.

The loss, masks and conventions are those of the reference :mod:`hpc_taskology.losses.segmentation` (the oracle;
read its docstring first).  Layout follows Liger-Kernel ``ops/jsd.py``: ``@triton.jit`` kernels, plain launchers,
one ``torch.autograd.Function``.

Per direction t -> s, one program per ``BLOCK`` pixels of one image:

* ``_seg_fwd_kernel``: warp + validity + bilinear gather of ``z_s`` (occlusion test) + for each class the 4-tap gather
  of ``l_s`` and the squared difference to ``l_t`` — one pass that reads each logit map once and writes only
  per-program partial sums (sum of kept squared errors, kept pixels).  Nothing per pixel is materialised.
* ``_seg_bwd_kernel``: recomputes the warp and the masks (cheaper than storing them: the geometry is 5 floats per pixel
  either way) and, per class, ``d = l_s(p') - l_t(p)``; writes ``dL/dl_t(p) += -2 s d`` directly (each pixel is
  owned by one program) and scatters ``dL/dl_s += 2 s d w_tap`` to the four taps with atomics (taps of neighbouring
  pixels overlap).  ``s = upstream grad / n_valid``.  The two directions run one after the other, so the direct
  read-modify-write of one map never races with the atomics into it.

No gradient flows through ``p'`` (the geometry is a constant here, as in the reference).
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
    warp_pixels,
)
from hpc_taskology.losses.warp import OCCLUSION_RTOL

__all__ = ["SegmentationConsistencyFunction", "segmentation_consistency_triton"]


@triton.jit
def _seg_keep(depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr, b, offs, inb, H, W, rtol,
              HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr):
    """Warp, validity and occlusion test of one block: (keep, tap index, fx, fy)."""
    HW = H * W
    depth = tl.load(depth_t_ptr + b * HW + offs, mask=inb, other=1.0).to(tl.float32)
    dtx, dty, dtz, m = load_motion(om_ptr, mov_ptr, b, offs, inb, HW, HAS_MOTION, HAS_MASK)
    x, y, zp, valid, u0, u1, u2, zs = warp_pixels(prm_ptr + b * 32, offs, inb, depth, W, H, dtx, dty, dtz)
    idx, fx, fy = bilinear_setup(x, y, valid, W)
    a, b_, c, d = gather4(depth_s_ptr + b * HW, idx, W, valid)
    z2 = lerp2(a, b_, c, d, fx, fy)
    keep = valid & (z2 == z2) & (tl.abs(z2) < float("inf")) & (zp < z2 * (1.0 + rtol))
    return keep, idx, fx, fy


@triton.jit
def _seg_fwd_kernel(lt_ptr, ls_ptr, depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr, part_ptr, C, H, W,
                    n_blocks, rtol, HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HW = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    keep, idx, fx, fy = _seg_keep(depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr, b, offs, inb, H, W, rtol,
                                  HAS_MOTION, HAS_MASK)
    acc = tl.zeros([BLOCK], tl.float32)
    for c in range(C):
        plane = (b * C + c) * HW
        lt = tl.load(lt_ptr + plane + offs, mask=keep, other=0.0).to(tl.float32)
        a, b_, cc, d = gather4(ls_ptr + plane, idx, W, keep)
        diff = lerp2(a, b_, cc, d, fx, fy) - lt
        acc += diff * diff
    part = part_ptr + (b * n_blocks + pid) * 2
    tl.store(part + 0, tl.sum(tl.where(keep, acc, 0.0), 0))
    tl.store(part + 1, tl.sum(keep.to(tl.float32), 0))


@triton.jit
def _seg_bwd_kernel(lt_ptr, ls_ptr, depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr, scale_ptr, dlt_ptr, dls_ptr,
                    C, H, W, rtol, HAS_MOTION: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    HW = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    keep, idx, fx, fy = _seg_keep(depth_t_ptr, depth_s_ptr, prm_ptr, om_ptr, mov_ptr, b, offs, inb, H, W, rtol,
                                  HAS_MOTION, HAS_MASK)
    s2 = 2.0 * tl.load(scale_ptr)
    w00 = (1 - fy) * (1 - fx)
    w01 = (1 - fy) * fx
    w10 = fy * (1 - fx)
    w11 = fy * fx
    for c in range(C):
        plane = (b * C + c) * HW
        lt = tl.load(lt_ptr + plane + offs, mask=keep, other=0.0).to(tl.float32)
        a, b_, cc, d = gather4(ls_ptr + plane, idx, W, keep)
        g = tl.where(keep, s2 * (lerp2(a, b_, cc, d, fx, fy) - lt), 0.0)
        old = tl.load(dlt_ptr + plane + offs, mask=keep, other=0.0)
        tl.store(dlt_ptr + plane + offs, old - g, mask=keep)
        tl.atomic_add(dls_ptr + plane + idx, g * w00, mask=keep)
        tl.atomic_add(dls_ptr + plane + idx + 1, g * w01, mask=keep)
        tl.atomic_add(dls_ptr + plane + idx + W, g * w10, mask=keep)
        tl.atomic_add(dls_ptr + plane + idx + W + 1, g * w11, mask=keep)


def _launch_cfg(h: int, w: int):
    block = pixel_block(h * w)
    return block, triton.cdiv(h * w, block), (8 if block >= 1024 else 4)


def segmentation_direction_forward(lt, ls, depth_t, depth_s, prm, obj_motion, movable, occlusion_rtol):
    """Forward of one direction: 0-dim float64 ``(sum kept squared error, kept pixels)``.  Inputs contiguous;
    ``prm`` from :func:`pack_warp_params`; ``movable`` uint8 or None."""
    bsz, c, h, w = lt.shape
    block, nblk, warps = _launch_cfg(h, w)
    part = torch.empty(bsz, nblk, 2, dtype=torch.float32, device=lt.device)
    has_motion = obj_motion is not None
    has_mask = has_motion and movable is not None
    _seg_fwd_kernel[(nblk, bsz)](
        lt, ls, depth_t, depth_s, prm, obj_motion if has_motion else depth_t, movable if has_mask else depth_t,
        part, c, h, w, nblk, float(occlusion_rtol),
        HAS_MOTION=has_motion, HAS_MASK=has_mask, BLOCK=block, num_warps=warps)
    sums = part.double().sum((0, 1))
    return sums[0], sums[1]


def segmentation_direction_backward(lt, ls, depth_t, depth_s, prm, obj_motion, movable, occlusion_rtol, scale,
                                    dlt, dls):
    """Backward of one direction, accumulating into the float32 buffers ``dlt`` (direct) and ``dls`` (atomics)."""
    bsz, c, h, w = lt.shape
    block, nblk, warps = _launch_cfg(h, w)
    has_motion = obj_motion is not None
    has_mask = has_motion and movable is not None
    _seg_bwd_kernel[(nblk, bsz)](
        lt, ls, depth_t, depth_s, prm, obj_motion if has_motion else depth_t, movable if has_mask else depth_t,
        scale, dlt, dls, c, h, w, float(occlusion_rtol),
        HAS_MOTION=has_motion, HAS_MASK=has_mask, BLOCK=block, num_warps=warps)


class SegmentationConsistencyFunction(torch.autograd.Function):
    """Fused two-direction segmentation-logit consistency; returns ``(loss, n_valid)`` like the reference.

    Gradients: ``logits1``, ``logits2`` only (``None`` for the geometry: no gradient through ``p'``).  Kernel
    arithmetic is float32; gradients are cast to the logits' dtypes.
    """

    @staticmethod
    def forward(ctx, logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                obj_motion_1to2, obj_motion_2to1, movable1, movable2, occlusion_rtol):
        l1, l2, d1, d2 = (t.contiguous() for t in (logits1, logits2, depth1, depth2))
        om12, om21 = (None if t is None else t.detach().contiguous() for t in (obj_motion_1to2, obj_motion_2to1))
        mv1, mv2 = movable_u8(movable1), movable_u8(movable2)
        prm12 = pack_warp_params(K, rot_1to2, trans_1to2)
        prm21 = pack_warp_params(K, rot_2to1, trans_2to1)
        s12, n12 = segmentation_direction_forward(l1, l2, d1, d2, prm12, om12, mv1, occlusion_rtol)
        s21, n21 = segmentation_direction_forward(l2, l1, d2, d1, prm21, om21, mv2, occlusion_rtol)
        n = n12 + n21
        inv_n = torch.where(n > 0, 1.0 / n.clamp(min=1.0), torch.zeros_like(n))
        loss = ((s12 + s21) * inv_n).float()
        n_valid = torch.round(n).to(torch.int64)
        ctx.mark_non_differentiable(n_valid)
        ctx.save_for_backward(l1, l2, d1, d2, prm12, prm21, inv_n.float(), om12, om21, mv1, mv2)
        ctx.occlusion_rtol = occlusion_rtol
        return loss, n_valid

    @staticmethod
    def backward(ctx, grad_loss, _grad_n):
        l1, l2, d1, d2, prm12, prm21, inv_n, om12, om21, mv1, mv2 = ctx.saved_tensors
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return (None,) * 14
        scale = (grad_loss.float() * inv_n).reshape(1).contiguous()
        dl1 = torch.zeros(l1.shape, dtype=torch.float32, device=l1.device)
        dl2 = torch.zeros(l2.shape, dtype=torch.float32, device=l2.device)
        rtol = ctx.occlusion_rtol
        segmentation_direction_backward(l1, l2, d1, d2, prm12, om12, mv1, rtol, scale, dl1, dl2)
        segmentation_direction_backward(l2, l1, d2, d1, prm21, om21, mv2, rtol, scale, dl2, dl1)
        return (dl1.to(l1.dtype), dl2.to(l2.dtype)) + (None,) * 12


def segmentation_consistency_triton(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1,
                                    trans_2to1, obj_motion_1to2=None, obj_motion_2to1=None, movable1=None,
                                    movable2=None, occlusion_rtol: float = OCCLUSION_RTOL):
    """Triton path of :func:`hpc_taskology.losses.segmentation.segmentation_consistency` (inputs not checked here;
    same arguments, conventions and returns).  Requires CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``."""
    return SegmentationConsistencyFunction.apply(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2,
                                                 rot_2to1, trans_2to1, obj_motion_1to2, obj_motion_2to1, movable1,
                                                 movable2, float(occlusion_rtol))

"""Segmentation-logit consistency across two frames (Taskology CVPR 2021 §3.2.1, eq. 4; warp of supp. eq. 9).

Frame 2's logits are sampled bilinearly at ``p'`` (where frame 1's pixels land, :func:`warp.warp_coords`) and compared
with frame 1's logits by a squared L2 over the classes; the same with 1 and 2 swapped:

``loss = (sum_p keep_12(p) sum_c (l2_c(p'_1) - l1_c(p))^2 + sum_p keep_21(p) sum_c (l1_c(p'_2) - l2_c(p))^2) / n_valid``

with ``keep`` = valid and not occluded (the masks of the photometric loss: source depth finite and > 0, projection
finite, z' > 0, p' in ``[0, W-1) x [0, H-1)``, and the depth_and_motion_learning occlusion test
``z' < z_other(p') (1 + occlusion_rtol)``) and ``n_valid = sum keep`` over both directions.  Eq. 4 is a sum; dividing by
``n_valid`` makes it a per-valid-pixel mean so its scale does not depend on the image size.  0 with zero gradients when
``n_valid == 0``.

Gradients flow to both logit maps (to ``l1`` directly and, through the bilinear weights, to the sampled ``l2``, and
vice versa).  They do NOT flow through ``p'``: the warp geometry (depth, pose, object motion) comes from the peers'
predictions and is a constant here, so the segmentation network cannot "explain away" its inconsistency by moving the
geometry (the photometric loss is the one that trains the geometry).
"""

from __future__ import annotations

import torch
from torch import nn

from hpc_taskology.losses.warp import (
    OCCLUSION_RTOL,
    bilinear_sample,
    check_impl,
    check_two_frame_inputs,
    compute_dtype,
    occlusion_mask,
    use_triton,
    warp_coords_unchecked,
)

__all__ = ["segmentation_consistency", "segmentation_consistency_reference", "SegmentationConsistency"]


def _direction_sum(logits_t, logits_s, depth_t, depth_s, K, rot, trans, obj_motion, movable, occlusion_rtol):
    """One direction t -> s: (sum_p keep sum_c (l_s(p') - l_t(p))^2, number of kept pixels)."""
    with torch.no_grad():  # geometry is constant for this loss
        x, y, z, valid = warp_coords_unchecked(depth_t.detach(), K, rot.detach(), trans.detach(),
                                               None if obj_motion is None else obj_motion.detach(), movable)
        keep = occlusion_mask(z, bilinear_sample(depth_s.detach().to(z.dtype), x, y), valid, occlusion_rtol)
    dt = compute_dtype(logits_t, logits_s, z)
    sampled = bilinear_sample(logits_s.to(dt), x.to(dt), y.to(dt))
    sq = ((sampled - logits_t.to(dt)) ** 2).sum(1, keepdim=True)
    return torch.where(keep, sq, torch.zeros_like(sq)).sum(), keep.sum()


def segmentation_consistency_reference(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1,
                                       trans_2to1, obj_motion_1to2=None, obj_motion_2to1=None, movable1=None,
                                       movable2=None, occlusion_rtol: float = OCCLUSION_RTOL):
    """Pure-torch segmentation-logit consistency (autograd); the oracle of the Triton kernel.  Arguments, returns
    and conventions as :func:`segmentation_consistency`; inputs are not checked here.  Computes in float32, or float64
    when any input is float64."""
    s12, n12 = _direction_sum(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, obj_motion_1to2, movable1,
                              occlusion_rtol)
    s21, n21 = _direction_sum(logits2, logits1, depth2, depth1, K, rot_2to1, trans_2to1, obj_motion_2to1, movable2,
                              occlusion_rtol)
    n = n12 + n21
    total = s12 + s21
    scale = torch.where(n > 0, 1.0 / n.clamp(min=1).to(total.dtype), torch.zeros((), dtype=total.dtype,
                                                                                  device=n.device))
    return total * scale, n


def segmentation_consistency(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                             obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None,
                             impl: str = "auto", occlusion_rtol: float = OCCLUSION_RTOL):
    """Segmentation-logit consistency loss ``L_seg`` (Taskology eq. 4), both directions, occlusion-aware.

    See the module docstring for the exact loss and why no gradient flows through ``p'``.  Conventions: OpenCV camera
    axes (x right, y down, z forward); pixel (i, j) has its centre at (x, y) = (j, i); ``X2 = R(rot_1to2) X1 +
    trans_1to2 (+ m dt)`` maps frame-1 camera coordinates to frame 2 (and ``*_2to1`` the other way).

    Args:
        logits1, logits2: (B, C, H, W) class logits (any C >= 1); both receive gradients.
        depth1, depth2: (B, 1, H, W) metres, z along the optical axis; <= 0, NaN, inf mark invalid pixels.
        K: (B, 3, 3) intrinsics, pixels.
        rot_1to2, rot_2to1: (B, 3) axis-angle, radians.  trans_1to2, trans_2to1: (B, 3) metres.
        obj_motion_1to2, obj_motion_2to1: optional (B, 3, H, W) metres, source frame's camera coordinates.
        movable1, movable2: optional (B, 1, H, W) bool (or float > 0.5) gating the object motion.
        impl: ``"auto"`` (Triton on CUDA for non-float64 inputs, else reference) | ``"triton"`` (forced; CPU needs
            ``TRITON_INTERPRET=1``) | ``"reference"``.
        occlusion_rtol: relative tolerance of the occlusion test (:data:`warp.OCCLUSION_RTOL`).

    Returns:
        ``(loss, n_valid)``: 0-dim loss (float32; float64 for float64 inputs on the reference) and 0-dim int64 number of
        kept pixels over both directions.  0 with zero gradients when ``n_valid == 0``.

    Raises:
        TypeError: a non-tensor / non-floating argument or a bad mask dtype (naming it).
        ValueError: shapes disagree (expected vs actual, naming the argument), H or W < 2, ``K`` not pinhole with
            fx, fy > 0, devices differ, bad ``impl`` / ``occlusion_rtol``.
    """
    check_impl(impl)
    check_two_frame_inputs(("logits", logits1, logits2, "B,C,H,W"), depth1, depth2, K, rot_1to2, trans_1to2,
                           rot_2to1, trans_2to1, obj_motion_1to2, obj_motion_2to1, movable1, movable2,
                           occlusion_rtol)
    args = (logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
            obj_motion_1to2, obj_motion_2to1, movable1, movable2)
    if use_triton(impl, *args):
        from hpc_taskology.kernels.segmentation import segmentation_consistency_triton

        return segmentation_consistency_triton(*args, occlusion_rtol=float(occlusion_rtol))
    return segmentation_consistency_reference(*args, occlusion_rtol=occlusion_rtol)


class SegmentationConsistency(nn.Module):
    """``nn.Module`` form of :func:`segmentation_consistency` holding only its hyperparameters.

    Args:
        occlusion_rtol: occlusion test tolerance.  impl: ``"auto"`` | ``"triton"`` | ``"reference"``.

    Shape:
        - logits1, logits2: (B, C, H, W);  depth1, depth2: (B, 1, H, W) metres;  K: (B, 3, 3) pixels
        - rot_*: (B, 3) radians;  trans_*: (B, 3) metres;  obj_motion_*: (B, 3, H, W) metres or None
        - movable*: (B, 1, H, W) bool or None
        - Output: ``(loss, n_valid)``, both 0-dim (float, int64)
    """

    def __init__(self, occlusion_rtol: float = OCCLUSION_RTOL, impl: str = "auto"):
        super().__init__()
        check_impl(impl)
        self.occlusion_rtol, self.impl = float(occlusion_rtol), impl

    def forward(self, logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None):
        return segmentation_consistency(logits1, logits2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1,
                                        trans_2to1, obj_motion_1to2, obj_motion_2to1, movable1, movable2,
                                        impl=self.impl, occlusion_rtol=self.occlusion_rtol)

    def extra_repr(self) -> str:
        return f"occlusion_rtol={self.occlusion_rtol}, impl={self.impl!r}"

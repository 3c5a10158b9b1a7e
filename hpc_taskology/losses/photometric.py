"""Photometric consistency across two frames (Taskology CVPR 2021 §3.2.1, eq. 3; warp of supp. eq. 9).

Frame 2's image is sampled bilinearly at ``p'`` (where frame 1's pixels land, :func:`warp.warp_coords`) and compared
with frame 1's image by a weighted L1 + 3x3 SSIM; the same with 1 and 2 swapped; both directions are summed.  The
pixelwise loss, its masks and weights follow google-research ``depth_and_motion_learning`` (the loss Taskology reused,
its ref. [23]): ``consistency_losses.rgbd_consistency_loss`` and ``weighted_ssim``, weights from
``losses/loss_aggregator.py`` (``rgb_consistency`` 1.0, ``ssim`` 3.0 times the 0.5 applied there = 1.5).

Per direction (frame t = the frame whose pixels are warped, s = the frame sampled):

* ``valid``: source depth finite and > 0, projection finite, z' > 0, p' in ``[0, W-1) x [0, H-1)``;
  ``keep = valid & (z' < z_s(p') (1 + occlusion_rtol))`` (occlusion awareness, :func:`warp.occlusion_mask`).
* L1: ``sum_p keep(p) mean_c |I_s(p') - I_t(p)|``.
* SSIM: depth-proximity weight ``w = valid * s2 / ((z_s(p') - z')^2 + s2)``, ``s2`` = keep-weighted mean of the squared
  depth mismatch per batch item (``sum keep dz^2 / (sum keep + 1)``) + 1e-4, stop-gradient; weighted 3x3 SSIM with
  c1 = inf, c2 = 9e-6, weight epsilon 0.01 on the interior (H-2) x (W-2) windows; ``sum_q avgpool(w)(q) mean_c
  clip((1 - SSIM) / 2, 0, 1)``.
* At invalid pixels the sampled image is replaced by frame t's own pixel (a finite filler that carries no gradient;
  depth_and_motion_learning samples at clamped coordinates instead) — it only enters SSIM windows with weight 0.01.

``loss = (rgb_weight * sum_dirs L1 + ssim_weight * sum_dirs SSIM) / n_valid`` with ``n_valid = sum_dirs sum_p keep``
(a per-valid-pixel mean; depth_and_motion_learning divides by all B*H*W pixels and doubles, which dilutes the loss by the
invalid fraction); 0 with zero gradients when ``n_valid == 0``.

Gradients go to ``depth1``, ``depth2`` (each only as the source of its own direction: frame s's depth in the occlusion
test and the proximity weight is stop-gradient, as ``target_depth_stop_gradient`` there), ``rot_*``, ``trans_*`` and
``obj_motion_*``; not to the images (data), ``K`` or the movable masks (segmentation argmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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

__all__ = [
    "RGB_WEIGHT",
    "SSIM_WEIGHT",
    "SSIM_C2",
    "SSIM_WEIGHT_EPSILON",
    "weighted_ssim",
    "depth_proximity_weight",
    "photometric_consistency",
    "photometric_consistency_reference",
    "PhotometricConsistency",
]

RGB_WEIGHT = 1.0  # depth_and_motion_learning loss_aggregator 'rgb_consistency'
SSIM_WEIGHT = 1.5  # 'ssim' 3.0 x the 0.5 the aggregator applies to ssim_error
SSIM_C2 = 9e-6  # c1 = inf, c2 = 9e-6 ("seemed to work better than defaults" there)
SSIM_WEIGHT_EPSILON = 0.01
DEPTH_MISMATCH_FLOOR = 1e-4  # added to the second moment of the depth mismatch (metres^2)


def weighted_ssim(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, c2: float = SSIM_C2,
                  weight_epsilon: float = SSIM_WEIGHT_EPSILON):
    """Weighted 3x3 structural dissimilarity with c1 = inf (depth_and_motion_learning ``weighted_ssim``).

    Moments over each 3x3 window use weights ``w + eps`` normalised by their sum:
    ``mu = sum (w+eps) x / sum (w+eps)``, ``sigma_x = E[x^2] - mu_x^2``, ``sigma_xy = E[xy] - mu_x mu_y``;
    ``SSIM = (2 sigma_xy + c2) / (sigma_x + sigma_y + c2)`` (the c1 = inf form: no luminance term).

    Args:
        x, y: (B, C, H, W) images (here in [0, 1]); H, W >= 3 for a non-empty result.
        weight: (B, 1, H, W) per-pixel weights >= 0 (no gradient is taken through them by the callers).
        c2: regulariser of the second moments.  weight_epsilon: added to every weight.

    Returns:
        ``(dissimilarity, avg_weight)``: (B, C, H-2, W-2) ``clip((1 - SSIM) / 2, 0, 1)`` and (B, 1, H-2, W-2) the 3x3
        mean of ``weight`` (how much each window counts).
    """
    avg_w = F.avg_pool2d(weight, 3, stride=1)
    wpe = weight + weight_epsilon
    inv = 1.0 / (avg_w + weight_epsilon)

    def wavg(z):
        return F.avg_pool2d(z * wpe, 3, stride=1) * inv

    mu_x, mu_y = wavg(x), wavg(y)
    sigma_x = wavg(x * x) - mu_x * mu_x
    sigma_y = wavg(y * y) - mu_y * mu_y
    sigma_xy = wavg(x * y) - mu_x * mu_y
    ssim = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    return torch.clamp((1 - ssim) / 2, 0, 1), avg_w


@torch.no_grad()
def depth_proximity_weight(z_warped: torch.Tensor, depth_s_at_p: torch.Tensor, valid: torch.Tensor,
                           keep: torch.Tensor) -> torch.Tensor:
    """SSIM weight peaking at 1 where the two frames' depths agree (depth_and_motion_learning), no gradient.

    ``w = valid * s2 / (dz^2 + s2)``, ``dz = z_s(p') - z'``, ``s2 = sum_keep dz^2 / (sum keep + 1) + 1e-4`` per batch
    item (metres^2); 0 where ``dz`` is not finite.

    Args:
        z_warped: (B, 1, H, W) z' metres.  depth_s_at_p: (B, 1, H, W) sampled depth of the other frame, metres.
        valid, keep: (B, 1, H, W) bool (:func:`warp.warp_coords`, :func:`warp.occlusion_mask`).

    Returns:
        (B, 1, H, W) weights in [0, 1].
    """
    dz2 = (depth_s_at_p - z_warped) ** 2
    dz2 = torch.where(valid & torch.isfinite(dz2), dz2, torch.full_like(dz2, float("inf")))
    kf = keep.to(dz2.dtype)
    second = (torch.where(keep, dz2, torch.zeros_like(dz2)).sum((1, 2, 3)) / (kf.sum((1, 2, 3)) + 1.0)
              + DEPTH_MISMATCH_FLOOR)[:, None, None, None]
    return second / (dz2 + second)  # inf -> 0


def _direction_sums(img_t, img_s, depth_t, depth_s, K, rot, trans, obj_motion, movable, occlusion_rtol,
                    weight=None):
    """One direction t -> s: (sum keep * L1, sum avgw * SSIM-dissimilarity, number of kept pixels)."""
    img_t, img_s = img_t.detach(), img_s.detach()  # images are data: no gradient
    x, y, z, valid = warp_coords_unchecked(depth_t, K, rot, trans, obj_motion, movable)
    dt = z.dtype
    img_t, img_s = img_t.to(dt), img_s.to(dt)
    with torch.no_grad():
        zs = bilinear_sample(depth_s.detach().to(dt), x, y)
        keep = occlusion_mask(z, zs, valid, occlusion_rtol)
        w = depth_proximity_weight(z, zs, valid, keep) if weight is None else weight.to(dt)
    warped = torch.where(valid, bilinear_sample(img_s, x, y), img_t)
    l1 = (warped - img_t).abs().mean(1, keepdim=True)
    rgb = torch.where(keep, l1, torch.zeros_like(l1)).sum()
    if warped.shape[-1] >= 3 and warped.shape[-2] >= 3:
        dissim, avg_w = weighted_ssim(warped, img_t, w)
        ssim = (dissim.mean(1, keepdim=True) * avg_w).sum()
    else:
        ssim = rgb.new_zeros(())
    return rgb, ssim, keep.sum()


def photometric_consistency_reference(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                                      obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None,
                                      rgb_weight: float = RGB_WEIGHT, ssim_weight: float = SSIM_WEIGHT,
                                      occlusion_rtol: float = OCCLUSION_RTOL, proximity_weights=None):
    """Pure-torch photometric consistency (autograd); the oracle of the Triton kernel.  Arguments, returns and
    conventions as :func:`photometric_consistency`; inputs are not checked here (call that one).  Computes in
    float32, or float64 when any input is float64.

    ``proximity_weights``: optional pair of (B, 1, H, W) SSIM weights (1->2, 2->1) used instead of the
    depth-proximity weights.  For gradcheck only: those weights are stop-gradient functions of the depth, so a finite
    difference sees them change while the defined gradient does not."""
    dt = compute_dtype(img1, depth1, depth2, K, rot_1to2, trans_1to2)
    w12, w21 = (None, None) if proximity_weights is None else proximity_weights
    r12, s12, n12 = _direction_sums(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2,
                                    obj_motion_1to2, movable1, occlusion_rtol, w12)
    r21, s21, n21 = _direction_sums(img2, img1, depth2, depth1, K, rot_2to1, trans_2to1,
                                    obj_motion_2to1, movable2, occlusion_rtol, w21)
    n = n12 + n21
    total = rgb_weight * (r12 + r21) + ssim_weight * (s12 + s21)
    scale = torch.where(n > 0, 1.0 / n.clamp(min=1).to(dt), torch.zeros((), dtype=dt, device=n.device))
    return total * scale, n


def photometric_consistency(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                            obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None,
                            rgb_weight: float = RGB_WEIGHT, ssim_weight: float = SSIM_WEIGHT,
                            impl: str = "auto", occlusion_rtol: float = OCCLUSION_RTOL):
    """Two-frame photometric consistency loss ``L_ph`` (Taskology eq. 3), both directions, occlusion-aware.

    See the module docstring for the exact loss.  Conventions: OpenCV camera axes (x right, y down, z forward);
    pixel (i, j) has its centre at (x, y) = (j, i); ``X2 = R(rot_1to2) X1 + trans_1to2 (+ m dt)`` maps frame-1 camera
    coordinates to frame 2 (and ``*_2to1`` the other way).

    Args:
        img1, img2: (B, 3, H, W) RGB in [0, 1] (no gradient).
        depth1, depth2: (B, 1, H, W) metres, z along the optical axis; <= 0, NaN, inf mark invalid pixels.
        K: (B, 3, 3) intrinsics, pixels, shared by both frames.
        rot_1to2, rot_2to1: (B, 3) axis-angle, radians.  trans_1to2, trans_2to1: (B, 3) metres.
        obj_motion_1to2, obj_motion_2to1: optional (B, 3, H, W) object motion, metres, in the source frame's camera
            coordinates (``None`` = static scene).
        movable1, movable2: optional (B, 1, H, W) bool (or float > 0.5) movable mask gating the object motion
            (``None`` with an object motion = everywhere).  No gradient.
        rgb_weight, ssim_weight: weights of the L1 and SSIM terms (depth_and_motion_learning: 1.0 and 1.5).
        impl: ``"auto"`` (Triton on CUDA for non-float64 inputs, else reference), ``"triton"`` (forced; on CPU needs
            ``TRITON_INTERPRET=1``), ``"reference"``.
        occlusion_rtol: relative tolerance of the occlusion test (:data:`warp.OCCLUSION_RTOL`).

    Returns:
        ``(loss, n_valid)``: 0-dim loss (float32, float64 for float64 inputs on the reference) and 0-dim int64 number of
        kept (valid, non-occluded) pixels over both directions.  ``loss`` is 0 with zero gradients when
        ``n_valid == 0``; invalid pixels never make it NaN.

    Raises:
        TypeError: a non-tensor / non-floating argument or a bad mask dtype (naming it).
        ValueError: shapes disagree (expected vs actual, naming the argument), H or W < 2, ``K`` not pinhole with
            fx, fy > 0, devices differ, bad ``impl`` / weights / ``occlusion_rtol``.
    """
    check_impl(impl)
    check_two_frame_inputs(("img", img1, img2, "B,3,H,W"), depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1,
                           trans_2to1, obj_motion_1to2, obj_motion_2to1, movable1, movable2, occlusion_rtol)
    for v, n in ((rgb_weight, "rgb_weight"), (ssim_weight, "ssim_weight")):
        if not isinstance(v, (int, float)) or not (0 <= v < float("inf")):
            raise ValueError(f"{n}: expected a finite number >= 0, got {v!r}")
    args = (img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
            obj_motion_1to2, obj_motion_2to1, movable1, movable2)
    if use_triton(impl, *args):
        from hpc_taskology.kernels.photometric import photometric_consistency_triton

        return photometric_consistency_triton(*args, rgb_weight=float(rgb_weight), ssim_weight=float(ssim_weight),
                                              occlusion_rtol=float(occlusion_rtol))
    return photometric_consistency_reference(*args, rgb_weight=rgb_weight, ssim_weight=ssim_weight,
                                             occlusion_rtol=occlusion_rtol)


class PhotometricConsistency(nn.Module):
    """``nn.Module`` form of :func:`photometric_consistency` holding only its hyperparameters.

    Args:
        rgb_weight: L1 weight (1.0).  ssim_weight: SSIM weight (1.5).
        occlusion_rtol: occlusion test tolerance.  impl: ``"auto"`` | ``"triton"`` | ``"reference"``.

    Shape:
        - img1, img2: (B, 3, H, W) in [0, 1];  depth1, depth2: (B, 1, H, W) metres;  K: (B, 3, 3) pixels
        - rot_*: (B, 3) radians;  trans_*: (B, 3) metres;  obj_motion_*: (B, 3, H, W) metres or None
        - movable*: (B, 1, H, W) bool or None
        - Output: ``(loss, n_valid)``, both 0-dim (float, int64)
    """

    def __init__(self, rgb_weight: float = RGB_WEIGHT, ssim_weight: float = SSIM_WEIGHT,
                 occlusion_rtol: float = OCCLUSION_RTOL, impl: str = "auto"):
        super().__init__()
        check_impl(impl)
        self.rgb_weight, self.ssim_weight = float(rgb_weight), float(ssim_weight)
        self.occlusion_rtol, self.impl = float(occlusion_rtol), impl

    def forward(self, img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                obj_motion_1to2=None, obj_motion_2to1=None, movable1=None, movable2=None):
        return photometric_consistency(img1, img2, depth1, depth2, K, rot_1to2, trans_1to2, rot_2to1, trans_2to1,
                                       obj_motion_1to2, obj_motion_2to1, movable1, movable2,
                                       rgb_weight=self.rgb_weight, ssim_weight=self.ssim_weight, impl=self.impl,
                                       occlusion_rtol=self.occlusion_rtol)

    def extra_repr(self) -> str:
        return (f"rgb_weight={self.rgb_weight}, ssim_weight={self.ssim_weight}, "
                f"occlusion_rtol={self.occlusion_rtol}, impl={self.impl!r}")

"""Reference geometry of the two-frame consistency losses: pose → rotation matrix, warp, bilinear sampling, masks.

One copy, shared by :mod:`hpc_taskology.losses.photometric` and :mod:`hpc_taskology.losses.segmentation` and used as
the oracle of the Triton kernels (``hpc_taskology.kernels.photometric`` / ``.segmentation``).

Conventions (all public functions here and in the losses):

* Camera frame OpenCV: x right, y down, z forward (along the optical axis).  Depth ``z`` is the z coordinate of the
  3-D point, in metres (not the distance along the ray).
* Pixel ``(i, j)`` (row ``i``, column ``j``) has its centre at image coordinates ``(x, y) = (j, i)``; homogeneous
  ``p = (j, i, 1)^T`` (Taylor et al., Taskology CVPR 2021, supp. eq. 8).  Sampling at ``(x, y)`` is bilinear between the
  four surrounding pixel centres, i.e. ``grid_sample(..., align_corners=True)`` after normalising ``x`` to
  ``2 x / (W - 1) - 1``.  We do not use the half-pixel ``align_corners=False`` convention, so the warp never mixes the
  two (the mismatch monodepth2 has between its pixel grid and ``grid_sample``).
* Intrinsics ``K`` (B, 3, 3) in pixels, bottom row ``(0, 0, 1)``.
* Pose ``rot_1to2`` (B, 3) axis-angle in radians (direction = axis, norm = angle, right-handed) and ``trans_1to2``
  (B, 3) metres map a point ``X1`` in frame-1 camera coordinates to frame 2: ``X2 = R X1 + T`` (+ ``m dt`` for movable
  pixels).  Note that google-research ``depth_and_motion_learning`` parametrises ``R`` by Euler angles; we use the
  axis-angle vector (Rodrigues), which is singularity-free near the identity.
* Object motion ``dt`` (B, 3, H, W) metres, expressed in frame-1 camera coordinates: the motion of the point seen at
  each frame-1 pixel relative to the scene.  ``movable`` (B, 1, H, W) bool, or float where > 0.5 means movable, gates
  it (Taskology eq. 2 / supp. eq. 7: ``m`` comes from the segmentation argmax, it never receives a gradient).

The warp (Taskology eq. 9): ``z' p' = K R K^-1 z p + K (m dt + T)``.
"""

from __future__ import annotations

import torch

from hpc_taskology.losses.checks import check_floating, check_intrinsics, check_shape

__all__ = [
    "axis_angle_to_matrix",
    "pixel_grid",
    "warp_coords",
    "warp_coords_unchecked",
    "bilinear_sample",
    "occlusion_mask",
    "check_two_frame_inputs",
    "check_impl",
    "use_triton",
    "compute_dtype",
    "OCCLUSION_RTOL",
]

# Relative tolerance of the occlusion test z' < z2(p') (1 + rtol).  depth_and_motion_learning uses a strict "<"; with
# rtol = 0 a perfectly consistent pair (z' == z2(p') up to rounding) would keep a random half of its pixels.  1e-3
# keeps them and is far below any real occlusion (a nearer surface at least 0.1 % closer).
OCCLUSION_RTOL = 1e-3

# Below this squared angle (rad^2) Rodrigues' coefficients use their Taylor series (exact to fp64 rounding).
_SMALL_ANGLE2 = 1e-6


def axis_angle_to_matrix(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula), differentiable and exact at zero angle.

    ``R = I + a [w]x + b [w]x^2`` with ``a = sin(t)/t`` and ``b = (1 - cos t)/t^2 = (sin(t/2)/(t/2))^2 / 2``
    (written without the ``1 - cos`` cancellation), ``t = |w|``; below ``t^2 = 1e-6`` both use their Taylor series, so
    ``R`` and ``dR/dw`` are finite and correct at ``w = 0``.

    Args:
        rot: (..., 3) axis-angle vectors, radians; the rotation is right-handed about ``rot / |rot|``.

    Returns:
        (..., 3, 3) rotation matrices, same dtype and device as ``rot``.

    Raises:
        TypeError: ``rot`` not a floating tensor.  ValueError: last dim is not 3.

    Source: Rodrigues' rotation formula (as in Kornia ``geometry/conversions.py::axis_angle_to_rotation_matrix``,
    which instead switches to the first-order ``I + [w]x`` near zero).
    """
    check_floating(rot, "rot")
    if rot.dim() < 1 or rot.shape[-1] != 3:
        raise ValueError(f"rot: expected shape (..., 3) axis-angle, got {tuple(rot.shape)}")
    t2 = (rot * rot).sum(-1)
    small = t2 < _SMALL_ANGLE2
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))  # safe sqrt: no inf gradient at 0
    a_exact = torch.sin(t) / t
    b_exact = 0.5 * (torch.sin(0.5 * t) / (0.5 * t)) ** 2
    a_taylor = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
    b_taylor = 0.5 - t2 / 24.0 + t2 * t2 / 720.0
    a = torch.where(small, a_taylor, a_exact)[..., None, None]
    b = torch.where(small, b_taylor, b_exact)[..., None, None]
    wx, wy, wz = rot.unbind(-1)
    zero = torch.zeros_like(wx)
    skew = torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], -1).reshape(*rot.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


def pixel_grid(h: int, w: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(3, H, W) homogeneous pixel coordinates ``p(i, j) = (j, i, 1)`` (Taskology supp. eq. 8), centres on integers."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=device),
                            torch.arange(w, dtype=dtype, device=device), indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)])


def compute_dtype(*tensors) -> torch.dtype:
    """The dtype the references compute in: the promotion of the inputs' dtypes with float32 (bf16/fp16 inputs are
    upcast, so low-precision error comes only from the rounded inputs and gradients, as on the Triton path)."""
    dt = torch.float32
    for t in tensors:
        if t is not None and t.is_floating_point():
            dt = torch.promote_types(dt, t.dtype)
    return dt


def warp_coords(depth1: torch.Tensor, K: torch.Tensor, rot_1to2: torch.Tensor, trans_1to2: torch.Tensor,
                obj_motion: torch.Tensor | None = None, movable: torch.Tensor | None = None):
    """Where each frame-1 pixel lands in frame 2 (Taskology eq. 9 / supp. eq. 9), with its validity mask.

    ``z' p' = K R K^-1 z p + K (m dt + T)``, ``p = (j, i, 1)``; ``x' = (z'p')_0 / z'``, ``y' = (z'p')_1 / z'``.

    Args:
        depth1: (B, 1, H, W) metres, z along the optical axis of frame 1.
        K: (B, 3, 3) intrinsics in pixels (no gradient flows to ``K``).
        rot_1to2: (B, 3) axis-angle, radians; with ``trans_1to2`` (B, 3) metres maps frame-1 camera coordinates to
            frame 2: ``X2 = R X1 + T``.
        obj_motion: optional (B, 3, H, W) metres, added to ``T`` at movable pixels *after* the rotation, exactly
            as eq. 9 writes it (``X2 = R X1 + T + m dt``): its axes are frame 2's camera axes, like ``T``.  A motion
            expressed in frame-1 camera axes (the datasets schema's ``object_motion``) must be rotated first:
            pass ``R @ dt``.  Between video frames R is a small rotation, so the difference is at most
            |rotation angle| × |dt|.  ``None``: static scene.
        movable: optional (B, 1, H, W) bool (or float, > 0.5 = movable) gating ``obj_motion``; ``None`` with an
            ``obj_motion`` applies it everywhere (as depth_and_motion_learning's unmasked residual translation).

    Returns:
        ``(x, y, z, valid)``: x', y' (B, 1, H, W) pixels in frame 2 (centres on integers), z' (B, 1, H, W) metres in
        frame 2, and ``valid`` (B, 1, H, W) bool.  ``valid`` is False where the source depth is not finite or
        <= 0, the projection is not finite, z' <= 0, or p' is outside ``[0, W-1) x [0, H-1)`` (half-open, as
        depth_and_motion_learning ``transform_depth_map._clamp_and_filter_result``, so both bilinear taps lie inside
        the frame).  At invalid pixels ``x = y = 0`` and ``z = 1`` are finite placeholders (the differentiable path
        goes through them, so no NaN/inf can reach a gradient); always combine with ``valid``.
        Gradients flow to ``depth1``, ``rot_1to2``, ``trans_1to2`` and ``obj_motion`` (not to ``K``, ``movable``).

    Raises:
        TypeError / ValueError: bad types or shapes, naming the argument (see :func:`check_two_frame_inputs`).
    """
    _check_warp_args(depth1, K, rot_1to2, trans_1to2, obj_motion, movable)
    return warp_coords_unchecked(depth1, K, rot_1to2, trans_1to2, obj_motion, movable)


def warp_coords_unchecked(depth1, K, rot_1to2, trans_1to2, obj_motion=None, movable=None):
    """:func:`warp_coords` without the input checks (for callers that validated already)."""
    h, w = depth1.shape[-2:]
    dt = compute_dtype(depth1, K, rot_1to2, trans_1to2, obj_motion)
    depth1 = depth1.to(dt)
    K = K.detach().to(dt)
    src_ok = torch.isfinite(depth1) & (depth1 > 0)
    z = torch.where(src_ok, depth1, torch.ones_like(depth1))  # safe value keeps NaN out of the backward
    X1 = z * torch.einsum("bij,jhw->bihw", torch.linalg.inv(K), pixel_grid(h, w, dt, depth1.device))
    R = axis_angle_to_matrix(rot_1to2.to(dt))
    t = trans_1to2.to(dt)[:, :, None, None]
    if obj_motion is not None:
        dtm = obj_motion.to(dt)
        t = t + (dtm if movable is None else _movable_float(movable, dt) * dtm)
    P = torch.einsum("bij,bjhw->bihw", K, torch.einsum("bij,bjhw->bihw", R, X1) + t)
    with torch.no_grad():
        valid = _valid_projection(P, src_ok, h, w)
    placeholder = torch.tensor([0.0, 0.0, 1.0], dtype=dt, device=P.device)[None, :, None, None]
    P = torch.where(valid, P, placeholder)
    zp = P[:, 2:3]
    return P[:, 0:1] / zp, P[:, 1:2] / zp, zp, valid


def _valid_projection(P: torch.Tensor, src_ok: torch.Tensor, h: int, w: int) -> torch.Tensor:
    zp = P[:, 2:3]
    x, y = P[:, 0:1] / zp, P[:, 1:2] / zp  # same op as the differentiable path and the kernels
    return (src_ok & torch.isfinite(P).all(1, keepdim=True) & (zp > 0)
            & (x >= 0) & (x < w - 1) & (y >= 0) & (y < h - 1))


def _movable_float(movable: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    m = movable if movable.dtype == torch.bool else movable > 0.5
    return m.to(dtype)


def bilinear_sample(src: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample ``src`` at pixel coordinates ``(x, y)`` bilinearly, pixel centres on integers.

    Equal to ``F.grid_sample(src, grid, mode="bilinear", align_corners=True)`` with
    ``grid = (2 x / (W - 1) - 1, 2 y / (H - 1) - 1)`` for coordinates inside ``[0, W-1] x [0, H-1]`` (the tests check
    this), but written with ``floor`` and four gathers so that its autograd is exactly the formula the Triton kernels
    differentiate: ``v = (1-fy)((1-fx) v00 + fx v01) + fy((1-fx) v10 + fx v11)``, ``dv/dx`` one-sided (right) at integer
    ``x``.  Coordinates outside the frame are clamped into it (callers mask them with ``valid``).

    Args:
        src: (B, C, H, W) values to sample (any units), H >= 2 and W >= 2.
        x, y: (B, 1, H', W') pixel coordinates, finite.

    Returns:
        (B, C, H', W'), differentiable w.r.t. ``src``, ``x`` and ``y``.

    Raises:
        ValueError: H or W < 2, or mismatched batch.
    """
    bsz, c, h, w = src.shape
    if h < 2 or w < 2:
        raise ValueError(f"src: bilinear sampling needs H >= 2 and W >= 2, got shape {tuple(src.shape)}")
    if x.shape != y.shape or x.shape[0] != bsz or x.shape[1] != 1:
        raise ValueError(f"x, y: expected equal shapes (B={bsz}, 1, H', W'), got {tuple(x.shape)}, {tuple(y.shape)}")
    x0 = torch.floor(x.detach()).clamp(0, w - 2)
    y0 = torch.floor(y.detach()).clamp(0, h - 2)
    fx, fy = x - x0, y - y0
    idx = (y0 * w + x0).long().flatten(1)  # (B, N)
    flat = src.flatten(2)  # (B, C, H*W)

    def tap(off: int) -> torch.Tensor:
        return torch.gather(flat, 2, (idx + off)[:, None, :].expand(-1, c, -1)).reshape(bsz, c, *x.shape[2:])

    v00, v01, v10, v11 = tap(0), tap(1), tap(w), tap(w + 1)
    return (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11)


def occlusion_mask(z_warped: torch.Tensor, depth2_at_p: torch.Tensor, valid: torch.Tensor,
                   rtol: float = OCCLUSION_RTOL) -> torch.Tensor:
    """Keep pixels whose warped point is not hidden in frame 2 (depth_and_motion_learning occlusion awareness).

    ``keep = valid & isfinite(z2(p')) & (z' < z2(p') (1 + rtol))``: frame 1's point, moved into frame 2, must be closer
    to the camera than (or as close as) the surface frame 2 sees at ``p'``.  Pixels where it falls behind are occluded
    in frame 2 and are left to the other direction (google-research ``consistency_losses.rgbd_consistency_loss``,
    ``frame1_closer_to_camera``, which uses rtol = 0; see :data:`OCCLUSION_RTOL`).  No gradient.

    Args:
        z_warped: (B, 1, H, W) z' metres.  depth2_at_p: (B, 1, H, W) frame-2 depth sampled at p', metres.
        valid: (B, 1, H, W) bool from :func:`warp_coords`.  rtol: relative tolerance >= 0.

    Returns:
        (B, 1, H, W) bool.
    """
    z2 = depth2_at_p.detach()
    return valid & torch.isfinite(z2) & (z_warped.detach() < z2 * (1.0 + rtol))


# ---------------------------------------------------------------------------------------------------------- checks
def _check_warp_args(depth1, K, rot, trans, obj_motion, movable, names=("depth1", "K", "rot_1to2", "trans_1to2",
                                                                         "obj_motion", "movable")):
    sizes: dict[str, int] = {}
    check_shape(depth1, names[0], "B,1,H,W", sizes)
    check_floating(depth1, names[0])
    check_intrinsics(K, names[1], sizes)
    bottom = K.detach()[:, 2].double()
    if not torch.allclose(bottom, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=bottom.device)
                          .expand_as(bottom)):
        raise ValueError(f"{names[1]}: expected bottom row (0, 0, 1) (pinhole intrinsics), got {bottom.tolist()}")
    for t, n in ((rot, names[2]), (trans, names[3])):
        check_shape(t, n, "B,3", sizes)
        check_floating(t, n)
    if obj_motion is not None:
        check_shape(obj_motion, names[4], "B,3,H,W", sizes)
        check_floating(obj_motion, names[4])
    if movable is not None:
        check_shape(movable, names[5], "B,1,H,W", sizes)
        if not (movable.dtype == torch.bool or movable.is_floating_point()):
            raise TypeError(f"{names[5]}: expected dtype torch.bool or a floating 0/1 mask, got {movable.dtype}")
    if sizes["H"] < 2 or sizes["W"] < 2:
        raise ValueError(f"{names[0]}: expected H >= 2 and W >= 2 (bilinear sampling), got {tuple(depth1.shape)}")
    _same_device([(n, t) for n, t in zip(names, (depth1, K, rot, trans, obj_motion, movable)) if t is not None])
    return sizes["B"], sizes["H"], sizes["W"]


def _same_device(named) -> None:
    devices = {str(t.device) for _, t in named}
    if len(devices) > 1:
        raise ValueError("expected all inputs on one device, got " + ", ".join(f"{n}={t.device}" for n, t in named))


def check_two_frame_inputs(frames: tuple[str, torch.Tensor, torch.Tensor, str] | None, depth1, depth2, K,
                           rot_1to2, trans_1to2, rot_2to1, trans_2to1, obj_motion_1to2=None, obj_motion_2to1=None,
                           movable1=None, movable2=None, occlusion_rtol: float = OCCLUSION_RTOL) -> dict[str, int]:
    """Validate the inputs shared by both two-frame losses; every error names the argument.

    Args:
        frames: ``(name1, t1, t2, pattern)`` for the per-frame maps, e.g. ``("img", img1, img2, "B,3,H,W")`` checks
            ``img1``/``img2``; ``None`` skips.
        depth1, depth2: (B, 1, H, W) metres.  K: (B, 3, 3) pixels.  rot_*: (B, 3) radians.  trans_*: (B, 3) metres.
        obj_motion_*: optional (B, 3, H, W) metres.  movable*: optional (B, 1, H, W) bool / float 0-1.
        occlusion_rtol: finite >= 0.

    Returns:
        The bound sizes ``{"B", "H", "W", ...}``.

    Raises:
        TypeError: not a tensor / not floating / bad mask dtype.  ValueError: shapes disagree (expected vs actual),
        H or W < 2, K not pinhole, devices differ, bad ``occlusion_rtol``.
    """
    sizes = {}
    b, h, w = _check_warp_args(depth1, K, rot_1to2, trans_1to2, obj_motion_1to2, movable1,
                               ("depth1", "K", "rot_1to2", "trans_1to2", "obj_motion_1to2", "movable1"))
    sizes.update(B=b, H=h, W=w)
    check_shape(depth2, "depth2", "B,1,H,W", sizes)
    check_floating(depth2, "depth2")
    for t, n, pat in ((rot_2to1, "rot_2to1", "B,3"), (trans_2to1, "trans_2to1", "B,3"),
                      (obj_motion_2to1, "obj_motion_2to1", "B,3,H,W")):
        if t is not None:
            check_shape(t, n, pat, sizes)
            check_floating(t, n)
    if movable2 is not None:
        check_shape(movable2, "movable2", "B,1,H,W", sizes)
        if not (movable2.dtype == torch.bool or movable2.is_floating_point()):
            raise TypeError(f"movable2: expected dtype torch.bool or a floating 0/1 mask, got {movable2.dtype}")
    named = [("depth1", depth1), ("depth2", depth2), ("rot_2to1", rot_2to1), ("trans_2to1", trans_2to1)]
    if frames is not None:
        name, t1, t2, pattern = frames
        for t, n in ((t1, f"{name}1"), (t2, f"{name}2")):
            check_shape(t, n, pattern, sizes)
            check_floating(t, n)
            named.append((n, t))
    for n, t in (("obj_motion_2to1", obj_motion_2to1), ("movable2", movable2)):
        if t is not None:
            named.append((n, t))
    _same_device(named)
    if not isinstance(occlusion_rtol, (int, float)) or not (0 <= occlusion_rtol < float("inf")):
        raise ValueError(f"occlusion_rtol: expected a finite number >= 0, got {occlusion_rtol!r}")
    return sizes


def check_impl(impl: str) -> None:
    """``impl`` must be ``"auto"``, ``"triton"`` or ``"reference"`` (ValueError naming it otherwise)."""
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"impl: expected 'auto', 'triton' or 'reference', got {impl!r}")


def use_triton(impl: str, *tensors) -> bool:
    """Dispatch rule of the functional APIs: ``"auto"`` takes the Triton path when every tensor is on CUDA, none is
    float64 (the kernels compute in float32) and triton imports; ``"triton"`` forces it (on CPU only under
    ``TRITON_INTERPRET=1``); ``"reference"`` never."""
    check_impl(impl)
    if impl == "reference":
        return False
    if impl == "triton":
        return True
    ts = [t for t in tensors if t is not None]
    if not all(t.is_cuda for t in ts) or any(t.dtype == torch.float64 for t in ts):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True

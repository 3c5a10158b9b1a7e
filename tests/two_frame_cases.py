"""Inputs for the two-frame consistency-loss tests (warp, photometric, segmentation; references and kernels).

* :func:`random_pair`: random but generic inputs (non-integer sample positions, a few invalid depths), for comparing
  implementations and gradchecks.
* :func:`plane_scene`: an analytic scene — a textured plane seen from two camera poses, rendered in closed form
  (ray-plane intersection), with its true depths and poses — for "true geometry gives ~zero loss" tests.

Conventions as the losses: OpenCV camera axes, pixel (i, j) centre at (x, y) = (j, i), ``X2 = R X1 + T``.
"""

from __future__ import annotations

import math

import torch

from hpc_taskology.losses.warp import axis_angle_to_matrix, pixel_grid


def intrinsics(b: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """(B, 3, 3) pinhole K with fx ~ 0.9 W and a slightly off-centre principal point (pixels)."""
    K = torch.tensor([[0.9 * w, 0.0, 0.5 * (w - 1) + 0.3], [0.0, 0.85 * w, 0.5 * (h - 1) - 0.2], [0.0, 0.0, 1.0]],
                     dtype=dtype)
    return K.expand(b, 3, 3).contiguous()


def random_pair(b: int, h: int, w: int, channels: int = 3, motion: bool = True, mask: bool = True,
                invalid: bool = True, dtype=torch.float64, seed: int = 0, requires_grad: bool = True) -> dict:
    """Keyword inputs of ``photometric_consistency`` / ``segmentation_consistency`` (``frame1``/``frame2`` hold the
    images or logits: rename as needed).  Depths 2-3 m, rotations ~0.02 rad, translations ~0.1 m, object motion
    ~0.05 m; with ``invalid`` a NaN, a negative and a zero depth in frame 1 and an inf in frame 2."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    def n(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    d1, d2 = r(b, 1, h, w, scale=1.0, shift=2.0), r(b, 1, h, w, scale=1.0, shift=2.0)
    if invalid:
        d1[0, 0, h // 2, w // 2] = float("nan")
        d1[-1, 0, 1, 1] = -1.0
        d1[-1, 0, h - 1, w - 2] = 0.0
        d2[0, 0, 1, w - 2] = float("inf")
    out = dict(
        frame1=r(b, channels, h, w) if channels == 3 else n(b, channels, h, w, scale=2.0),
        frame2=r(b, channels, h, w) if channels == 3 else n(b, channels, h, w, scale=2.0),
        depth1=d1, depth2=d2, K=intrinsics(b, h, w, dtype),
        rot_1to2=n(b, 3, scale=0.02), trans_1to2=n(b, 3, scale=0.1),
        rot_2to1=n(b, 3, scale=0.02), trans_2to1=n(b, 3, scale=0.1),
        obj_motion_1to2=n(b, 3, h, w, scale=0.05) if motion else None,
        obj_motion_2to1=n(b, 3, h, w, scale=0.05) if motion else None,
        movable1=(r(b, 1, h, w) > 0.5) if (motion and mask) else None,
        movable2=(r(b, 1, h, w) > 0.5) if (motion and mask) else None,
    )
    if requires_grad:
        for k in ("depth1", "depth2", "rot_1to2", "trans_1to2", "rot_2to1", "trans_2to1", "obj_motion_1to2",
                  "obj_motion_2to1"):
            if out[k] is not None:
                out[k].requires_grad_(True)
    return out


GRAD_KEYS = ("depth1", "depth2", "rot_1to2", "trans_1to2", "rot_2to1", "trans_2to1", "obj_motion_1to2",
             "obj_motion_2to1")


def _texture(X: torch.Tensor, channels: int) -> torch.Tensor:
    """Smooth scene-fixed texture of 3-D points X (B, 3, H, W) metres: ``channels`` maps in [0, 1], wavelength 3-5 m
    (15-25 pixels at the plane's distance, so bilinear interpolation is accurate)."""
    outs = []
    for c in range(channels):
        a = torch.tensor([math.cos(1.3 * c + 0.4), math.sin(1.3 * c + 0.4), 0.3 * math.cos(c)], dtype=X.dtype)
        k = 2 * math.pi / (3.0 + 0.5 * c)
        phase = k * (a[:, None, None] * X[:, :3]).sum(1, keepdim=True) + 0.7 * c
        outs.append(0.5 + 0.3 * torch.sin(phase))
    return torch.cat(outs, 1)


def plane_scene(b: int = 2, h: int = 24, w: int = 32, channels: int = 3, rot=(0.01, -0.02, 0.005),
                trans=(0.2, -0.05, 0.3), dtype=torch.float32) -> dict:
    """Two views of the textured plane ``n . X1 = d`` (frame-1 camera coordinates, ~6 m ahead, tilted).

    Frame 2's camera sees ``X2 = R X1 + T`` (``R = Rodrigues(rot)``); the plane there is ``(R n) . X2 = d + (R n) . T``.
    Each view's depth is the ray-plane intersection ``z = d / (n . K^-1 p)`` and its image the texture of the 3-D point
    in frame-1 (scene) coordinates.  Returns the images (or logit-like maps), exact depths, K and the exact poses both
    ways: ``rot_2to1 = -rot``, ``trans_2to1 = -R^T T``.
    """
    f64 = torch.float64
    K = intrinsics(b, h, w, f64)
    rays = torch.einsum("bij,jhw->bihw", torch.linalg.inv(K), pixel_grid(h, w, f64, "cpu"))
    n1 = torch.tensor([0.15, -0.25, 1.0], dtype=f64)
    n1 = n1 / n1.norm()
    d = 6.0
    w_ = torch.tensor(rot, dtype=f64).expand(b, 3)
    T = torch.tensor(trans, dtype=f64).expand(b, 3)
    R = axis_angle_to_matrix(w_)
    depth1 = d / (n1[None, :, None, None] * rays).sum(1, keepdim=True)
    X1 = depth1 * rays
    n2 = R @ n1  # (B, 3)
    d2 = d + (n2 * T).sum(-1)
    depth2 = d2[:, None, None, None] / (n2[:, :, None, None] * rays).sum(1, keepdim=True)
    X2 = depth2 * rays
    X2_in_1 = torch.einsum("bji,bjhw->bihw", R, X2 - T[:, :, None, None])  # R^T (X2 - T)
    out = dict(frame1=_texture(X1, channels), frame2=_texture(X2_in_1, channels), depth1=depth1, depth2=depth2, K=K,
               rot_1to2=w_.clone(), trans_1to2=T.clone(), rot_2to1=-w_,
               trans_2to1=-torch.einsum("bji,bj->bi", R, T))
    return {k: v.to(dtype).contiguous() for k, v in out.items()}

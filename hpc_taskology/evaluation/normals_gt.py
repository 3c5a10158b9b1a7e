"""Reference surface normals from measured depth, for evaluating normal predictions on real RGB-D frames.

Method: total-least-squares plane fit (PCA) over the valid back-projected points of a k×k window around each
pixel — the normal is the eigenvector of the window's 3×3 point covariance with the smallest eigenvalue (Klasing et
al., ICRA 2009, "PlanePCA", the method Taskology cites [31]; also how NYUv2 normals are commonly derived).  A pixel
gets a normal only where its own depth is valid, at least ``min_fraction`` of its window is valid, and the fit is
planar (smallest eigenvalue ≤ ``max_curvature`` × trace: surface variation of Pauly et al. 2002), and no depth
discontinuity lies inside the window (no pair of valid neighbouring pixels whose depths differ by more than
``max_jump`` × depth — two parallel surfaces at an occluding edge can look like one steep plane to PCA alone), so
depth edges and holes are left out rather than smeared.

Conventions: depth (B, 1, H, W) metres along the optical axis, 0 or non-finite = no measurement; K (B, 3, 3) pixels;
pixel (i, j) centre at (x=j, y=i); camera frame x right, y down, z forward; returned normals are unit vectors in the
camera frame oriented to face the camera (n · X ≤ 0 for the point X seen at the pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame points X = z K⁻¹ (j, i, 1)ᵀ, shape (B, 3, H, W), metres."""
    b, _, h, w = depth.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=depth.dtype), torch.arange(w, dtype=depth.dtype), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(1, 3, -1).expand(b, 3, h * w)
    rays = torch.linalg.inv(K.to(depth.dtype)) @ pix
    return (rays * depth.reshape(b, 1, -1)).reshape(b, 3, h, w)


def normals_from_plane_fit(depth: torch.Tensor, K: torch.Tensor, window: int = 7, min_fraction: float = 0.6,
                           max_curvature: float = 0.02, max_jump: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Normals (B, 3, H, W) and their validity (B, 1, H, W) from measured depth by per-window PCA plane fits.

    ``window`` must be odd.  Raises ``ValueError`` for bad shapes or an even window.
    """
    if depth.ndim != 4 or depth.shape[1] != 1 or K.shape != (depth.shape[0], 3, 3):
        raise ValueError(f"normals_from_plane_fit: depth must be (B, 1, H, W) and K (B, 3, 3); got "
                         f"{tuple(depth.shape)} and {tuple(K.shape)}")
    if window % 2 != 1:
        raise ValueError(f"normals_from_plane_fit: window must be odd, got {window}")
    d = depth.double()
    ok = (torch.isfinite(d) & (d > 0)).double()
    pts = backproject(torch.where(ok > 0, d, torch.zeros_like(d)), K) * ok
    b, _, h, w = d.shape
    pad = window // 2
    box = lambda t: F.avg_pool2d(t, window, stride=1, padding=pad, count_include_pad=True) * window * window  # noqa: E731
    n = box(ok)                                             # valid points per window
    s1 = box(pts)                                           # Σ X
    outer = (pts.unsqueeze(1) * pts.unsqueeze(2)).reshape(b, 9, h, w)
    s2 = box(outer)                                         # Σ X Xᵀ
    nn_ = n.clamp_min(1.0)
    mean = s1 / nn_
    cov = (s2 / nn_).reshape(b, 3, 3, h, w) - mean.unsqueeze(1) * mean.unsqueeze(2)
    cov = cov.permute(0, 3, 4, 1, 2)                        # (B, H, W, 3, 3)
    evals, evecs = torch.linalg.eigh(cov)
    normal = evecs[..., 0].permute(0, 3, 1, 2)              # smallest eigenvalue's eigenvector
    flip = ((normal * pts).sum(1, keepdim=True) > 0).double()
    normal = normal * (1 - 2 * flip)                        # face the camera
    curvature = evals[..., 0] / evals.sum(-1).clamp_min(1e-12)
    jump = torch.zeros_like(d)
    for dim in (2, 3):  # vertical and horizontal neighbour pairs where both depths are measured
        dz = (d.narrow(dim, 1, d.shape[dim] - 1) - d.narrow(dim, 0, d.shape[dim] - 1)).abs()
        both = ok.narrow(dim, 1, d.shape[dim] - 1) * ok.narrow(dim, 0, d.shape[dim] - 1)
        edge = ((dz > max_jump * d.narrow(dim, 0, d.shape[dim] - 1)) & (both > 0)).double()
        jump.narrow(dim, 0, d.shape[dim] - 1).copy_(torch.maximum(jump.narrow(dim, 0, d.shape[dim] - 1), edge))
    near_edge = F.max_pool2d(jump, window, stride=1, padding=pad) > 0
    valid = ((ok > 0) & (n >= min_fraction * window * window) & (curvature.unsqueeze(1) <= max_curvature)
             & ~near_edge)
    return normal.to(depth.dtype), valid

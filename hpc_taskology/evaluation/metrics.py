"""Standard monocular-depth and surface-normal metrics.

Depth: the metrics of Eigen et al. (NIPS 2014) as computed by monodepth2 (``compute_errors``): abs_rel, sq_rel,
rmse, rmse_log and the threshold accuracies δ < 1.25, 1.25², 1.25³, over pixels with valid ground truth inside
[min_depth, max_depth], per image and then averaged over images.  Optional per-image median scaling
(pred × median(gt)/median(pred), monodepth2's protocol for scale-ambiguous predictions) — results are reported both
with and without it.

Normals: angular error in degrees between unit vectors, summarised as mean, median and the fraction of pixels
within 11.25°, 22.5° and 30° (Fouhey et al. ICCV 2013; the columns of Taskology's Table 3), pooled over all valid
pixels of the evaluation set.
"""

from __future__ import annotations

import math

import torch

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
NORMAL_METRICS = ("mean_deg", "median_deg", "within_11.25", "within_22.5", "within_30")


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, *, median_scaling: bool,
                  min_depth: float = 0.1, max_depth: float = 10.0) -> dict[str, float]:
    """Mean over images of the per-image depth metrics.

    pred, gt: (B, 1, H, W) or (B, H, W) metres, same shape; valid: bool of the same shape (measured GT pixels).
    Pixels count where ``valid`` and ``min_depth < gt < max_depth`` and ``pred`` is finite; predictions are clamped
    to [min_depth, max_depth] as in monodepth2.  Images with no such pixel are skipped; the result has
    ``n_images`` and ``n_pixels``.  Raises ``ValueError`` if shapes differ or no image has a valid pixel.
    """
    if pred.shape != gt.shape or valid.shape != gt.shape:
        raise ValueError(f"depth_metrics: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)} differ")
    per_image, n_pixels = [], 0
    for p, g, v in zip(pred.double(), gt.double(), valid):
        m = v & (g > min_depth) & (g < max_depth) & torch.isfinite(p) & torch.isfinite(g)
        if not m.any():
            continue
        p, g = p[m], g[m]
        if median_scaling:
            p = p * (g.median() / p.median().clamp_min(1e-6))
        p = p.clamp(min_depth, max_depth)
        ratio = torch.maximum(p / g, g / p)
        per_image.append(torch.stack([
            ((p - g).abs() / g).mean(),
            ((p - g) ** 2 / g).mean(),
            ((p - g) ** 2).mean().sqrt(),
            ((p.log() - g.log()) ** 2).mean().sqrt(),
            (ratio < 1.25).double().mean(),
            (ratio < 1.25**2).double().mean(),
            (ratio < 1.25**3).double().mean(),
        ]))
        n_pixels += int(m.sum())
    if not per_image:
        raise ValueError("depth_metrics: no image has a valid ground-truth pixel in range")
    mean = torch.stack(per_image).mean(0)
    return {**{k: float(v) for k, v in zip(DEPTH_METRICS, mean)}, "n_images": len(per_image), "n_pixels": n_pixels}


def angular_error_deg(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between normal maps (B, 3, H, W) (normalised here; zero vectors give NaN, mask them)."""
    p = pred / pred.norm(dim=1, keepdim=True)
    g = gt / gt.norm(dim=1, keepdim=True)
    return torch.rad2deg(torch.acos((p * g).sum(1).clamp(-1.0, 1.0)))


def normal_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Angular-error summary over all valid pixels.

    pred, gt: (B, 3, H, W) camera-frame normals (any length; normalised here); valid: (B, 1, H, W) or (B, H, W) bool.
    Raises ``ValueError`` on shape mismatch or when no pixel is valid.
    """
    if pred.shape != gt.shape or pred.shape[1] != 3:
        raise ValueError(f"normal_metrics: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be (B, 3, H, W)")
    err = angular_error_deg(pred.double(), gt.double())
    m = valid.reshape(err.shape) & torch.isfinite(err)
    if not m.any():
        raise ValueError("normal_metrics: no valid pixel")
    e = err[m]
    return {
        "mean_deg": float(e.mean()),
        "median_deg": float(e.median()),
        "within_11.25": float((e < 11.25).double().mean()),
        "within_22.5": float((e < 22.5).double().mean()),
        "within_30": float((e < 30.0).double().mean()),
        "n_pixels": int(m.sum()),
    }


def nanmean_dicts(rows: list[dict]) -> dict:
    """Key-wise mean of metric dicts (for averaging runs); keys missing somewhere are dropped."""
    keys = set.intersection(*(set(r) for r in rows)) if rows else set()
    return {k: sum(r[k] for r in rows) / len(rows) for k in sorted(keys) if not math.isnan(sum(r[k] for r in rows))}

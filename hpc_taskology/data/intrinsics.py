"""Pinhole intrinsics under resizing and cropping, and nearest-neighbour resampling on the same pixel grid.

Convention (schema.py): pixel (row i, column j) has its centre at image coordinates (x=j, y=i); the image covers
x in [-0.5, W - 0.5].  Resizing W → W' maps the continuous coordinate x to x' = (x + 0.5)·W'/W - 0.5 (the
half-pixel rule of ``torch.nn.functional.interpolate(align_corners=False)``, Pillow's ``resize`` and OpenCV's
``resize``), so a 3-D point that projects to (x, y) under K projects to (x', y') under the scaled K.  Cropping at
(top, left) subtracts the offset from the principal point.
"""

from __future__ import annotations

import numpy as np


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K (3, 3) or (..., 3, 3), pixels, for an image resized by factors ``sx = W'/W``, ``sy = H'/H``.

    fx' = sx·fx, cx' = sx·(cx + 0.5) - 0.5 (likewise y), skew scaled by sx.  Returns a new float64 array.
    Raises ``ValueError`` if K is not (..., 3, 3) or a factor is not positive.
    """
    K = np.array(K, dtype=np.float64, copy=True)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K: expected shape (..., 3, 3), got {K.shape}")
    if not (sx > 0 and sy > 0):
        raise ValueError(f"scale factors must be > 0, got sx={sx}, sy={sy}")
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = sx * (K[..., 0, 2] + 0.5) - 0.5
    K[..., 1, 2] = sy * (K[..., 1, 2] + 0.5) - 0.5
    return K


def crop_intrinsics(K: np.ndarray, top: int, left: int) -> np.ndarray:
    """K (..., 3, 3) for the window starting at pixel row ``top``, column ``left``: cx -= left, cy -= top."""
    K = np.array(K, dtype=np.float64, copy=True)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K: expected shape (..., 3, 3), got {K.shape}")
    K[..., 0, 2] -= left
    K[..., 1, 2] -= top
    return K


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels along one axis, nearest neighbour under the half-pixel rule.

    Output pixel k has centre x' = k, i.e. source coordinate x = (k + 0.5)·n_in/n_out - 0.5; the nearest source pixel
    is floor((k + 0.5)·n_in/n_out) (as torch ``mode="nearest-exact"`` and Pillow ``NEAREST``).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got {n_in} -> {n_out}")
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, ...) array (depth, valid masks, labels, normals) to (height, width, ...).

    Never mixes values of neighbouring pixels, so a valid mask stays exact and an invalid depth never leaks into a
    valid one.
    """
    rows = nearest_index(arr.shape[0], height)
    cols = nearest_index(arr.shape[1], width)
    return arr[rows][:, cols]

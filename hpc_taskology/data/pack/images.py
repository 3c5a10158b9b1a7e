"""Image file I/O shared by the packers, through Pillow: decode fully, check mode and size, fail naming the file.

Every reader decodes the whole image (``Image.load``) so a truncated file fails here, at packing time, with the
file's path in the message, instead of yielding a half-grey image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .common import SourceError

_RGB_MODES = {"RGB", "RGBA", "RGBX", "P", "L", "LA", "CMYK", "YCbCr"}
_U16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _open(path: Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        im = Image.open(path)
        im.load()
    except (OSError, SyntaxError, ValueError) as e:  # Pillow: "image file is truncated", "broken data stream", ...
        raise SourceError(f"{path}: cannot decode {what} (truncated or corrupt file?): {e}") from None
    return im


def _check_shape(path: Path, what: str, arr: np.ndarray, shape: tuple | None) -> None:
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise SourceError(f"{path}: {what} is {arr.shape[0]}x{arr.shape[1]} (HxW), expected {shape[0]}x{shape[1]}")


def read_rgb(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Colour image → uint8 (H, W, 3), sRGB as stored (alpha dropped, palette/greyscale expanded).

    ``shape`` = (H, W) to check.  Raises ``FileNotFoundError``, or :class:`SourceError` naming the file for a
    truncated/corrupt file, a 16-bit or float image (not a colour photo) or a size other than ``shape``.
    """
    path = Path(path)
    im = _open(path, "colour image")
    if im.mode not in _RGB_MODES:
        raise SourceError(f"{path}: colour image has Pillow mode {im.mode!r}, expected 8-bit RGB (e.g. 'RGB')")
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    _check_shape(path, "colour image", arr, shape)
    return arr


def read_u16(path: str | Path, what: str = "depth PNG", shape: tuple[int, int] | None = None) -> np.ndarray:
    """Single-channel 16-bit PNG (depth in mm or /5000 m, disparity ×256) → uint16 (H, W), values as stored.

    Raises ``FileNotFoundError``, or :class:`SourceError` naming the file when it is truncated/corrupt, not 16-bit
    (e.g. an 8-bit PNG, which would silently quantise depth to 255 levels) or not ``shape``.
    """
    path = Path(path)
    im = _open(path, what)
    if im.mode not in _U16_MODES:
        if im.mode == "I":  # some encoders store 16-bit greyscale that Pillow opens as int32
            arr = np.asarray(im)
            if arr.min() >= 0 and arr.max() <= 65535:
                arr = arr.astype(np.uint16)
                _check_shape(path, what, arr, shape)
                return arr
        raise SourceError(f"{path}: {what} has Pillow mode {im.mode!r}, expected a 16-bit single-channel PNG ('I;16')")
    arr = np.asarray(im).astype(np.uint16, copy=False)
    _check_shape(path, what, arr, shape)
    return arr


def read_labels(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """8- or 16-bit single-channel label PNG (instance / class ids) → int32 (H, W)."""
    path = Path(path)
    im = _open(path, "label PNG")
    if im.mode not in _U16_MODES | {"L", "P", "I"}:
        raise SourceError(f"{path}: label PNG has Pillow mode {im.mode!r}, expected single-channel 8/16-bit")
    arr = np.asarray(im).astype(np.int32)
    _check_shape(path, "label PNG", arr, shape)
    return arr


def write_rgb(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write uint8 (H, W, 3) as PNG or JPEG (by suffix; JPEG at ``quality``)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    im = Image.fromarray(rgb, "RGB")
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=quality)
    else:
        im.save(path)


def write_u16(path: str | Path, arr: np.ndarray) -> None:
    """Write a uint16 (H, W) array as a 16-bit greyscale PNG."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint16 or arr.ndim != 2:
        raise ValueError(f"expected uint16 (H, W), got {arr.dtype} {arr.shape}")
    Image.fromarray(arr).save(path)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 (H, W, 3) with Pillow (half-pixel centres; area support when shrinking)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.BILINEAR))

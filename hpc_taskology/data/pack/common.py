"""What every format reader shares: the pack plan, frame ranges, sample assembly, text matrices, licences.

A format module exposes ``plan(src, frames=None, **options) -> PackPlan``: it parses the cheap metadata
(listings, calibration, poses) and returns the ordered frame descriptors plus ``make_sample(frame)``, which reads
one frame's images.  The driver (:mod:`hpc_taskology.data.parallel`) splits the frame list over MPI ranks.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..intrinsics import resize_nearest, scale_intrinsics


class SourceError(ValueError):
    """The native data is unusable (bad calibration, wrong dtype, NaN pose, truncated image); names the file."""


@dataclass(frozen=True)
class FrameRange:
    """Inclusive range of frame ids ``first:last`` (either end may be open).  Ids are the format's own frame
    numbers (the number in the file name for KITTI raw, HoloLens, ScanNet and KITTI stereo; SceneNet's
    ``frame_num``; the index in the sequence's association list for TUM)."""

    first: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "FrameRange | None":
        """``"3:152"`` → ids 3..152 inclusive; ``"3:"``/``":152"`` open-ended; ``"7"`` one frame; None → all."""
        if text is None or text == "":
            return None
        m = re.fullmatch(r"\s*(-?\d*)\s*(:?)\s*(-?\d*)\s*", text)
        if not m or (not m.group(2) and not m.group(1)):
            raise ValueError(f"--frames: expected 'A:B' (inclusive frame ids), 'A:', ':B' or 'A', got {text!r}")
        a = int(m.group(1)) if m.group(1) else None
        b = (int(m.group(3)) if m.group(3) else None) if m.group(2) else a
        if a is not None and b is not None and b < a:
            raise ValueError(f"--frames {text!r}: last id {b} is before first id {a}")
        return cls(a, b)

    def __contains__(self, frame_id: int) -> bool:
        return (self.first is None or frame_id >= self.first) and (self.last is None or frame_id <= self.last)


def select(items: list, ids: Iterable[int], frames: FrameRange | None, what: str) -> list:
    """Keep the items whose frame id is in ``frames``; raises ``SourceError`` if none is left."""
    ids = list(ids)
    if frames is None:
        kept = items
    else:
        kept = [it for it, i in zip(items, ids) if i in frames]
    if not kept:
        have = f"ids {min(ids)}..{max(ids)}" if ids else "no frames"
        raise SourceError(f"{what}: no frame selected by {frames} (the source has {have})")
    return kept


@dataclass
class PackPlan:
    """The frames of one output file and how to read each.

    ``frames``: picklable descriptors in output order; ``make_sample(frame)`` returns a schema sample (numpy,
    native resolution ``height`` × ``width``); ``source``/``licence``: root attributes (the licence text of the
    data, copied from the source tree); ``optional``: optional schema datasets every sample carries; ``attrs``:
    extra root attributes (calibration, assumptions, skipped frames).
    """

    frames: list
    make_sample: Callable[[Any], dict]
    height: int
    width: int
    source: str
    licence: str
    optional: tuple = ()
    attrs: dict = field(default_factory=dict)

    def resized(self, height: int | None, width: int | None) -> "PackPlan":
        """The same plan writing samples resized to ``height`` × ``width`` (K updated; see :func:`resize_sample`)."""
        if not height and not width:
            return self
        if not (height and width) or height < 1 or width < 1:
            raise ValueError(f"--height/--width: give both, positive; got {height}x{width}")
        make = self.make_sample
        attrs = {**self.attrs, "native_height": self.height, "native_width": self.width}
        return replace(self, make_sample=_Resized(make, height, width), height=height, width=width, attrs=attrs)


class _Resized:
    """Picklable ``make_sample`` wrapper that resizes each sample."""

    def __init__(self, make, height, width):
        self.make, self.height, self.width = make, height, width

    def __call__(self, frame):
        return resize_sample(self.make(frame), self.height, self.width)


_NEAREST = ("depth", "valid", "normals", "segmentation", "instance", "object_motion", "movable")


def resize_sample(sample: dict, height: int, width: int) -> dict:
    """Resize a sample's images to ``height`` × ``width`` and scale K (half-pixel rule, see intrinsics.py).

    rgb / rgb_right: bilinear (Pillow).  depth, valid, normals, labels, motion: nearest neighbour, so no invalid
    depth is blended into a valid one.  disparity is nearest-resampled and multiplied by the horizontal factor
    (disparity is a horizontal pixel distance).
    """
    from .images import resize_rgb

    h0, w0 = sample["rgb"].shape[:2]
    if (h0, w0) == (height, width):
        return sample
    out = dict(sample)
    for k in ("rgb", "rgb_right"):
        if k in out:
            out[k] = resize_rgb(out[k], height, width)
    for k in _NEAREST:
        if k in out:
            out[k] = resize_nearest(np.asarray(out[k]), height, width)
    if "disparity" in out:
        out["disparity"] = resize_nearest(np.asarray(out["disparity"]), height, width) * np.float32(width / w0)
    out["K"] = scale_intrinsics(out["K"], width / w0, height / h0)
    return out


def make_sample(*, rgb: np.ndarray, depth: np.ndarray | None, K: np.ndarray, cam_to_world: np.ndarray | None,
                frame_id: int, sequence: str, timestamp: float = float("nan"), **optional) -> dict:
    """Assemble a schema sample.  depth: (H, W) metres (z-depth) or None (unknown → 0, not valid); non-finite or
    non-positive depth is marked not valid and set to 0.  cam_to_world None or non-finite → NaN, pose_valid False."""
    h, w = rgb.shape[:2]
    if depth is None:
        depth = np.zeros((h, w), np.float32)
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, np.float32(0))
    if cam_to_world is None:
        cam_to_world = np.full((4, 4), np.nan)
    cam_to_world = np.asarray(cam_to_world, dtype=np.float64)
    pose_valid = bool(np.isfinite(cam_to_world).all())
    return {"rgb": rgb, "depth": depth, "valid": valid, "K": np.asarray(K, dtype=np.float64),
            "cam_to_world": cam_to_world if pose_valid else np.full((4, 4), np.nan), "pose_valid": pose_valid,
            "frame_id": int(frame_id), "sequence": str(sequence), "timestamp": float(timestamp), **optional}


def read_matrix(path: str | Path, shape: tuple[int, ...], what: str = "matrix",
                allow_nonfinite: bool = False) -> np.ndarray:
    """Whitespace-separated numbers in a text file → float64 array of ``shape`` (e.g. a 4×4 pose or a 3×3 K).

    Raises ``FileNotFoundError``, or :class:`SourceError` naming the file when it has the wrong number of values,
    something that is not a number, or (unless ``allow_nonfinite``) a NaN/Inf value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as e:
        raise SourceError(f"{path}: {what} holds something that is not a number: {e}") from None
    if values.size != int(np.prod(shape)):
        raise SourceError(f"{path}: {what} has {values.size} values, expected {int(np.prod(shape))} {shape}")
    if not allow_nonfinite and not np.isfinite(values).all():
        raise SourceError(f"{path}: {what} contains NaN/Inf values")
    return values.reshape(shape)


def check_intrinsics(K: np.ndarray, where: str) -> np.ndarray:
    """Raise :class:`SourceError` naming ``where`` unless K is a finite pinhole matrix with fx, fy > 0."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or \
            not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
        raise SourceError(f"{where}: not a pinhole K (expected [[fx,s,cx],[0,fy,cy],[0,0,1]], fx,fy>0), got {K.tolist()}")
    return K


LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENCE.txt", "COPYING")


def find_licence(start: Path, stop: Path | None = None) -> tuple[str, Path] | None:
    """The first licence file found in ``start`` or its parents up to ``stop`` (inclusive): (text, path)."""
    start = Path(start).resolve()
    stop = Path(stop).resolve() if stop is not None else None
    for d in [start, *start.parents]:
        for name in LICENCE_NAMES:
            p = d / name
            if p.is_file():
                return p.read_text(errors="replace"), p
        if stop is not None and d == stop:
            break
    return None


def licence_for(src: Path, start: Path, default: str) -> tuple[str, str]:
    """(licence text, where it came from): the source tree's licence file if any, else ``default``."""
    found = find_licence(start, Path(src).parent)
    if found:
        return found[0], str(found[1])
    return default, "packer default (no licence file in the source tree)"


def write_licence_file(out_path: str | Path, licence: str) -> Path:
    """Write ``LICENSE-<stem>.txt`` beside a packed file (keep the data's licence with anything derived)."""
    out_path = Path(out_path)
    p = out_path.with_name(f"LICENSE-{out_path.stem}.txt")
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(licence if licence.endswith("\n") else licence + "\n")
    tmp.replace(p)
    return p


def warn_skipped(what: str, skipped: list, reason: str, verb: str = "skipped") -> None:
    """One warning per packing run counting the affected frames (not one per frame):
    ``"<what>: <verb> <n> frame(s) with <reason>: <first ids>"``."""
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(f"{what}: {verb} {len(skipped)} frame(s) with {reason}: {shown}", stacklevel=3)

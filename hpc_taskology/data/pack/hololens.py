"""HoloLens RGB-D sequences in DeepVideoMVS's layout (ardaduz/deep-video-mvs ``sample-data/hololens-dataset``).

Layout::

    images/<id>.png   RGB, undistorted          depth/<id>.png   uint16 millimetres, 0 = no measurement
    poses.txt         one flattened 4×4 camera-to-world matrix per line; line i = i-th image in sorted order
    K.txt             3×3 intrinsics (pixels) of the undistorted images

Conventions match ScanNet's (mm depth, camera-to-world, OpenCV camera axes).  ``frame_id`` = the number in the file
name; ``--frames A:B`` selects ids A..B inclusive (e.g. ``3:152``).  ``timestamp`` is unknown (NaN); ``sequence`` is
the source folder's name.  A NaN/Inf pose, a pose count that differs from the image count, a missing depth file or
an 8-bit depth PNG is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import FrameRange, PackPlan, SourceError, check_intrinsics, licence_for, make_sample, read_matrix, select
from .images import read_rgb, read_u16

DEFAULT_LICENCE = ("HoloLens sample of DeepVideoMVS (github.com/ardaduz/deep-video-mvs): MIT License, "
                   "Copyright (c) 2020 Arda Duzceker")


def read_poses(path: Path, n: int) -> np.ndarray:
    """poses.txt → float64 (n, 4, 4) camera-to-world.  Raises naming the file and line for a wrong count of lines or
    values, a non-number, a NaN/Inf entry or a last row other than [0, 0, 0, 1]."""
    if not path.is_file():
        raise FileNotFoundError(f"HoloLens poses file {path} does not exist")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) != n:
        raise SourceError(f"{path}: {len(lines)} pose lines but {n} images (line i must be the i-th image)")
    out = np.empty((n, 4, 4))
    for i, ln in enumerate(lines):
        try:
            v = np.array(ln.split(), dtype=np.float64)
        except ValueError:
            raise SourceError(f"{path}:{i + 1}: not a list of numbers") from None
        if v.size != 16:
            raise SourceError(f"{path}:{i + 1}: {v.size} values, expected 16 (a flattened 4x4 camera-to-world)")
        if not np.isfinite(v).all():
            raise SourceError(f"{path}:{i + 1}: pose contains NaN/Inf")
        T = v.reshape(4, 4)
        if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise SourceError(f"{path}:{i + 1}: last row is {T[3].tolist()}, expected [0, 0, 0, 1]")
        out[i] = T
    return out


@dataclass(frozen=True)
class HoloFrame:
    image: Path
    depth: Path
    frame_id: int
    sequence: str
    K: np.ndarray
    cam_to_world: np.ndarray


def _read(fr: HoloFrame) -> dict:
    rgb = read_rgb(fr.image)
    depth = read_u16(fr.depth, "depth PNG (uint16 mm)", rgb.shape[:2]).astype(np.float32) / np.float32(1000.0)
    return make_sample(rgb=rgb, depth=depth, K=fr.K, cam_to_world=fr.cam_to_world, frame_id=fr.frame_id,
                       sequence=fr.sequence)


def plan(src: str | Path, frames: FrameRange | None = None) -> PackPlan:
    """Plan packing one HoloLens sequence folder ``src``; ``frames`` = inclusive range of frame ids."""
    src = Path(src)
    if not (src / "images").is_dir():
        raise FileNotFoundError(f"{src / 'images'} does not exist (expected images/, depth/, poses.txt, K.txt)")
    images = sorted((src / "images").glob("*.png"))
    if not images:
        raise SourceError(f"{src / 'images'}: no PNG images")
    try:
        ids = [int(p.stem) for p in images]
    except ValueError:
        raise SourceError(f"{src / 'images'}: image names must be frame numbers (e.g. 00003.png)") from None
    poses = read_poses(src / "poses.txt", len(images))
    K = check_intrinsics(read_matrix(src / "K.txt", (3, 3), "K"), str(src / "K.txt"))
    items = select(list(zip(images, ids, poses)), ids, frames, str(src))
    plan_frames = []
    for img, fid, pose in items:
        depth = src / "depth" / img.name
        if not depth.is_file():
            raise FileNotFoundError(f"depth image {depth} does not exist (for {img})")
        plan_frames.append(HoloFrame(img, depth, fid, src.name, K, pose))
    with Image.open(images[0]) as im:
        w, h = im.size
    licence, licence_from = licence_for(src, src, DEFAULT_LICENCE)
    return PackPlan(frames=plan_frames, make_sample=_read, height=h, width=w,
                    source=f"HoloLens RGB-D, DeepVideoMVS layout ({src.resolve()})", licence=licence,
                    attrs={"format": "hololens", "licence_file": licence_from, "depth_units": "uint16 mm -> m",
                           "frames": f"{plan_frames[0].frame_id}:{plan_frames[-1].frame_id}"})

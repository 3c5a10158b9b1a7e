"""KITTI stereo pairs with ground-truth disparity → packed HDF5 (Geiger et al., CVPR 2012; Menze & Geiger, CVPR 2015).

Layouts read (SRC is searched recursively):

* flat, as PaddleDepth's examples: ``<scene>_<frame>_l.png``, ``<scene>_<frame>_r.png``, ``<scene>_<frame>_disp.png``;
* KITTI 2012 native: ``colored_0/``, ``colored_1/``, ``disp_occ/`` (or ``disp_noc/``), ``calib/<scene>.txt`` (P2, P3);
* KITTI 2015 native: ``image_2/``, ``image_3/``, ``disp_occ_0/`` (or ``disp_noc_0/``),
  ``calib_cam_to_cam/<scene>.txt`` (P_rect_02, P_rect_03).

Disparity PNGs are uint16, disparity = value / 256 px, 0 = no ground truth.  Samples carry ``rgb`` (left),
``rgb_right``, ``disparity`` (px), ``baseline`` (m) and ``depth`` = f·B/d where d > 0 (``valid`` = d > 0).
K and the baseline come from the calibration file when the layout has one; otherwise from the options (defaults:
f = 721.5377 px, the rectified focal length of KITTI's 2011_09_26 calibration, B = 0.54 m, the rig's nominal
baseline, principal point at the image centre) and the file's ``intrinsics_assumed``/``baseline_assumed``
attributes are true.  ``frame_id`` = the scene number, ``sequence`` = ``<scene>_<frame>``; poses unknown (NaN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import FrameRange, PackPlan, SourceError, check_intrinsics, licence_for, make_sample, select
from .images import read_rgb, read_u16
from .kitti_raw import read_calib_file

DEFAULT_LICENCE = (
    "KITTI stereo benchmark data (Geiger, Lenz, Urtasun: Are we ready for Autonomous Driving? The KITTI Vision "
    "Benchmark Suite, CVPR 2012), http://www.cvlibs.net/datasets/kitti/ - licensed under the Creative Commons "
    "Attribution-NonCommercial-ShareAlike 3.0 License (CC BY-NC-SA 3.0): non-commercial use only, attribution, "
    "share alike."
)
DEFAULT_FOCAL = 721.5377  # px
DEFAULT_BASELINE = 0.54  # m
DISP_SCALE = 256.0

_NATIVE = [  # (left dir, right dir, disparity dirs, calib dir, (P left key, P right key))
    ("colored_0", "colored_1", ("disp_occ", "disp_noc"), "calib", ("P2", "P3")),
    ("image_2", "image_3", ("disp_occ_0", "disp_noc_0"), "calib_cam_to_cam", ("P_rect_02", "P_rect_03")),
]


@dataclass(frozen=True)
class StereoFrame:
    left: Path
    right: Path
    disparity: Path
    frame_id: int
    sequence: str
    K: np.ndarray | None  # None: assumed intrinsics (principal point at the image centre)
    baseline: float


def _calib(path: Path, keys: tuple[str, str]) -> tuple[np.ndarray, float]:
    c = read_calib_file(path)
    P = []
    for k in keys:
        if k not in c or c[k].size != 12:
            raise SourceError(f"{path}: key {k!r} missing or not 12 values")
        P.append(c[k].reshape(3, 4))
    K = check_intrinsics(P[0][:, :3], f"{path} {keys[0]}")
    return K, float((P[0][0, 3] - P[1][0, 3]) / P[0][0, 0])


class _Reader:
    def __init__(self, focal: float, cx: float | None, cy: float | None):
        self.focal, self.cx, self.cy = focal, cx, cy

    def __call__(self, fr: StereoFrame) -> dict:
        rgb = read_rgb(fr.left)
        h, w = rgb.shape[:2]
        right = read_rgb(fr.right, (h, w))
        disp = read_u16(fr.disparity, "disparity PNG (uint16, /256 px)", (h, w)).astype(np.float32) / np.float32(DISP_SCALE)
        K = fr.K
        if K is None:
            cx = (w - 1) / 2 if self.cx is None else self.cx
            cy = (h - 1) / 2 if self.cy is None else self.cy
            K = np.array([[self.focal, 0, cx], [0, self.focal, cy], [0, 0, 1.0]])
        depth = np.where(disp > 0, np.float32(K[0, 0] * fr.baseline) / np.maximum(disp, np.float32(1e-6)), 0)
        return make_sample(rgb=rgb, depth=depth.astype(np.float32), K=K, cam_to_world=None, frame_id=fr.frame_id,
                           sequence=fr.sequence, rgb_right=right, disparity=disp, baseline=fr.baseline)


def _find(src: Path, baseline: float) -> tuple[list[StereoFrame], bool]:
    frames, calibrated = [], []
    for left in sorted(src.rglob("*_l.png")):
        stem = left.name[:-len("_l.png")]
        right, disp = left.with_name(f"{stem}_r.png"), left.with_name(f"{stem}_disp.png")
        for p in (right, disp):
            if not p.is_file():
                raise FileNotFoundError(f"{p} does not exist (pair of {left})")
        frames.append((left, right, disp, stem, None, baseline))
    for ldir, rdir, ddirs, cdir, keys in _NATIVE:
        for lpath in sorted(src.rglob(ldir)):
            root = lpath.parent
            ddir = next((root / d for d in ddirs if (root / d).is_dir()), None)
            if ddir is None:
                continue
            for left in sorted(lpath.glob("*_10.png")):
                stem = left.stem
                right, disp = root / rdir / left.name, ddir / left.name
                if not disp.is_file():
                    continue  # KITTI's testing split has no ground truth
                if not right.is_file():
                    raise FileNotFoundError(f"{right} does not exist (pair of {left})")
                cal = root / cdir / f"{stem.split('_')[0]}.txt"
                K, b = _calib(cal, keys) if cal.is_file() else (None, baseline)
                calibrated.append(cal.is_file())
                frames.append((left, right, disp, stem, K, b))
    out = []
    for left, right, disp, stem, K, b in frames:
        m = re.fullmatch(r"(\d+)_(\d+)", stem)
        if not m:
            raise SourceError(f"{left}: name must be <scene>_<frame> (e.g. 000001_10_l.png)")
        out.append(StereoFrame(left, right, disp, int(m.group(1)), stem, K, b))
    return out, all(calibrated) and len(calibrated) == len(out)


def plan(src: str | Path, frames: FrameRange | None = None, focal: float = DEFAULT_FOCAL,
         baseline: float = DEFAULT_BASELINE, cx: float | None = None, cy: float | None = None) -> PackPlan:
    """Plan packing every stereo pair with ground truth at or below ``src``; ``frames`` = inclusive scene numbers.

    ``focal`` (px), ``baseline`` (m), ``cx``/``cy`` (px; default image centre) are used only where the layout has no
    calibration file.  Raises ``FileNotFoundError`` for a missing partner image and :class:`SourceError` for
    malformed names or calibration.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"KITTI stereo source {src} does not exist")
    if not (focal > 0 and baseline > 0):
        raise ValueError(f"--focal and --baseline must be > 0, got {focal}, {baseline}")
    found, calibrated = _find(src, baseline)
    if not found:
        raise SourceError(f"{src}: no stereo pair with disparity (expected *_l.png/*_r.png/*_disp.png or KITTI's "
                          "colored_0/colored_1/disp_occ layout)")
    found = select(found, [f.frame_id for f in found], frames, str(src))
    sizes = set()
    for f in found:
        with Image.open(f.left) as im:
            sizes.add((im.height, im.width))
    if len(sizes) > 1:
        raise SourceError(f"{src}: pairs of different sizes {sorted(sizes)}; pack with --height/--width or separately")
    h, w = sizes.pop()
    licence, licence_from = licence_for(src, found[0].left.parent, DEFAULT_LICENCE)
    attrs = {"format": "kitti_stereo", "licence_file": licence_from, "intrinsics_assumed": not calibrated,
             "baseline_assumed": not calibrated, "disparity_units": "uint16 / 256 -> px, 0 = none",
             "depth_from": "f * baseline / disparity where disparity > 0"}
    if not calibrated:
        attrs.update({"assumed_focal_px": focal, "assumed_baseline_m": baseline,
                      "assumed_principal_point": "image centre" if cx is None else f"{cx},{cy}"})
    return PackPlan(frames=found, make_sample=_Reader(focal, cx, cy), height=h, width=w,
                    source=f"KITTI stereo pairs ({src.resolve()})", licence=licence,
                    optional=("rgb_right", "disparity", "baseline"), attrs=attrs)

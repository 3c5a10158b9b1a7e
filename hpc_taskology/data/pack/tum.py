"""TUM RGB-D benchmark sequences → packed HDF5 (Sturm et al., IROS 2012, "A Benchmark for the Evaluation of RGB-D
SLAM Systems"; https://cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats).

Layout of one sequence folder::

    rgb/<timestamp>.png     8-bit colour, 640×480
    depth/<timestamp>.png   uint16, metres = value / 5000, 0 = missing
    groundtruth.txt         optional: "timestamp tx ty tz qx qy qz qw", pose of the colour camera's optical centre
                            in the motion-capture world (camera-to-world, OpenCV camera axes)

* **Association**: each rgb image is paired with a depth image as TUM's ``associate.py`` does: candidate pairs with
  |t_rgb - t_depth| < 0.02 s, taken greedily by increasing difference, each image used at most once.  Unpaired rgb
  images are dropped (counted in ``unassociated_rgb``).
* **Sequences**: a folder is split into sequences where consecutive rgb timestamps are more than 60 s apart (a folder
  such as tum_rgbd_pairs mixes frames of freiburg1_xyz and freiburg3_long_office_household).  ``frame_id`` is the
  index within its sequence (0-based, by rgb timestamp); ``timestamp`` the rgb timestamp (s).
* **Intrinsics** (TUM's published Kinect calibrations, pixels): ``--camera fr1|fr2|fr3|ros_default`` for all
  sequences, or ``auto`` (default): ``freiburg1``/``fr1``... in the folder name, else the recording date of the
  timestamps (fr1 recorded in May 2011, fr2 July-October 2011, fr3 June-August 2012), else an error asking for
  ``--camera``.  fr1/fr2 images are *not* undistorted by TUM; their distortion coefficients are stored in the
  ``distortion`` attribute and are not applied (fr3 images are already undistorted).
* **Poses**: ground truth is interpolated to the rgb timestamp (linear translation, slerp rotation, between samples at
  most 0.1 s apart), else the nearest sample within 0.02 s, else the pose is unknown (NaN, ``pose_valid`` False).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import FrameRange, PackPlan, SourceError, licence_for, make_sample, warn_skipped
from .images import read_rgb, read_u16

DEFAULT_LICENCE = (
    "TUM RGB-D benchmark (Sturm, Engelhard, Endres, Burgard, Cremers: A Benchmark for the Evaluation of RGB-D SLAM "
    "Systems, IROS 2012), https://cvg.cit.tum.de/data/datasets/rgbd-dataset - licensed under the Creative Commons "
    "Attribution 4.0 International License (CC BY 4.0)."
)
DEPTH_SCALE = 5000.0  # TUM: depth PNG value / 5000 = metres
MAX_ASSOC_DIFF = 0.02  # s, associate.py default
SPLIT_GAP = 60.0  # s between consecutive frames that starts a new sequence
GT_MAX_GAP = 0.1  # s between the two ground-truth samples used for interpolation

# (fx, fy, cx, cy), (d0..d4): TUM file_formats page, "Intrinsic Camera Calibration of the Kinect"
CAMERAS: dict[str, tuple[tuple, tuple]] = {
    "fr1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "fr2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "fr3": ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
    "ros_default": ((525.0, 525.0, 319.5, 239.5), (0.0, 0.0, 0.0, 0.0, 0.0)),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DATES = {  # recording periods of the published sequences, for --camera auto when the folder name does not say
    "fr1": (dt.datetime(2011, 5, 1, tzinfo=dt.timezone.utc), dt.datetime(2011, 6, 1, tzinfo=dt.timezone.utc)),
    "fr2": (dt.datetime(2011, 7, 1, tzinfo=dt.timezone.utc), dt.datetime(2011, 11, 1, tzinfo=dt.timezone.utc)),
    "fr3": (dt.datetime(2012, 6, 1, tzinfo=dt.timezone.utc), dt.datetime(2012, 9, 1, tzinfo=dt.timezone.utc)),
}


def K_of(camera: str) -> np.ndarray:
    """3×3 K (pixels) of a TUM camera name."""
    (fx, fy, cx, cy), _ = CAMERAS[camera]
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def detect_camera(name: str, t0: float) -> str | None:
    """fr1/fr2/fr3 from a sequence folder name (``freiburg1``, ``fr1``...) or the recording date; None if unknown."""
    m = re.search(r"(?:freiburg|fr)([123])", name.lower())
    if m:
        return f"fr{m.group(1)}"
    when = _EPOCH + dt.timedelta(seconds=t0)
    for cam, (a, b) in _DATES.items():
        if a <= when < b:
            return cam
    return None


def associate(first: np.ndarray, second: np.ndarray, max_difference: float = MAX_ASSOC_DIFF) -> list[tuple[int, int]]:
    """Index pairs (i, j) matching timestamps ``first[i]`` ↔ ``second[j]``, TUM ``associate.py``'s rule (offset 0):
    all pairs with |a - b| < max_difference, taken greedily by increasing difference, each index used once.
    Returned sorted by ``first``."""
    order = np.argsort(second)
    s = second[order]
    cands = []
    for i, a in enumerate(first):
        lo, hi = np.searchsorted(s, a - max_difference), np.searchsorted(s, a + max_difference, side="right")
        for k in range(lo, hi):
            d = abs(a - s[k])
            if d < max_difference:
                cands.append((d, i, int(order[k])))
    cands.sort()
    used_a, used_b, out = set(), set(), []
    for _, i, j in cands:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return sorted(out)


def read_groundtruth(path: Path) -> np.ndarray:
    """groundtruth.txt → float64 (N, 8) rows (t, tx, ty, tz, qx, qy, qz, qw) sorted by t.  Raises naming the file and
    line for a wrong count of values, a non-number or NaN/Inf."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            v = [float(x) for x in line.replace(",", " ").split()]
        except ValueError:
            raise SourceError(f"{path}:{n}: not a list of numbers") from None
        if len(v) != 8:
            raise SourceError(f"{path}:{n}: {len(v)} values, expected 8 (timestamp tx ty tz qx qy qz qw)")
        if not np.isfinite(v).all():
            raise SourceError(f"{path}:{n}: pose contains NaN/Inf")
        rows.append(v)
    if not rows:
        raise SourceError(f"{path}: no poses")
    gt = np.array(rows)
    return gt[np.argsort(gt[:, 0], kind="stable")]


def pose_at(gt: np.ndarray, t: float) -> np.ndarray | None:
    """Camera-to-world 4×4 at time ``t`` from ground-truth rows (interpolated, or nearest within 0.02 s); None if
    no sample is close enough.  Quaternions (x, y, z, w) as scipy's ``Rotation.from_quat``."""
    from scipy.spatial.transform import Rotation, Slerp

    k = int(np.searchsorted(gt[:, 0], t))
    T = np.eye(4)
    if 0 < k < len(gt) and gt[k, 0] - gt[k - 1, 0] <= GT_MAX_GAP:
        a, b = gt[k - 1], gt[k]
        w = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 0.0
        T[:3, 3] = (1 - w) * a[1:4] + w * b[1:4]
        T[:3, :3] = Slerp([0.0, 1.0], Rotation.from_quat([a[4:], b[4:]]))([w]).as_matrix()[0]
        return T
    near = [i for i in (k - 1, k) if 0 <= i < len(gt)]
    i = min(near, key=lambda i: abs(gt[i, 0] - t))
    if abs(gt[i, 0] - t) > MAX_ASSOC_DIFF:
        return None
    T[:3, 3] = gt[i, 1:4]
    T[:3, :3] = Rotation.from_quat(gt[i, 4:]).as_matrix()
    return T


@dataclass(frozen=True)
class TumFrame:
    rgb: Path
    depth: Path
    frame_id: int
    sequence: str
    timestamp: float
    K: np.ndarray
    cam_to_world: np.ndarray | None


def _read(fr: TumFrame) -> dict:
    rgb = read_rgb(fr.rgb)
    depth = read_u16(fr.depth, "depth PNG (uint16, /5000 m)", rgb.shape[:2]).astype(np.float32) / np.float32(DEPTH_SCALE)
    return make_sample(rgb=rgb, depth=depth, K=fr.K, cam_to_world=fr.cam_to_world, frame_id=fr.frame_id,
                       sequence=fr.sequence, timestamp=fr.timestamp)


def _stamps(folder: Path) -> tuple[list[Path], np.ndarray]:
    files = sorted(folder.glob("*.png"))
    try:
        t = np.array([float(p.stem) for p in files])
    except ValueError:
        raise SourceError(f"{folder}: file names must be timestamps (e.g. 1305031102.175304.png)") from None
    return files, t


def _folder_sequences(folder: Path, camera: str, frames: FrameRange | None) -> tuple[list[TumFrame], dict]:
    for sub in ("rgb", "depth"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder / sub} does not exist (TUM layout: rgb/, depth/, groundtruth.txt)")
    rgb_files, t_rgb = _stamps(folder / "rgb")
    depth_files, t_depth = _stamps(folder / "depth")
    pairs = associate(t_rgb, t_depth)
    if not pairs:
        raise SourceError(f"{folder}: no rgb image has a depth image within {MAX_ASSOC_DIFF} s")
    gt_path = folder / "groundtruth.txt"
    gt = read_groundtruth(gt_path) if gt_path.is_file() else None
    # split into sequences at large time gaps
    seqs, cur = [], [pairs[0]]
    for p in pairs[1:]:
        if t_rgb[p[0]] - t_rgb[cur[-1][0]] > SPLIT_GAP:
            seqs.append(cur)
            cur = []
        cur.append(p)
    seqs.append(cur)
    out, info, no_pose = [], {}, []
    for seq in seqs:
        t0 = float(t_rgb[seq[0][0]])
        cam = camera if camera != "auto" else detect_camera(folder.name, t0)
        if cam is None:
            raise SourceError(f"{folder}: cannot tell which TUM camera recorded the frames from {t0:.6f} "
                              f"(folder name has no freiburg1/2/3, date unknown); pass --camera fr1|fr2|fr3|ros_default")
        name = folder.name if len(seqs) == 1 else f"{folder.name}_{cam}_{int(t0)}"
        info[name] = {"camera": cam, "frames": len(seq), "first_timestamp": t0}
        items = []
        for fid, (i, j) in enumerate(seq):
            pose = pose_at(gt, float(t_rgb[i])) if gt is not None else None
            if gt is not None and pose is None:
                no_pose.append(f"{name}:{fid}")
            items.append(TumFrame(rgb_files[i], depth_files[j], fid, name, float(t_rgb[i]), K_of(cam), pose))
        if frames is not None:
            items = [f for f in items if f.frame_id in frames]
        out += items
    if not out:
        raise SourceError(f"{folder}: no frame selected by {frames}")
    warn_skipped(str(folder), no_pose, "no ground truth within 0.02 s (pose unknown)", verb="packed")
    extra = {"unassociated_rgb": len(rgb_files) - len(pairs), "groundtruth": gt is not None, "no_pose": len(no_pose)}
    return out, {"sequences": info, **extra}


def plan(src: str | Path, frames: FrameRange | None = None, camera: str = "auto") -> PackPlan:
    """Plan packing a TUM sequence folder (or a folder of them).  ``camera``: ``auto`` or a key of :data:`CAMERAS`.
    ``frames``: inclusive range of per-sequence frame indices."""
    src = Path(src)
    if camera != "auto" and camera not in CAMERAS:
        raise ValueError(f"--camera: expected auto or one of {list(CAMERAS)}, got {camera!r}")
    if not src.is_dir():
        raise FileNotFoundError(f"TUM source {src} does not exist")
    folders = [src] if (src / "rgb").is_dir() else sorted(p for p in src.iterdir() if (p / "rgb").is_dir())
    if not folders:
        raise SourceError(f"{src}: no TUM sequence (expected rgb/ and depth/)")
    all_frames, info = [], {}
    for folder in folders:
        fr, inf = _folder_sequences(folder, camera, frames)
        all_frames += fr
        info[folder.name] = inf
    with Image.open(all_frames[0].rgb) as im:
        w, h = im.size
    cams = sorted({s["camera"] for f in info.values() for s in f["sequences"].values()})
    licence, licence_from = licence_for(src, folders[0], DEFAULT_LICENCE)
    attrs = {"format": "tum", "licence_file": licence_from, "sequences": json.dumps(info),
             "distortion": json.dumps({c: CAMERAS[c][1] for c in cams}),
             "distortion_applied": False, "depth_units": "uint16 / 5000 -> m",
             "association": f"TUM associate.py, max difference {MAX_ASSOC_DIFF} s"}
    return PackPlan(frames=all_frames, make_sample=_read, height=h, width=w, source=f"TUM RGB-D ({src.resolve()})",
                    licence=licence, attrs=attrs)

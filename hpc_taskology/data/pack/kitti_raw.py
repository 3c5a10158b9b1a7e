"""KITTI raw (synced and rectified drives) → packed HDF5: left colour camera (image_02), OXTS poses, projected LiDAR.

Layout (Geiger et al., IJRR 2013, "Vision meets Robotics: the KITTI dataset"; the raw-data devkit)::

    <date>/calib_cam_to_cam.txt  calib_velo_to_cam.txt  calib_imu_to_velo.txt
    <date>/<date>_drive_<nnnn>_sync/image_02/data/<10-digit frame>.png     left colour, rectified
                                    image_02/timestamps.txt                one line per frame of the drive
                                    image_03/data/<frame>.png              right colour, rectified
                                    oxts/data/<frame>.txt                  30 values (oxts/dataformat.txt)
                                    proj_depth/velodyne/image_02/<frame>.npz   key 'velodyne_depth' (m, 0 = none)

(``proj_depth`` is not part of the raw release: it is the LiDAR projected into each camera, as TRI's KITTI_tiny and
packnet-sfm ship it.  Drives without it are packed with no valid depth.  The TRI-added ``image_0x/poses.txt`` is
not metric and is never read.)

Sample contents: ``rgb`` = image_02; ``K`` = P_rect_02[:, :3] (rectified, pixels); ``depth`` = proj_depth npz;
``cam_to_world`` = camera 2 (rectified) → world, computed exactly as pykitti (utiasSTARS/pykitti ``utils.py``:
``load_oxts_packets_and_poses``, ``pose_from_oxts_packet``; ``raw.py``: ``_load_calib``):

* Mercator scale s = cos(lat₀) from the first OXTS packet of the drive, t = (s·lon·π·r/180,
  s·r·ln tan((90 + lat)·π/360), alt) with r = 6378137 m, R = Rz(yaw)·Ry(pitch)·Rx(roll), T_w_imu = [R | t - t₀]
  (world = East-North-Up at the drive's first GPS position);
* T_cam2_imu = T2 · R_rect_00 · T_cam0unrect_velo · T_velo_imu, with T2 the translation P_rect_02[0,3]/P_rect_02[0,0]
  along x (the rectified camera 2 origin relative to rectified camera 0);
* cam_to_world = T_w_imu · T_cam2_imu⁻¹.

Stereo: with ``stereo=True`` (default) and image_03 present, ``rgb_right`` = image_03 and ``baseline`` = the distance
between the rectified camera 2 and 3 centres, (P_rect_02[0,3] - P_rect_03[0,3]) / fx (pykitti's ``b_rgb``).
``timestamp`` = image_02/timestamps.txt (seconds since 1970, the file's wall-clock string read as UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import FrameRange, PackPlan, SourceError, check_intrinsics, licence_for, make_sample, select, warn_skipped
from .images import read_rgb

DEFAULT_LICENCE = (
    "KITTI raw data (Geiger, Lenz, Stiller, Urtasun: Vision meets Robotics: The KITTI Dataset, IJRR 2013), "
    "http://www.cvlibs.net/datasets/kitti/raw_data.php, licensed under the Creative Commons "
    "Attribution-NonCommercial-ShareAlike 3.0 License (CC BY-NC-SA 3.0): non-commercial use only, attribution, "
    "share alike."
)
EARTH_RADIUS = 6378137.0  # m, as pykitti
OXTS_FIELDS = 30  # oxts/dataformat.txt: 25 floats + 5 integer flags/counts


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """``key: v1 v2 ...`` lines → {key: float64 array}; non-numeric values (``calib_time``) are skipped (as pykitti's
    ``read_calib_file``).  Raises ``FileNotFoundError`` naming the missing calibration file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI calibration file {path} does not exist")
    data = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise SourceError(f"{path}:{n}: expected 'key: values', got {line[:60]!r}")
        key, value = line.split(":", 1)
        try:
            data[key.strip()] = np.array([float(x) for x in value.split()])
        except ValueError:
            pass
    return data


def _entry(calib: dict, key: str, size: int, path: Path) -> np.ndarray:
    if key not in calib:
        raise SourceError(f"{path}: key {key!r} is missing")
    v = calib[key]
    if v.size != size or not np.isfinite(v).all():
        raise SourceError(f"{path}: key {key!r} has {v.size} values (finite: {np.isfinite(v).all()}), expected {size}")
    return v


def _rigid(path: Path) -> np.ndarray:
    calib = read_calib_file(path)
    T = np.eye(4)
    T[:3, :3] = _entry(calib, "R", 9, path).reshape(3, 3)
    T[:3, 3] = _entry(calib, "T", 3, path)
    return T


def load_calibration(date_dir: str | Path) -> dict[str, np.ndarray]:
    """The calibration chain of one recording day, as pykitti ``raw._load_calib``.

    Returns float64 arrays: ``K_cam2``/``K_cam3`` (3, 3) rectified intrinsics (px), ``P_rect_02``/``P_rect_03``
    (3, 4), ``T_cam2_imu``/``T_cam3_imu`` (4, 4) IMU → rectified camera, ``b_rgb`` (m) colour stereo baseline.
    Raises ``FileNotFoundError`` for a missing calib file and :class:`SourceError` for a missing/bad key.
    """
    date_dir = Path(date_dir)
    T_velo_imu = _rigid(date_dir / "calib_imu_to_velo.txt")
    T_cam0unrect_velo = _rigid(date_dir / "calib_velo_to_cam.txt")
    c2c_path = date_dir / "calib_cam_to_cam.txt"
    c2c = read_calib_file(c2c_path)
    R_rect_00 = np.eye(4)
    R_rect_00[:3, :3] = _entry(c2c, "R_rect_00", 9, c2c_path).reshape(3, 3)
    out = {}
    for cam in (2, 3):
        P = _entry(c2c, f"P_rect_0{cam}", 12, c2c_path).reshape(3, 4)
        Tn = np.eye(4)
        Tn[0, 3] = P[0, 3] / P[0, 0]
        out[f"P_rect_0{cam}"] = P
        out[f"K_cam{cam}"] = check_intrinsics(P[:, :3], f"{c2c_path} P_rect_0{cam}")
        out[f"T_cam{cam}_imu"] = Tn @ R_rect_00 @ T_cam0unrect_velo @ T_velo_imu
    # pykitti b_rgb: distance of the two rectified camera centres (they differ only along x)
    c2 = np.linalg.inv(out["T_cam2_imu"])[:3, 3]
    c3 = np.linalg.inv(out["T_cam3_imu"])[:3, 3]
    out["b_rgb"] = np.float64(np.linalg.norm(c3 - c2))
    return out


def read_oxts(path: str | Path) -> np.ndarray:
    """One OXTS packet → float64 (30,) in oxts/dataformat.txt order (lat, lon in degrees; alt m; roll, pitch, yaw
    rad; ...).  Raises ``FileNotFoundError`` or :class:`SourceError` (wrong count, NaN) naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OXTS packet {path} does not exist")
    try:
        v = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as e:
        raise SourceError(f"{path}: OXTS packet holds a non-number: {e}") from None
    if v.size != OXTS_FIELDS:
        raise SourceError(f"{path}: OXTS packet has {v.size} values, expected {OXTS_FIELDS}")
    if not np.isfinite(v[:6]).all():
        raise SourceError(f"{path}: OXTS lat/lon/alt/roll/pitch/yaw contain NaN/Inf")
    return v


def _rotx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _roty(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def pose_from_oxts(packet: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(R (3,3), t (3,) m) of the IMU in the Mercator frame, as pykitti ``pose_from_oxts_packet``."""
    lat, lon, alt, roll, pitch, yaw = packet[:6]
    t = np.array([scale * lon * np.pi * EARTH_RADIUS / 180.0,
                  scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat) * np.pi / 360.0)), alt])
    R = _rotz(yaw) @ _roty(pitch) @ _rotx(roll)
    return R, t


def oxts_poses(packets: list[np.ndarray]) -> list[np.ndarray]:
    """T_w_imu (4, 4) per packet; world origin and Mercator scale from ``packets[0]`` (pykitti
    ``load_oxts_packets_and_poses``)."""
    scale = np.cos(packets[0][0] * np.pi / 180.0)
    origin = None
    poses = []
    for p in packets:
        R, t = pose_from_oxts(p, scale)
        if origin is None:
            origin = t
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t - origin
        poses.append(T)
    return poses


def read_timestamps(path: Path) -> np.ndarray:
    """KITTI ``YYYY-MM-DD hh:mm:ss.nnnnnnnnn`` lines → float64 seconds since 1970 (read as UTC)."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        ns = np.array([np.datetime64(ln.replace(" ", "T"), "ns") for ln in lines]).astype(np.int64)
    except ValueError as e:
        raise SourceError(f"{path}: bad timestamp line: {e}") from None
    return ns / 1e9


def find_drives(src: str | Path) -> list[Path]:
    """Drive folders (``*_drive_*_sync`` holding ``image_02/data``) at or below ``src``, sorted by name."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"KITTI raw source {src} does not exist")
    cands = [src] if (src / "image_02" / "data").is_dir() else []
    cands += [p.parent.parent for p in src.rglob("image_02/data") if p.parent.parent != src]
    drives = sorted({p for p in cands}, key=lambda p: p.name)
    if not drives:
        raise SourceError(f"{src}: no KITTI raw drive found (expected <date>/<date>_drive_<n>_sync/image_02/data/)")
    return drives


@dataclass(frozen=True)
class KittiFrame:
    """One packed frame: paths and the per-frame metadata parsed at planning time."""

    image: Path
    right: Path | None
    depth: Path | None
    frame_id: int
    sequence: str
    timestamp: float
    K: np.ndarray
    cam_to_world: np.ndarray
    baseline: float


def _drive_frames(drive: Path, frames: FrameRange | None, stereo: bool) -> tuple[list[KittiFrame], dict]:
    calib = load_calibration(drive.parent)
    images = sorted((drive / "image_02" / "data").glob("*.png"))
    if not images:
        raise SourceError(f"{drive / 'image_02' / 'data'}: no PNG images")
    images = select(images, [int(p.stem) for p in images], frames, str(drive))

    oxts_dir = drive / "oxts" / "data"
    oxts_files = sorted(oxts_dir.glob("*.txt"))
    if not oxts_files:
        raise FileNotFoundError(f"{oxts_dir}: no OXTS packets (needed for the camera poses)")
    by_id = {int(p.stem): p for p in oxts_files}
    packets = [read_oxts(p) for p in oxts_files]  # whole drive: origin/scale from its first packet, as pykitti
    T_w_imu = dict(zip(by_id, oxts_poses(packets)))
    T_imu_cam2 = np.linalg.inv(calib["T_cam2_imu"])

    ts_path = drive / "image_02" / "timestamps.txt"
    ts = read_timestamps(ts_path) if ts_path.is_file() else None
    out, no_depth = [], []
    for img in images:
        fid = int(img.stem)
        if fid not in T_w_imu:
            raise FileNotFoundError(f"OXTS packet {oxts_dir / (img.stem + '.txt')} does not exist (frame {img.name})")
        right = drive / "image_03" / "data" / img.name
        depth = drive / "proj_depth" / "velodyne" / "image_02" / f"{img.stem}.npz"
        if not depth.is_file():
            no_depth.append(fid)
        if ts is not None and fid >= len(ts):
            raise SourceError(f"{ts_path}: {len(ts)} lines, no timestamp for frame {fid}")
        out.append(KittiFrame(
            image=img, right=right if stereo else None, depth=depth if depth.is_file() else None, frame_id=fid,
            sequence=drive.name, timestamp=float(ts[fid]) if ts is not None else float("nan"), K=calib["K_cam2"],
            cam_to_world=T_w_imu[fid] @ T_imu_cam2, baseline=float(calib["b_rgb"])))
    warn_skipped(str(drive), no_depth, "no proj_depth/velodyne npz (no valid depth)", verb="packed")
    return out, calib


def read_velodyne_depth(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """proj_depth npz → float32 (H, W) metres, 0 = no LiDAR return.  Errors name the file and key."""
    try:
        with np.load(path) as z:
            if "velodyne_depth" not in z.files:
                raise SourceError(f"{path}: key 'velodyne_depth' missing (keys: {z.files})")
            d = z["velodyne_depth"]
    except (OSError, ValueError, EOFError) as e:
        raise SourceError(f"{path}: cannot read npz (truncated or corrupt?): {e}") from None
    if d.shape != shape or d.dtype.kind != "f":
        raise SourceError(f"{path}: 'velodyne_depth' is {d.dtype} {d.shape}, expected float {shape}")
    return d.astype(np.float32)


class _Reader:
    def __init__(self, stereo: bool):
        self.stereo = stereo

    def __call__(self, fr: KittiFrame) -> dict:
        rgb = read_rgb(fr.image)
        depth = read_velodyne_depth(fr.depth, rgb.shape[:2]) if fr.depth is not None else None
        extra = {}
        if self.stereo:
            extra = {"rgb_right": read_rgb(fr.right, rgb.shape[:2]), "baseline": fr.baseline}
        return make_sample(rgb=rgb, depth=depth, K=fr.K, cam_to_world=fr.cam_to_world, frame_id=fr.frame_id,
                           sequence=fr.sequence, timestamp=fr.timestamp, **extra)


def plan(src: str | Path, frames: FrameRange | None = None, stereo: bool = True, resizing: bool = False) -> PackPlan:
    """Plan packing every drive at or below ``src`` (a drive folder, a date folder or a root of date folders).

    ``frames``: inclusive range of frame numbers (the 10-digit file names), applied per drive.  ``stereo``: also
    store image_03 as ``rgb_right`` and the baseline (only if every selected frame has its image_03).
    ``resizing``: the caller resizes samples (``--height/--width``), so drives of different image sizes may share
    a file.  Raises ``FileNotFoundError``/:class:`SourceError` naming the file for missing calibration, OXTS or
    images, malformed calibration keys, NaN packets.
    """
    src = Path(src)
    all_frames, sizes, calibs = [], {}, {}
    for drive in find_drives(src):
        fr, calib = _drive_frames(drive, frames, stereo)
        all_frames += fr
        calibs[drive.name] = calib
        with Image.open(fr[0].image) as im:
            sizes[drive.name] = (im.height, im.width)
    if len(set(sizes.values())) > 1 and not resizing:
        raise SourceError(f"{src}: drives have different image sizes {sizes}; pack them separately or pass "
                          "--height/--width")
    stereo = stereo and all(f.right is not None and f.right.is_file() for f in all_frames)
    h, w = next(iter(sizes.values()))
    licence, licence_from = licence_for(src, all_frames[0].image.parent, DEFAULT_LICENCE)
    first = next(iter(calibs.values()))
    attrs = {"format": "kitti_raw", "licence_file": licence_from,
             "pose_source": "OXTS via pykitti's Mercator/calibration chain (TRI poses.txt not used)",
             "depth_source": "proj_depth/velodyne/image_02 npz (projected LiDAR, sparse)",
             "P_rect_02": first["P_rect_02"], "P_rect_03": first["P_rect_03"], "T_cam2_imu": first["T_cam2_imu"],
             "drives": [d for d in calibs],
             "stereo": "rgb_right = image_03, baseline = b_rgb" if stereo else "no (disabled, or image_03 incomplete)"}
    return PackPlan(frames=all_frames, make_sample=_Reader(stereo), height=h, width=w,
                    source=f"KITTI raw ({src.resolve()})", licence=licence,
                    optional=("rgb_right", "baseline") if stereo else (), attrs=attrs)

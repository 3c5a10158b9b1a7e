"""SceneNet RGB-D (McCormac et al., ICCV 2017, "SceneNet RGB-D: Can 5M Synthetic Images Beat Generic ImageNet
Pre-training on Indoor Segmentation?") → packed HDF5, and the writer of that layout.

Layout (pySceneNetRGBD's README and scripts)::

    <root>/<render_path>/photo/<frame_num>.jpg      colour (PNG also accepted: photo/<frame_num>.png)
    <root>/<render_path>/depth/<frame_num>.png      uint16, Euclidean distance camera centre → point, millimetres;
                                                    0 = no depth (a ray leaving through a window)
    <root>/<render_path>/instance/<frame_num>.png   instance ids (``Instance.instance_id`` of the trajectory)
    <root>/*.pb                                     ``Trajectories`` protobuf (scenenet_pb.py): per trajectory its
                                                    render_path, instances and views (frame_num, shutter poses)

Conventions (pySceneNetRGBD ``camera_pose_and_intrinsics_example.py`` / ``calculate_surface_normals.py``):

* **Intrinsics** from the field of view, hfov 60°, vfov 45° (320×240 in the release): fx = (W/2)/tan(hfov/2),
  fy = (H/2)/tan(vfov/2).  SceneNet casts the ray of pixel x through (x + 0.5)/W, i.e. pixel centres at
  half-integers of its own frame; in our convention (centre of pixel j at x = j) that is cx = W/2 - 0.5,
  cy = H/2 - 0.5 (159.5, 119.5 at 320×240).
* **Depth**: z = r / ‖((u - cx)/fx, (v - cy)/fy, 1)‖ converts the Euclidean ray length r to z-depth.
* **Pose**: a ``Pose`` is a camera position and a look-at point with world up = +y.  Camera axes (rows of the
  world-to-camera rotation): z = normalise(lookat - camera), x = normalise(z × up), y = z × x (pointing down):
  OpenCV axes.  The photo integrates exposures between ``shutter_open`` and ``shutter_close``; we use the pose
  interpolated half-way (camera and look-at averaged, as the example script's ``interpolate_poses(..., 0.5)``),
  or ``shutter_open`` with ``pose="shutter_open"``.  ``timestamp`` is taken the same way.
* ``frame_id`` = ``frame_num``; ``sequence`` = ``render_path``; ``instance`` = the instance PNG (int32);
  ``segmentation`` (int16) = index of the instance's ``semantic_english`` label in the sorted list of labels seen in
  the packed trajectories (root attribute ``class_names``), -1 for the background and unlabelled instances.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from .common import FrameRange, PackPlan, SourceError, licence_for, make_sample, select, warn_skipped
from .images import read_labels, read_rgb, read_u16, write_rgb, write_u16
from .scenenet_pb import messages

DEFAULT_LICENCE = (
    "SceneNet RGB-D (McCormac, Handa, Leutenegger, Davison, ICCV 2017), "
    "https://robotvault.bitbucket.io/scenenet-rgbd.html - use under the terms published with the dataset (not restated by this packer: check the terms of your copy); "
    "its scenes contain ShapeNet models, whose terms of use (non-commercial research and education) also apply."
)
HFOV, VFOV = 60.0, 45.0  # degrees
UP = np.array([0.0, 1.0, 0.0])
MM = 1e-3


def scenenet_intrinsics(width: int = 320, height: int = 240, hfov: float = HFOV, vfov: float = VFOV) -> np.ndarray:
    """K (3, 3) pixels for SceneNet's field of view at ``width`` × ``height``, pixel centres at integer coordinates."""
    fx = (width / 2.0) / math.tan(math.radians(hfov / 2.0))
    fy = (height / 2.0) / math.tan(math.radians(vfov / 2.0))
    return np.array([[fx, 0, width / 2.0 - 0.5], [0, fy, height / 2.0 - 0.5], [0, 0, 1.0]])


def ray_norm(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """‖((u - cx)/fx, (v - cy)/fy, 1)‖ per pixel, float64 (H, W): Euclidean ray length per metre of z-depth."""
    u = (np.arange(width) - K[0, 2]) / K[0, 0]
    v = (np.arange(height) - K[1, 2]) / K[1, 1]
    return np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)


def camera_to_world(camera: np.ndarray, lookat: np.ndarray, where: str = "pose") -> np.ndarray:
    """4×4 camera-to-world from a SceneNet camera position and look-at point (world up +y; see module docstring).

    Raises :class:`SourceError` naming ``where`` if camera == lookat or the view direction is parallel to up.
    """
    camera, lookat = np.asarray(camera, np.float64), np.asarray(lookat, np.float64)
    fwd = lookat - camera
    if not np.isfinite(fwd).all() or np.linalg.norm(fwd) < 1e-9:
        raise SourceError(f"{where}: camera {camera.tolist()} and lookat {lookat.tolist()} do not define a direction")
    z = fwd / np.linalg.norm(fwd)
    x = np.cross(z, UP)
    if np.linalg.norm(x) < 1e-9:
        raise SourceError(f"{where}: view direction {z.tolist()} is parallel to the up vector (0, 1, 0)")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)  # columns = camera axes in world coordinates
    T[:3, 3] = camera
    return T


def _vec(p) -> np.ndarray:
    return np.array([p.x, p.y, p.z], dtype=np.float64)


def view_pose(view, pose: str, where: str) -> tuple[np.ndarray, float]:
    """(camera-to-world, timestamp) of a ``View``: shutter mid-point (``"mid"``) or ``"shutter_open"``."""
    o, c = view.shutter_open, view.shutter_close
    if pose == "shutter_open" or not view.HasField("shutter_close"):
        return camera_to_world(_vec(o.camera), _vec(o.lookat), where), float(o.timestamp)
    cam = 0.5 * (_vec(o.camera) + _vec(c.camera))
    look = 0.5 * (_vec(o.lookat) + _vec(c.lookat))
    return camera_to_world(cam, look, where), 0.5 * (o.timestamp + c.timestamp)


def read_trajectories(path: Path):
    """Parse a SceneNet ``Trajectories`` protobuf file.  Raises naming the file if it does not parse."""
    m = messages()
    t = m.Trajectories()
    try:
        t.ParseFromString(Path(path).read_bytes())
    except Exception as e:  # google.protobuf.message.DecodeError
        raise SourceError(f"{path}: not a SceneNet Trajectories protobuf (corrupt or truncated?): {e}") from None
    return t


@dataclass(frozen=True)
class SceneNetFrame:
    photo: Path
    depth: Path
    instance: Path | None
    frame_id: int
    sequence: str
    timestamp: float
    cam_to_world: np.ndarray
    classes: tuple  # (instance_id, class index) pairs of the trajectory


class _Reader:
    def __init__(self, hfov: float, vfov: float, segmentation: bool):
        self.hfov, self.vfov, self.segmentation = hfov, vfov, segmentation

    def __call__(self, fr: SceneNetFrame) -> dict:
        rgb = read_rgb(fr.photo)
        h, w = rgb.shape[:2]
        K = scenenet_intrinsics(w, h, self.hfov, self.vfov)
        r_mm = read_u16(fr.depth, "depth PNG (uint16 mm, Euclidean)", (h, w)).astype(np.float64)
        depth = (r_mm * MM / ray_norm(K, h, w)).astype(np.float32)  # 0 stays 0 = not valid
        extra = {}
        if fr.instance is not None:
            inst = read_labels(fr.instance, (h, w))
            extra["instance"] = inst
            if self.segmentation:
                lut = dict(fr.classes)
                ids, inv = np.unique(inst, return_inverse=True)
                extra["segmentation"] = np.array([lut.get(int(i), -1) for i in ids], np.int16)[inv].reshape(h, w)
        return make_sample(rgb=rgb, depth=depth, K=K, cam_to_world=fr.cam_to_world, frame_id=fr.frame_id,
                           sequence=fr.sequence, timestamp=fr.timestamp, **extra)


def _photo(folder: Path, frame_num: int) -> Path:
    for ext in (".jpg", ".png"):
        p = folder / "photo" / f"{frame_num}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"photo {folder / 'photo' / f'{frame_num}.jpg'} does not exist (nor .png)")


def plan(src: str | Path, frames: FrameRange | None = None, protobuf: str | Path | None = None, pose: str = "mid",
         hfov: float = HFOV, vfov: float = VFOV) -> PackPlan:
    """Plan packing the SceneNet trajectories under ``src`` described by ``protobuf`` (default: every ``*.pb`` in
    ``src``).  Trajectories whose render_path folder is absent are skipped (counted warning); ``frames`` selects
    frame_num values inclusive.  Raises ``FileNotFoundError``/:class:`SourceError` naming the file for a missing
    protobuf, photo or depth image, an unparsable protobuf or a degenerate pose.
    """
    src = Path(src)
    if pose not in ("mid", "shutter_open"):
        raise ValueError(f"pose: expected 'mid' or 'shutter_open', got {pose!r}")
    if not src.is_dir():
        raise FileNotFoundError(f"SceneNet source {src} does not exist")
    pbs = [Path(protobuf)] if protobuf else sorted(src.glob("*.pb"))
    if not pbs:
        raise FileNotFoundError(f"{src}: no trajectory protobuf (*.pb); pass --protobuf")
    trajs = []
    for pb in pbs:
        if not pb.is_file():
            raise FileNotFoundError(f"SceneNet protobuf {pb} does not exist")
        trajs += [(pb, t) for t in read_trajectories(pb).trajectories]
    inst_type = messages().Instance
    names = sorted({i.semantic_english for _, t in trajs for i in t.instances
                    if i.semantic_english and i.instance_type != inst_type.BACKGROUND})
    index = {n: k for k, n in enumerate(names)}
    out, missing = [], []
    for pb, t in trajs:
        folder = src / t.render_path
        if not folder.is_dir():
            missing.append(t.render_path)
            continue
        classes = tuple((i.instance_id, index[i.semantic_english]) for i in t.instances
                        if i.semantic_english in index and i.instance_type != inst_type.BACKGROUND)
        views = select(list(t.views), [v.frame_num for v in t.views], frames, f"{pb} trajectory {t.render_path}") \
            if frames is not None else list(t.views)
        for v in views:
            c2w, ts = view_pose(v, pose, f"{pb} trajectory {t.render_path!r} frame {v.frame_num}")
            depth = folder / "depth" / f"{v.frame_num}.png"
            if not depth.is_file():
                raise FileNotFoundError(f"depth image {depth} does not exist")
            inst = folder / "instance" / f"{v.frame_num}.png"
            out.append(SceneNetFrame(_photo(folder, v.frame_num), depth, inst if inst.is_file() else None, v.frame_num,
                                     t.render_path, ts, c2w, classes))
    warn_skipped(f"{src}", missing, "trajectory folders absent (render_path)")
    if not out:
        raise SourceError(f"{src}: none of the {len(trajs)} trajectories in {[str(p) for p in pbs]} "
                          "has its folder here")
    with_instance = all(f.instance is not None for f in out)
    segmentation = with_instance and bool(names)
    with Image.open(out[0].photo) as im:
        w, h = im.size
    licence, licence_from = licence_for(src, src, DEFAULT_LICENCE)
    optional = (("instance",) if with_instance else ()) + (("segmentation",) if segmentation else ())
    attrs = {"format": "scenenet", "licence_file": licence_from, "hfov_deg": hfov, "vfov_deg": vfov,
             "pose": f"{pose} (camera/lookat, up +y)", "depth_units": "uint16 mm Euclidean ray length -> z metres",
             "class_names": json.dumps(names), "skipped_trajectories": json.dumps(missing)}
    return PackPlan(frames=out, make_sample=_Reader(hfov, vfov, segmentation), height=h, width=w,
                    source=f"SceneNet RGB-D layout ({src.resolve()})", licence=licence, optional=optional, attrs=attrs)


def _set_pose(pose_msg, c2w: np.ndarray, timestamp: float) -> None:
    cam = c2w[:3, 3]
    look = cam + c2w[:3, 2]
    for dst, v in ((pose_msg.camera, cam), (pose_msg.lookat, look)):
        dst.x, dst.y, dst.z = (float(a) for a in v)
    pose_msg.timestamp = float(timestamp)


def write_scenenet_layout(out_dir: str | Path, frames: Iterable[dict], *, render_path: str = "0/0",
                          protobuf_name: str = "scenenet.pb", instances: list[dict] | None = None,
                          photo_format: str = "jpg", hfov: float = HFOV, vfov: float = VFOV, strict: bool = True,
                          jpeg_quality: int = 95, licence: str | None = None) -> Path:
    """Write frames in SceneNet RGB-D's native layout (one trajectory) so :func:`plan` / ``taskology pack scenenet``
    reads them back.  Returns the protobuf path.

    Each frame is a dict:

    * ``rgb`` uint8 (H, W, 3); ``depth`` float (H, W) z-depth in metres (0, NaN or Inf = none) — stored as the
      Euclidean ray length in mm (uint16, rounded; rays longer than 65.535 m are stored as 0 = none);
    * ``cam_to_world`` (4, 4), OpenCV camera axes, world up = +y: stored as camera position and look-at point
      (camera + z axis) in ``shutter_open`` (and ``shutter_close``, from ``cam_to_world_close`` if given, else the
      same pose).  SceneNet's pose has no roll: with ``strict`` a pose that differs from the camera/look-at pose
      rebuilt with world up +y (rolled, or upside down) raises ``ValueError`` naming the frame (otherwise a
      warning; the roll is lost);
    * optional ``instance`` int (H, W) ≥ 0 (uint16 PNG), ``frame_id`` (default: index), ``timestamp`` (s, default:
      frame_id), ``K`` (checked against SceneNet's field of view at this size: ``ValueError`` if it differs, since
      the layout cannot store K).

    ``instances``: the trajectory's Instance messages as dicts (``instance_id``, ``semantic_english``,
    ``semantic_wordnet_id``, ``instance_type`` name); default: a BACKGROUND instance 0 and a LAYOUT_OBJECT per
    other id seen.  ``photo_format``: ``"jpg"`` (as SceneNet, lossy) or ``"png"`` (lossless).  ``licence``: text
    written to ``out_dir/LICENSE`` (the packer copies it into the packed file).  An existing protobuf
    of that name gets this trajectory added (replacing one with the same render_path); write one protobuf per
    process when several processes write into one ``out_dir``.
    """
    if photo_format not in ("jpg", "png"):
        raise ValueError(f"photo_format: expected 'jpg' or 'png', got {photo_format!r}")
    out_dir = Path(out_dir)
    folder = out_dir / render_path
    for sub in ("photo", "depth", "instance"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    m = messages()
    pb_path = out_dir / protobuf_name
    trajs = read_trajectories(pb_path) if pb_path.is_file() else m.Trajectories()
    keep = [t for t in trajs.trajectories if t.render_path != render_path]
    del trajs.trajectories[:]
    trajs.trajectories.extend(keep)
    traj = trajs.trajectories.add()
    traj.render_path = render_path
    seen_ids, n_clipped = set(), 0
    for i, fr in enumerate(frames):
        fid = int(fr.get("frame_id", i))
        rgb = np.asarray(fr["rgb"])
        h, w = rgb.shape[:2]
        K = scenenet_intrinsics(w, h, hfov, vfov)
        if "K" in fr and not np.allclose(np.asarray(fr["K"]), K, rtol=1e-4, atol=1e-3):
            raise ValueError(f"frame {fid}: K {np.asarray(fr['K']).tolist()} differs from SceneNet's field of view "
                             f"(hfov {hfov}, vfov {vfov}) at {w}x{h}: {K.tolist()}; the layout cannot store K")
        c2w = np.asarray(fr["cam_to_world"], np.float64)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise ValueError(f"frame {fid}: cam_to_world must be a finite (4, 4) array, got {c2w.shape}")
        for key in ("cam_to_world", "cam_to_world_close"):
            T = np.asarray(fr.get(key, c2w), np.float64)
            rebuilt = camera_to_world(T[:3, 3], T[:3, 3] + T[:3, 2], f"frame {fid}")
            err = float(np.abs(rebuilt[:3, :3] - T[:3, :3]).max())
            if err > 1e-4:
                msg = (f"frame {fid}: {key} is rolled or upside down (differs by {err:.2e} from the camera/look-at pose "
                       "with world up +y); SceneNet poses have no roll")
                if strict:
                    raise ValueError(msg)
                warnings.warn(msg, stacklevel=2)
        depth = np.asarray(fr["depth"], np.float64)
        if depth.shape != (h, w):
            raise ValueError(f"frame {fid}: depth has shape {depth.shape}, expected {(h, w)}")
        good = np.isfinite(depth) & (depth > 0)
        r_mm = np.where(good, np.round(np.where(good, depth, 0) * ray_norm(K, h, w) / MM), 0)
        n_clipped += int((r_mm > 65535).sum())
        write_rgb(folder / "photo" / f"{fid}.{photo_format}", rgb.astype(np.uint8), quality=jpeg_quality)
        write_u16(folder / "depth" / f"{fid}.png", np.where(r_mm > 65535, 0, r_mm).astype(np.uint16))
        if "instance" in fr:
            inst = np.asarray(fr["instance"])
            if inst.shape != (h, w) or inst.min() < 0 or inst.max() > 65535:
                raise ValueError(f"frame {fid}: instance must be (H, W) ids in [0, 65535], got {inst.shape}")
            write_u16(folder / "instance" / f"{fid}.png", inst.astype(np.uint16))
            seen_ids.update(int(x) for x in np.unique(inst))
        view = traj.views.add()
        view.frame_num = fid
        ts = float(fr.get("timestamp", fid))
        _set_pose(view.shutter_open, c2w, ts)
        _set_pose(view.shutter_close, np.asarray(fr.get("cam_to_world_close", c2w), np.float64), ts)
    if n_clipped:
        warnings.warn(f"{folder}: {n_clipped} depth pixels beyond 65.535 m stored as 0 (no depth)", stacklevel=2)
    if instances is None:
        instances = [{"instance_id": 0, "instance_type": "BACKGROUND"}] + \
                    [{"instance_id": k, "instance_type": "LAYOUT_OBJECT"} for k in sorted(seen_ids - {0})]
    for d in instances:
        inst = traj.instances.add()
        inst.instance_id = int(d["instance_id"])
        inst.instance_type = m.Instance.InstanceType.Value(d.get("instance_type", "LAYOUT_OBJECT"))
        for k in ("semantic_english", "semantic_wordnet_id"):
            if d.get(k):
                setattr(inst, k, d[k])
    if licence:
        (out_dir / "LICENSE").write_text(licence if licence.endswith("\n") else licence + "\n")
    tmp = pb_path.with_name(f".{pb_path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(trajs.SerializeToString())
    tmp.replace(pb_path)
    return pb_path

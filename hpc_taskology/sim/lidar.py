"""A spinning LiDAR at the camera, and the ``lidar`` group of the output file.

The sensor sits ``MOUNT_HEIGHT`` above the camera centre.  Its frame (KITTI Velodyne convention): x forward (the
camera's viewing direction projected on the horizontal plane), y left, z up (world up); ``lidar_to_world`` (4, 4)
maps it to the world frame.  Beam ``b`` has elevation ``elevation_deg[b]`` (row 0 = highest, evenly spaced over
``cfg.lidar_fov_deg``), column ``k`` has azimuth ``azimuth_deg[k] = 180 - 360 (k + 0.5) / A`` degrees,
counter-clockwise from x (column A/2 looks forward; columns run clockwise, as a range image seen from the sensor).
A return is the first surface along the beam within ``cfg.lidar_range`` metres (no noise, no dropouts).

Group ``lidar`` (N frames, B beams, A azimuth steps, ``MAX_BOXES`` boxes per frame):

======================  ====================  =========  ======================================================
dataset                 shape                 dtype      meaning
======================  ====================  =========  ======================================================
``range``               (N, B, A)             float32    metres along the beam; 0 = no return
``points``              (N, B, A, 3)          float32    x, y, z in the LiDAR frame, metres; 0 where no return
``intensity``           (N, B, A)             float32    ``|cos|`` of the incidence angle, [0, 1]; 0 = no return
``segmentation``        (N, B, A)             int16      class id (scene.CLASSES); -1 = no return
``instance``            (N, B, A)             int32      instance id; 0 = no return
``lidar_to_world``      (N, 4, 4)             float64    LiDAR frame → world frame
``boxes``               (N, MAX_BOXES, 7)     float32    movable objects: centre x, y, z, length, width, height
                                                         (m), yaw (rad about z from x), in the LiDAR frame
``box_velocity``        (N, MAX_BOXES, 3)     float32    m/s in the LiDAR frame
``box_class``           (N, MAX_BOXES)        int16      class id; -1 = padding
``box_instance``        (N, MAX_BOXES)        int32      instance id (matches ``instance``); 0 = padding
``num_boxes``           (N,)                  int32      boxes used in this frame (the nearest first)
``elevation_deg``       (B,)                  float64    beam elevations
``azimuth_deg``         (A,)                  float64    column azimuths
======================  ====================  =========  ======================================================

Boxes are those of movable objects (cars, pedestrians) whose centre lies within the LiDAR range, nearest first.
Each rank writes its frames to a part file; after the main file is complete rank 0 appends the parts, in rank
order, as the ``lidar`` group (so a LiDAR failure cannot corrupt the camera data).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from .render import _dot, nearest, surface
from .scene import CLASSES, MOVABLE_CLASSES

MOUNT_HEIGHT = 0.3  # m above the camera centre
MAX_BOXES = 64


def lidar_pose(cam_to_world: np.ndarray) -> np.ndarray:
    """(4, 4) float64 LiDAR-to-world for a camera pose: ``MOUNT_HEIGHT`` m above the camera, x = the camera's
    forward direction on the horizontal plane, z up.  Raises ``ValueError`` if the camera looks straight up/down."""
    f = np.asarray(cam_to_world, np.float64)[:3, 2].copy()
    f[2] = 0.0
    if np.linalg.norm(f) < 1e-6:
        raise ValueError("cam_to_world: the camera looks vertically; the LiDAR heading is undefined")
    x = f / np.linalg.norm(f)
    z = np.array([0.0, 0.0, 1.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = np.asarray(cam_to_world)[:3, 3] + MOUNT_HEIGHT * z
    return T


def beam_angles(cfg) -> tuple[np.ndarray, np.ndarray]:
    """(elevation_deg (B,), azimuth_deg (A,)) float64, see the module docstring."""
    lo, hi = cfg.lidar_fov_deg
    elev = np.linspace(hi, lo, cfg.lidar_beams) if cfg.lidar_beams > 1 else np.array([(lo + hi) / 2])
    azim = 180.0 - 360.0 * (np.arange(cfg.lidar_azimuths) + 0.5) / cfg.lidar_azimuths
    return elev, azim


def scan(cfg, scene, time_s: float, lidar_to_world: np.ndarray) -> dict:
    """One LiDAR sweep of ``scene`` at ``time_s`` seconds from ``lidar_to_world`` (4, 4); returns the per-frame rows
    of the ``lidar`` group as numpy arrays (keys as the datasets, without the per-file angle tables)."""
    dev = scene.ambient.device
    elev, azim = beam_angles(cfg)
    e = torch.as_tensor(np.radians(elev), dtype=torch.float32, device=dev)[:, None]
    a = torch.as_tensor(np.radians(azim), dtype=torch.float32, device=dev)[None, :]
    local = torch.stack([torch.cos(e) * torch.cos(a), torch.cos(e) * torch.sin(a), torch.sin(e) + 0 * a], -1)
    local = local.reshape(-1, 3)  # unit directions, LiDAR frame
    T = torch.as_tensor(lidar_to_world, dtype=torch.float32, device=dev)
    R, o = T[:3, :3], T[:3, 3].clone()
    dirs = local[:, 0:1] * R[:, 0] + local[:, 1:2] * R[:, 1] + local[:, 2:3] * R[:, 2]
    prims = scene.at(time_s)
    t, kind, index = nearest(prims, o, dirs, t_max=cfg.lidar_range)
    hit = kind >= 0
    normal, _, _, _, rows = surface(prims, kind, index, o, dirs, torch.where(hit, t, torch.zeros_like(t)))
    rng = torch.where(hit, t, torch.zeros_like(t))
    cos = _dot(normal, dirs).abs()
    shape = (cfg.lidar_beams, cfg.lidar_azimuths)
    out = {
        "range": rng.reshape(shape),
        "points": (local * rng[:, None]).reshape(*shape, 3),
        "intensity": torch.where(hit, cos, torch.zeros_like(cos)).reshape(shape),
        "segmentation": torch.where(hit, rows["klass"], torch.full_like(rows["klass"], -1)).reshape(shape),
        "instance": torch.where(hit, rows["instance"], torch.zeros_like(rows["instance"])).reshape(shape),
    }
    out = {k: v.cpu().numpy() for k, v in out.items()}
    out["segmentation"] = out["segmentation"].astype(np.int16)
    out["instance"] = out["instance"].astype(np.int32)
    out["lidar_to_world"] = np.asarray(lidar_to_world, np.float64)
    out.update(boxes_in_frame(cfg, scene, time_s, lidar_to_world))
    return out


def boxes_in_frame(cfg, scene, time_s: float, lidar_to_world: np.ndarray) -> dict:
    """3-D boxes of the movable objects within range at ``time_s``, in the LiDAR frame, padded to ``MAX_BOXES``."""
    Rt = np.asarray(lidar_to_world)[:3, :3].T
    o = np.asarray(lidar_to_world)[:3, 3]
    heading = math.atan2(lidar_to_world[1, 0], lidar_to_world[0, 0])
    movable = {CLASSES.index(c) for c in MOVABLE_CLASSES}
    rows = []
    for obj in scene.objects:
        if obj.klass not in movable:
            continue
        c = np.asarray(obj.centre) + np.asarray(obj.velocity) * time_s
        cl = Rt @ (c - o)
        dist = float(np.linalg.norm(cl))
        if dist <= cfg.lidar_range:
            yaw = (obj.yaw - heading + math.pi) % (2 * math.pi) - math.pi
            rows.append((dist, obj.instance, obj.klass, [*cl, *obj.size, yaw], Rt @ np.asarray(obj.velocity)))
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[:MAX_BOXES]
    boxes = np.zeros((MAX_BOXES, 7), np.float32)
    vel = np.zeros((MAX_BOXES, 3), np.float32)
    cls = np.full(MAX_BOXES, -1, np.int16)
    inst = np.zeros(MAX_BOXES, np.int32)
    for k, (_, i, kl, box, v) in enumerate(rows):
        boxes[k], vel[k], cls[k], inst[k] = box, v, kl, i
    return {"boxes": boxes, "box_velocity": vel, "box_class": cls, "box_instance": inst,
            "num_boxes": np.int32(len(rows))}


def _layout(cfg) -> dict:
    """dataset name -> (per-frame shape, dtype)."""
    B, A = cfg.lidar_beams, cfg.lidar_azimuths
    return {"range": ((B, A), np.float32), "points": ((B, A, 3), np.float32), "intensity": ((B, A), np.float32),
            "segmentation": ((B, A), np.int16), "instance": ((B, A), np.int32),
            "lidar_to_world": ((4, 4), np.float64), "boxes": ((MAX_BOXES, 7), np.float32),
            "box_velocity": ((MAX_BOXES, 3), np.float32), "box_class": ((MAX_BOXES,), np.int16),
            "box_instance": ((MAX_BOXES,), np.int32), "num_boxes": ((), np.int32)}


class LidarPart:
    """This rank's LiDAR rows, appended frame by frame to a part file beside the output; :meth:`finish` (collective)
    appends every part to the output file's ``lidar`` group on rank 0; :meth:`cleanup` removes this rank's part."""

    def __init__(self, cfg, out_path, rank: int, size: int, comm=None):
        self.cfg, self.rank, self.size, self.comm = cfg, rank, size, comm
        out_path = Path(out_path)
        token = f"{os.getpid()}-{time.time_ns()}" if rank == 0 else None
        if comm is not None and size > 1:
            token = comm.bcast(token, root=0)
        self.parts = [out_path.with_name(f".{out_path.name}.lidar{r:04d}-of-{size:04d}-{token}") for r in range(size)]
        self.path = self.parts[rank]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.path, "w")
        for name, (shape, dtype) in _layout(cfg).items():
            self.f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                  chunks=(1, *shape) if shape else (1024,))
        self.n = 0

    def append(self, seq, frame: int) -> None:
        t = frame / self.cfg.fps
        row = scan(self.cfg, seq.scene, t, lidar_pose(seq.trajectory.pose(t)))
        for name, value in row.items():
            ds = self.f[name]
            ds.resize(self.n + 1, axis=0)
            ds[self.n] = value
        self.n += 1

    def finish(self, out_path) -> None:
        """Collective: close the parts, then rank 0 appends them (rank order) as group ``lidar`` of ``out_path``."""
        self.f.close()
        self.f = None
        if self.comm is not None and self.size > 1:
            self.comm.Barrier()
        err = None
        if self.rank == 0:
            try:
                import hdf5plugin

                elev, azim = beam_angles(self.cfg)
                with h5py.File(out_path, "a") as out:
                    g = out.require_group("lidar")
                    g.attrs["description"] = __doc__.split("\n\n")[0]
                    g.create_dataset("elevation_deg", data=elev)
                    g.create_dataset("azimuth_deg", data=azim)
                    sources = [h5py.File(p, "r") for p in self.parts]
                    try:
                        for name, (shape, dtype) in _layout(self.cfg).items():
                            data = [s[name] for s in sources]
                            n = sum(d.shape[0] for d in data)
                            big = len(shape) >= 2
                            ds = g.create_dataset(name, shape=(n, *shape), dtype=dtype,
                                                  chunks=(1, *shape) if big else None,
                                                  **(dict(hdf5plugin.LZ4()) if big else {}))
                            i = 0
                            for d in data:
                                ds[i:i + d.shape[0]] = d[:]
                                i += d.shape[0]
                    finally:
                        for s in sources:
                            s.close()
            except Exception as e:  # reported to every rank
                err = f"{type(e).__name__}: {e}"
        if self.comm is not None and self.size > 1:
            err = self.comm.bcast(err, root=0)
        if err:
            raise RuntimeError(f"writing the lidar group of {out_path} failed on rank 0: {err}")

    def cleanup(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        self.path.unlink(missing_ok=True)
        if self.comm is not None and self.size > 1:
            self.comm.Barrier()  # every part is gone before any rank returns

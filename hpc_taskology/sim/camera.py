"""Smooth camera trajectories (sums of sinusoids, C-infinity in time) and pinhole intrinsics from a field of view.

A trajectory gives the camera position and its yaw/pitch/roll as smooth functions of time; :meth:`Trajectory.pose`
turns them into a 4×4 camera-to-world matrix with OpenCV camera axes (x right, y down, z forward) in the z-up world
frame of :mod:`hpc_taskology.sim.scene`:

* forward ``f = (cos p cos y, cos p sin y, sin p)`` (yaw ``y`` about world z from +x, pitch ``p`` > 0 looks up),
* right ``x = normalise(f × up)``, down ``y = f × x``, then the roll about ``f`` (x, y) -> (c x + s y, -s x + c y),
* columns of the rotation = the camera axes in world coordinates (the SceneNet ``camera_to_world`` construction with
  world up = +z instead of +y).

Indoor cameras wander in the room's free rectangle with a slowly panning, sweeping gaze (like a person with a
head-mounted camera); street cameras drive along their lane.  All parameters come from the sequence's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UP = np.array([0.0, 0.0, 1.0])


def intrinsics(width: int, height: int, hfov_deg: float, vfov_deg: float = 0.0) -> np.ndarray:
    """Pinhole K (3, 3) float64 pixels: fx = (W / 2) / tan(hfov / 2), fy = fx (square pixels) or from ``vfov_deg``;
    principal point at the image centre, pixel centres on integers: cx = (W - 1) / 2, cy = (H - 1) / 2.

    Raises ``ValueError`` for a FOV outside (0, 180) degrees or a non-positive size.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width, height: expected >= 1, got {width}x{height}")
    if not 0 < hfov_deg < 180 or not 0 <= vfov_deg < 180:
        raise ValueError(f"hfov_deg/vfov_deg: expected in (0, 180), got {hfov_deg}, {vfov_deg}")
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    fy = fx if vfov_deg == 0 else (height / 2.0) / math.tan(math.radians(vfov_deg) / 2.0)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fy, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_pose(position, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """4×4 float64 camera-to-world from a position (m) and yaw, pitch, roll (rad), see the module docstring."""
    f = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    x = np.cross(f, UP)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        x, y = c * x + s * y, -s * x + c * y
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, f], axis=1)
    T[:3, 3] = position
    return T


@dataclass
class Sinusoid:
    """``offset + rate * t + sum_k amp_k sin(omega_k t + phase_k)``."""

    offset: float
    rate: float
    amp: tuple
    omega: tuple
    phase: tuple

    def __call__(self, t: float) -> float:
        return self.offset + self.rate * t + sum(a * math.sin(w * t + p) for a, w, p in zip(self.amp, self.omega,
                                                                                             self.phase))


@dataclass
class Trajectory:
    """Camera path: position (x, y, z) and yaw, pitch, roll as :class:`Sinusoid` functions of time (s)."""

    x: Sinusoid
    y: Sinusoid
    z: Sinusoid
    yaw: Sinusoid
    pitch: Sinusoid
    roll: Sinusoid

    def pose(self, t: float) -> np.ndarray:
        """4×4 float64 camera-to-world at time ``t`` seconds."""
        return look_pose((self.x(t), self.y(t), self.z(t)), self.yaw(t), self.pitch(t), self.roll(t))


def _pitch_and_roll(cfg, rng: np.random.Generator) -> tuple[Sinusoid, Sinusoid]:
    lo, hi = (math.radians(a) for a in cfg.pitch_deg)
    a, b = sorted(rng.uniform(lo, hi, size=2))
    pitch = Sinusoid((a + b) / 2, 0.0, ((b - a) / 2,), (rng.uniform(0.2, 0.6),), (rng.uniform(0, 2 * math.pi),))
    r = math.radians(cfg.roll_deg) * rng.uniform(0.3, 1.0)
    roll = Sinusoid(0.0, 0.0, (r,), (rng.uniform(0.2, 0.7),), (rng.uniform(0, 2 * math.pi),))
    return pitch, roll


def _wall_distance(xy, yaw: float, size) -> float:
    """Distance (m) from ``xy`` to the room's walls ([0, lx] × [0, ly]) along heading ``yaw``."""
    d = (math.cos(yaw), math.sin(yaw))
    ts = []
    for k in range(2):
        if abs(d[k]) > 1e-9:
            ts.append(((size[k] if d[k] > 0 else 0.0) - xy[k]) / d[k])
    return max(0.0, min(ts))


def indoor_trajectory(cfg, layout, rng: np.random.Generator) -> Trajectory:
    """A walk inside ``layout``'s free rectangle (a Lissajous-like sum of two sinusoids per axis, bounded by the
    rectangle) at about the drawn speed, eye height from ``cfg.camera_height`` bobbing ±3 cm, gaze panning around
    the room with a sweep of ±(10–30)° from a heading with a long free view, pitch sweeping inside a sub-range of
    ``cfg.pitch_deg``."""
    speed = rng.uniform(*cfg.camera_speed)
    axes = []
    for k in range(2):
        lo, hi = layout.free_lo[k], layout.free_hi[k]
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        w1 = rng.uniform(0.6, 1.0)
        amps = (half * w1 * 0.7, half * w1 * 0.3)  # the sum never leaves [lo, hi]
        axes.append((centre, amps))
    reach = math.hypot(*(sum(a) for _, a in axes)) + 1e-3
    base = speed / reach  # rad/s so that |velocity| ≈ speed
    sins = []
    for centre, amps in axes:
        om = (base * rng.uniform(0.7, 1.3), base * rng.uniform(1.5, 2.5))
        sins.append(Sinusoid(centre, 0.0, amps, om, tuple(rng.uniform(0, 2 * math.pi, size=2))))
    h = rng.uniform(*cfg.camera_height)
    z = Sinusoid(h, 0.0, (0.03,), (rng.uniform(1.0, 2.0),), (rng.uniform(0, 2 * math.pi),))
    # look across the room, not into the nearest wall: start facing one of the directions with a long free view
    start = (sins[0](0.0), sins[1](0.0))
    cands = rng.uniform(-math.pi, math.pi, size=16)
    reach_dir = np.array([_wall_distance(start, a, layout.size) for a in cands])
    yaw0 = float(rng.choice(cands[reach_dir >= 0.6 * reach_dir.max()]))
    yaw = Sinusoid(yaw0, rng.choice([-1, 1]) * rng.uniform(0.05, 0.25),
                   (math.radians(rng.uniform(10, 30)),), (rng.uniform(0.2, 0.7),), (rng.uniform(0, 2 * math.pi),))
    pitch, roll = _pitch_and_roll(cfg, rng)
    return Trajectory(sins[0], sins[1], z, yaw, pitch, roll)


def street_trajectory(cfg, layout, rng: np.random.Generator) -> Trajectory:
    """Driving along +x in the camera's lane at ``layout.speed``, weaving ±0.3 m, heading ±3°, height from
    ``cfg.camera_height``."""
    x = Sinusoid(0.0, layout.speed, (), (), ())
    y = Sinusoid(layout.lane_y, 0.0, (rng.uniform(0, 0.3),), (rng.uniform(0.2, 0.5),), (rng.uniform(0, 2 * math.pi),))
    z = Sinusoid(rng.uniform(*cfg.camera_height), 0.0, (0.01,), (rng.uniform(2, 4),), (rng.uniform(0, 2 * math.pi),))
    yaw = Sinusoid(0.0, 0.0, (math.radians(rng.uniform(0, 3)),), (rng.uniform(0.2, 0.5),),
                   (rng.uniform(0, 2 * math.pi),))
    pitch, roll = _pitch_and_roll(cfg, rng)
    return Trajectory(x, y, z, yaw, pitch, roll)

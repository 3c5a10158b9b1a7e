"""Simulator configuration: a TOML file with one ``[sim]`` table parsed into the typed, validated :class:`SimConfig`.

Follows the job files' pattern (``hpc_taskology/config.py``, after torchtitan ``config/configs.py``): one dataclass, a
docstring per field, ``__post_init__`` raising :class:`~hpc_taskology.config.ConfigError` (a ``ValueError``) that
names the bad field as ``sim.<field>``; unknown keys are errors.  Ranges are two-element arrays ``[low, high]`` from
which each sequence draws its own value (uniformly), so the style and lighting vary between sequences.

Example (``jobs/sim_indoor.toml``)::

    [sim]
    kind = "indoor"
    height = 120
    width = 160
    sequences = 40
    frames = 100
    seed = 0
    hfov_deg = [50.0, 64.0]
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, build_dataclass

KINDS = ("indoor", "street")
PATTERNS = ("solid", "checker", "stripes", "noise", "wood", "tiles", "grid")
DEVICES = ("auto", "cpu", "cuda")
COMPRESSIONS = ("lz4", "zstd", "blosc", "gzip", "none")
PHOTO_FORMATS = ("jpg", "png")


def _range(cfg, name: str, lo: float | None = None, hi: float | None = None, integer: bool = False) -> None:
    """Check that ``cfg.<name>`` is ``[low, high]`` with ``lo <= low <= high <= hi``; errors name ``sim.<name>``."""
    v = getattr(cfg, name)
    p = f"{cfg._path}.{name}"
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ConfigError(f"{p}: expected [low, high], got {v!r}")
    a, b = v
    if integer and not (float(a).is_integer() and float(b).is_integer()):
        raise ConfigError(f"{p}: expected whole numbers, got {v!r}")
    if not a <= b:
        raise ConfigError(f"{p}: expected low <= high, got {v!r}")
    if lo is not None and a < lo:
        raise ConfigError(f"{p}: expected values >= {lo}, got {v!r}")
    if hi is not None and b > hi:
        raise ConfigError(f"{p}: expected values <= {hi}, got {v!r}")


def _check(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {msg}")


@dataclass
class SimConfig:
    """``[sim]``: what to render, how much, and how varied.  Lengths in metres, angles in degrees, times in seconds.

    Defaults describe the indoor data the depth and normals tasks train on (HoloLens-like: horizontal FOV about 57°,
    camera 1.2–1.8 m above the floor, rooms 3–8 m); :func:`street_defaults` gives the street ones.
    """

    kind: str = "indoor"
    """Scene family: ``indoor`` (rooms with furniture, static) or ``street`` (road, buildings, moving cars and
    pedestrians)."""
    height: int = 120
    """Image height in pixels (the 3:4 aspect of 96×128 and 120×160 by default)."""
    width: int = 160
    """Image width in pixels."""
    sequences: int = 4
    """Number of sequences (one procedural scene and one camera trajectory each)."""
    frames: int = 20
    """Frames per sequence."""
    seed: int = 0
    """Master seed.  Sequence s is generated from ``(seed, s)`` only: the same frames whatever the number of ranks."""
    fps: float = 10.0
    """Frame rate (Hz): frame f of a sequence is at time f / fps; object motion covers 1 / fps seconds."""
    hfov_deg: list[float] = field(default_factory=lambda: [50.0, 64.0])
    """Horizontal field of view range (degrees) drawn per sequence; HoloLens frames have ≈57°."""
    vfov_deg: float = 0.0
    """Fixed vertical field of view (degrees); 0 = square pixels (fy = fx).  SceneNet's own cameras: 60° × 45°."""
    camera_height: list[float] = field(default_factory=lambda: [1.2, 1.8])
    """Camera height above the floor/road (m), drawn per sequence; it bobs ±3 cm along the trajectory."""
    camera_speed: list[float] = field(default_factory=lambda: [0.2, 0.6])
    """Camera speed (m/s) range: walking indoors; driving in streets."""
    pitch_deg: list[float] = field(default_factory=lambda: [-35.0, 5.0])
    """Camera pitch range (degrees, negative = looking down); the pitch sweeps inside it along the trajectory."""
    roll_deg: float = 0.0
    """Largest camera roll (degrees) along the trajectory (a head tilts; SceneNet's cameras never roll: 0)."""
    room_size: list[float] = field(default_factory=lambda: [3.0, 8.0])
    """Indoor: room length and width range (m), each drawn separately."""
    room_height: list[float] = field(default_factory=lambda: [2.4, 3.2])
    """Indoor: floor-to-ceiling height range (m)."""
    objects: list[int] = field(default_factory=lambda: [6, 14])
    """Indoor: furniture pieces per room; street: parked and moving cars per scene."""
    pedestrians: list[int] = field(default_factory=lambda: [2, 8])
    """Street: pedestrians walking on the sidewalks (constant velocity)."""
    movers: list[float] = field(default_factory=lambda: [0.5, 1.0])
    """Street: fraction of cars that drive (the others are parked)."""
    patterns: list[str] = field(default_factory=lambda: list(PATTERNS))
    """Procedural textures to draw from: solid, checker, stripes, noise, wood, tiles, grid."""
    texture_scale: list[float] = field(default_factory=lambda: [0.05, 0.8])
    """Texture period range (m)."""
    saturation: list[float] = field(default_factory=lambda: [0.0, 0.45])
    """Colour saturation range (HSV, 0–1) of the materials."""
    brightness: list[float] = field(default_factory=lambda: [0.25, 0.95])
    """Colour value range (HSV, 0–1) of the materials."""
    lights: list[int] = field(default_factory=lambda: [1, 3])
    """Indoor: point lights below the ceiling; street: always one sun (directional)."""
    light_intensity: list[float] = field(default_factory=lambda: [0.6, 1.6])
    """Intensity range of each light (linear units; a surface facing a light at its falloff distance gets half)."""
    ambient: list[float] = field(default_factory=lambda: [0.15, 0.4])
    """Ambient light range (linear units)."""
    shadows: bool = True
    """Cast shadow rays to each light (costs one more intersection pass per light)."""
    sensor_noise: float = 0.0
    """Std of Gaussian noise added to the 8-bit RGB (0–255 units), drawn per frame from (seed, sequence, frame)."""
    blur_sigma: float = 0.0
    """Gaussian blur (pixels) of the RGB, a cheap stand-in for optics and anti-aliasing; 0 = none."""
    max_depth: float = 10.0
    """Depth beyond this (m) is not valid (``valid`` false, ``depth`` 0): indoor sensors reach ≈10 m."""
    lidar: bool = False
    """Also simulate a spinning LiDAR at the camera and store its point clouds and 3-D boxes (group ``lidar``)."""
    lidar_beams: int = 32
    """LiDAR channels (elevation rows)."""
    lidar_azimuths: int = 512
    """LiDAR columns (azimuth steps over 360°)."""
    lidar_fov_deg: list[float] = field(default_factory=lambda: [-25.0, 5.0])
    """LiDAR elevation range (degrees)."""
    lidar_range: float = 60.0
    """LiDAR maximum range (m)."""
    scenenet_dir: str = ""
    """If set, also write SceneNet RGB-D's native layout here (photo/, depth/ as Euclidean ray length in mm,
    instance/, one trajectory protobuf per sequence).  Needs a fixed FOV (hfov_deg low == high) and roll_deg = 0."""
    scenenet_photo_format: str = "jpg"
    """Photo format of the SceneNet layout: ``jpg`` (as SceneNet) or ``png`` (lossless)."""
    device: str = "auto"
    """Where rays are cast: ``cpu``, ``cuda`` or ``auto`` (CUDA when available)."""
    threads: int = 1
    """torch intra-op threads per rank; 0 = cores / ranks on this node.  The renderer's tensors are small, so one
    thread per rank and more ranks scale better (on a busy node OpenMP threads also spin-wait on each other: 2
    threads measured 20x slower than 1 on a loaded 2-core machine)."""
    chunk_rays: int = 32768
    """Rays intersected at once (memory ∝ chunk × primitives)."""
    compression: str = "lz4"
    """Per-sample chunk compression of the output file (schema.COMPRESSIONS)."""
    _path: str = field(default="sim", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.kind in KINDS, f"{p}.kind", f"unknown scene kind {self.kind!r}; choose one of {KINDS}")
        for name, lo in (("height", 8), ("width", 8), ("sequences", 1), ("frames", 1), ("lidar_beams", 1),
                         ("lidar_azimuths", 4), ("chunk_rays", 256)):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= lo, f"{p}.{name}", f"must be an integer >= {lo}, got {v!r}")
        _check(self.seed >= 0, f"{p}.seed", f"must be >= 0, got {self.seed}")
        _check(self.threads >= 0, f"{p}.threads", f"must be >= 0, got {self.threads}")
        _check(self.fps > 0, f"{p}.fps", f"must be > 0, got {self.fps}")
        _range(self, "hfov_deg", 10.0, 150.0)
        _check(self.vfov_deg == 0 or 5.0 <= self.vfov_deg <= 150.0, f"{p}.vfov_deg",
               f"must be 0 (square pixels) or in [5, 150], got {self.vfov_deg}")
        _range(self, "camera_height", 0.1, 10.0)
        _range(self, "camera_speed", 0.0, 40.0)
        _range(self, "pitch_deg", -80.0, 80.0)
        _check(0.0 <= self.roll_deg <= 45.0, f"{p}.roll_deg", f"must be in [0, 45], got {self.roll_deg}")
        _range(self, "room_size", 2.0, 30.0)
        _range(self, "room_height", 2.0, 10.0)
        _check(self.camera_height[1] < self.room_height[0] - 0.2 or self.kind != "indoor", f"{p}.camera_height",
               f"highest camera height {self.camera_height[1]} m must stay 0.2 m below the lowest ceiling "
               f"(room_height {self.room_height[0]} m)")
        _range(self, "objects", 0, 60, integer=True)
        _range(self, "pedestrians", 0, 60, integer=True)
        _range(self, "movers", 0.0, 1.0)
        _check(len(self.patterns) >= 1 and all(x in PATTERNS for x in self.patterns), f"{p}.patterns",
               f"expected a non-empty list drawn from {PATTERNS}, got {self.patterns!r}")
        _range(self, "texture_scale", 0.005, 100.0)
        _range(self, "saturation", 0.0, 1.0)
        _range(self, "brightness", 0.0, 1.0)
        _range(self, "lights", 0 if self.kind == "street" else 1, 8, integer=True)
        _range(self, "light_intensity", 0.0, 100.0)
        _range(self, "ambient", 0.0, 10.0)
        _check(self.sensor_noise >= 0, f"{p}.sensor_noise", f"must be >= 0, got {self.sensor_noise}")
        _check(0 <= self.blur_sigma <= 5, f"{p}.blur_sigma", f"must be in [0, 5] pixels, got {self.blur_sigma}")
        _check(self.max_depth > 0, f"{p}.max_depth", f"must be > 0, got {self.max_depth}")
        _range(self, "lidar_fov_deg", -89.0, 89.0)
        _check(self.lidar_range > 0, f"{p}.lidar_range", f"must be > 0, got {self.lidar_range}")
        _check(self.device in DEVICES, f"{p}.device", f"unknown device {self.device!r}; choose one of {DEVICES}")
        _check(self.compression in COMPRESSIONS, f"{p}.compression",
               f"unknown compression {self.compression!r}; choose one of {COMPRESSIONS}")
        _check(self.scenenet_photo_format in PHOTO_FORMATS, f"{p}.scenenet_photo_format",
               f"expected one of {PHOTO_FORMATS}, got {self.scenenet_photo_format!r}")
        if self.scenenet_dir:
            _check(self.hfov_deg[0] == self.hfov_deg[1], f"{p}.hfov_deg",
                   f"the SceneNet layout stores no intrinsics: with scenenet_dir set the FOV must be fixed "
                   f"(low == high), got {self.hfov_deg}")
            _check(self.roll_deg == 0, f"{p}.roll_deg",
                   f"SceneNet poses (camera, look-at, up +y) cannot roll: with scenenet_dir set it must be 0, "
                   f"got {self.roll_deg}")

    def to_json(self, exclude: tuple = ()) -> str:
        """The configuration as a JSON object, without the fields in ``exclude`` (the output file's ``sim_config``
        attribute leaves out ``scenenet_dir``, an output location, so the file depends only on what is rendered)."""
        return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                           if f.name != "_path" and f.name not in exclude}, sort_keys=True)


STREET_DEFAULTS = dict(
    kind="street", camera_height=[1.3, 1.8], camera_speed=[4.0, 10.0], pitch_deg=[-8.0, 2.0], objects=[4, 12],
    hfov_deg=[60.0, 90.0], lights=[0, 0], ambient=[0.25, 0.45], light_intensity=[0.8, 1.3], max_depth=80.0,
    texture_scale=[0.1, 2.0],
)


def street_defaults() -> dict:
    """Defaults that differ for ``kind = "street"`` (applied under the file's own keys by :func:`config_from_dict`)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in STREET_DEFAULTS.items()}


def config_from_dict(data: dict, source: str = "<dict>") -> SimConfig:
    """Build a :class:`SimConfig` from a parsed TOML document ``{"sim": {...}}``.

    A ``street`` kind starts from :func:`street_defaults` (camera speed, FOV, depth range, ...), then the file's keys.
    Raises :class:`~hpc_taskology.config.ConfigError` naming the source and the field (``sim.<field>``).
    """
    try:
        if not isinstance(data, dict) or set(data) != {"sim"}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"expected exactly one table [sim], got {keys}")
        table = data["sim"]
        if isinstance(table, dict) and table.get("kind") == "street":
            table = {**street_defaults(), **table}
        return build_dataclass(SimConfig, table, "sim")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_sim_config(path: str | Path, overrides: dict | None = None) -> SimConfig:
    """Read and validate a simulator TOML file; ``overrides`` replace keys of its ``[sim]`` table (e.g. from the CLI).

    Raises ``FileNotFoundError`` for a missing file, :class:`~hpc_taskology.config.ConfigError` for TOML syntax errors
    and bad fields (the message starts with the file name and names ``sim.<field>``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"simulator config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if overrides and isinstance(data.get("sim"), dict):
        data["sim"].update(overrides)
    return config_from_dict(data, source=str(path))

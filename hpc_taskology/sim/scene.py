"""Scene description (primitives, materials, lights) and the procedural indoor and street scene generators.

World frame: right-handed, metres, **z up**; the floor (indoor) or the road surface (street) is z = 0.  Scenes are
made of four analytic primitive kinds, each with its own local frame (``rot`` maps local to world coordinates,
``centre`` is the local origin in world coordinates at time 0):

=============  =======================================  ====================================================
kind           ``size`` (metres)                        faces (index into the per-face tables)
=============  =======================================  ====================================================
box            half extents (hx, hy, hz)                0: -x, 1: +x, 2: -y, 3: +y, 4: -z, 5: +z
sphere         (r, r, r)                                0
cylinder       (r, r, half height), axis = local z      0: side, 1: bottom cap (-z), 2: top cap (+z)
rect           (hx, hy, 0), normal = local z; 0 = open  0  (an unbounded plane when hx = hy = 0)
=============  =======================================  ====================================================

Every primitive has per-face ``material``, ``klass`` (semantic class id, :data:`CLASSES`) and ``instance`` ids, a
constant ``velocity`` (m/s, world frame; the primitive is at ``centre + velocity * time``), an ``inside`` flag (a box
seen from inside: the room) and a ``caster`` flag (casts shadows).

Semantic classes (``segmentation`` values; the output file stores them as the ``class_names`` attribute):

 0 wall, 1 floor, 2 ceiling, 3 door, 4 window, 5 picture, 6 cabinet, 7 shelf, 8 table, 9 chair, 10 sofa, 11 bed,
 12 lamp, 13 plant, 14 object, 15 road, 16 sidewalk, 17 building, 18 car, 19 pedestrian, 20 pole, 21 vegetation,
 22 terrain, 23 sky.  Movable classes (``movable`` mask, Taskology eq. 2): car, pedestrian.

Instance ids are unique per scene, 0 = none (sky).  Generators draw everything from a ``numpy.random.Generator``
seeded by the caller from ``(seed, sequence index)``.  Scene layouts follow SceneNet RGB-D's idea (McCormac et al.
ICCV 2017: random furniture in random rooms with random lighting and textures), built from primitives instead of
ShapeNet models.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np
import torch

CLASSES = ("wall", "floor", "ceiling", "door", "window", "picture", "cabinet", "shelf", "table", "chair", "sofa",
           "bed", "lamp", "plant", "object", "road", "sidewalk", "building", "car", "pedestrian", "pole",
           "vegetation", "terrain", "sky")
C = {name: i for i, name in enumerate(CLASSES)}
MOVABLE_CLASSES = ("car", "pedestrian")
SKY = C["sky"]

KINDS = ("box", "sphere", "cylinder", "rect")

# texture patterns (hpc_taskology.sim.render.texture); the first seven are the config's PATTERNS
PATTERN_IDS = {"solid": 0, "checker": 1, "stripes": 2, "noise": 3, "wood": 4, "tiles": 5, "grid": 6, "road": 7}


@dataclass
class Primitives:
    """One primitive kind as tensors (P primitives); see the module docstring for ``size`` and faces."""

    centre: torch.Tensor  # (P, 3) m, world, at time 0
    rot: torch.Tensor  # (P, 3, 3) local -> world rotation
    size: torch.Tensor  # (P, 3) m
    material: torch.Tensor  # (P, 6) int64
    klass: torch.Tensor  # (P, 6) int64
    instance: torch.Tensor  # (P, 6) int64
    velocity: torch.Tensor  # (P, 3) m/s, world
    inside: torch.Tensor  # (P,) bool
    caster: torch.Tensor  # (P,) bool

    def __len__(self) -> int:
        return self.centre.shape[0]

    def at(self, time: float) -> "Primitives":
        """The primitives at ``time`` seconds (translated by ``velocity * time``)."""
        if len(self) == 0 or not bool((self.velocity != 0).any()):
            return self
        return Primitives(self.centre + self.velocity * time, self.rot, self.size, self.material, self.klass,
                          self.instance, self.velocity, self.inside, self.caster)

    def select(self, mask: torch.Tensor) -> "Primitives":
        return Primitives(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


@dataclass
class Materials:
    """Procedural materials (M of them): pattern id, two sRGB colours in [0, 1], period (m), in-plane rotation (rad),
    noise seed, colour variation amplitude and a pattern parameter (stripe duty / grout width)."""

    pattern: torch.Tensor  # (M,) int64, PATTERN_IDS
    colour_a: torch.Tensor  # (M, 3)
    colour_b: torch.Tensor  # (M, 3)
    scale: torch.Tensor  # (M,) m per period
    angle: torch.Tensor  # (M,) rad
    seed: torch.Tensor  # (M,) int64
    variation: torch.Tensor  # (M,)
    param: torch.Tensor  # (M,)


@dataclass
class SceneObject:
    """An object made of one or more primitives, for 3-D boxes (LiDAR) and bookkeeping: world box at time 0."""

    instance: int
    klass: int
    centre: tuple  # (3,) m
    size: tuple  # (l, w, h) m along the object's own x, y, z
    yaw: float  # rad about world z
    velocity: tuple  # (3,) m/s


@dataclass
class Scene:
    """Everything the renderer needs: primitives by kind, materials, lights, sky."""

    prims: dict[str, Primitives]
    materials: Materials
    point_lights: torch.Tensor  # (L, 3) positions, m
    point_colour: torch.Tensor  # (L, 3) linear RGB intensity
    point_falloff: torch.Tensor  # (L,) m: a light delivers half its intensity at this distance
    sun_dir: torch.Tensor  # (D, 3) unit vectors from the sun towards the scene
    sun_colour: torch.Tensor  # (D, 3)
    ambient: torch.Tensor  # (3,) linear RGB
    sky: bool  # rays that miss everything see the sky (street); indoors every ray hits the room
    sky_colours: torch.Tensor  # (2, 3) sRGB at the horizon and at the zenith
    objects: list[SceneObject] = field(default_factory=list)

    def at(self, time: float) -> dict[str, Primitives]:
        return {k: p.at(time) for k, p in self.prims.items()}


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


AXIS_Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # local z -> world y (wheels)
AXIS_X = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # local z -> world x


class SceneBuilder:
    """Collects primitives and materials in Python lists, then :meth:`build` makes the tensors of a :class:`Scene`."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rows: dict[str, list] = {k: [] for k in KINDS}
        self.mats: list[tuple] = []
        self.points: list[tuple] = []
        self.suns: list[tuple] = []
        self.ambient = (0.2, 0.2, 0.2)
        self.sky = False
        self.sky_colours = ((0.80, 0.85, 0.90), (0.35, 0.55, 0.85))
        self.objects: list[SceneObject] = []
        self._instance = 0

    def new_instance(self) -> int:
        self._instance += 1
        return self._instance

    def material(self, pattern: str, a, b=None, scale: float = 0.3, angle: float = 0.0, variation: float = 0.1,
                 param: float = 0.5) -> int:
        """Add a material; ``a``/``b`` sRGB in [0, 1]; returns its id."""
        b = a if b is None else b
        self.mats.append((PATTERN_IDS[pattern], tuple(a), tuple(b), float(scale), float(angle),
                          int(self.rng.integers(0, 2**31 - 1)), float(variation), float(param)))
        return len(self.mats) - 1

    def _add(self, kind, centre, rot, size, material, klass, instance, velocity=(0, 0, 0), inside=False,
             caster=True) -> None:
        per_face = [np.broadcast_to(np.asarray(v, np.int64), (6,)).copy() for v in (material, klass, instance)]
        self.rows[kind].append((np.asarray(centre, float), np.asarray(rot, float), np.asarray(size, float),
                                *per_face, np.asarray(velocity, float), bool(inside), bool(caster)))

    def box(self, centre, full_size, material, klass, instance, yaw: float = 0.0, velocity=(0, 0, 0),
            inside: bool = False, caster: bool = True) -> None:
        """An oriented box: ``full_size`` (lx, ly, lz) metres, rotated by ``yaw`` about z; per-face ids allowed."""
        self._add("box", centre, yaw_matrix(yaw), 0.5 * np.asarray(full_size, float), material, klass, instance,
                  velocity, inside, caster)

    def sphere(self, centre, radius, material, klass, instance, velocity=(0, 0, 0), caster: bool = True) -> None:
        self._add("sphere", centre, np.eye(3), (radius,) * 3, material, klass, instance, velocity, False, caster)

    def cylinder(self, centre, radius, height, material, klass, instance, rot=None, velocity=(0, 0, 0),
                 caster: bool = True) -> None:
        """A capped cylinder of ``height`` metres, axis = ``rot``'s local z (default world z)."""
        self._add("cylinder", centre, np.eye(3) if rot is None else rot, (radius, radius, 0.5 * height), material,
                  klass, instance, velocity, False, caster)

    def rect(self, centre, rot, half_x, half_y, material, klass, instance, caster: bool = True) -> None:
        """A rectangle (``half_x = half_y = 0``: an unbounded plane) with normal = ``rot``'s local z."""
        self._add("rect", centre, rot, (half_x, half_y, 0.0), material, klass, instance, (0, 0, 0), False, caster)

    def point_light(self, pos, colour, falloff) -> None:
        self.points.append((tuple(pos), tuple(colour), float(falloff)))

    def sun(self, direction, colour) -> None:
        d = np.asarray(direction, float)
        self.suns.append((tuple(d / np.linalg.norm(d)), tuple(colour)))

    def build(self, device="cpu") -> Scene:
        f32 = dict(dtype=torch.float32, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        prims = {}
        for kind, rows in self.rows.items():
            if rows:
                cols = list(zip(*rows))
                t = [torch.tensor(np.stack(c), **(i64 if k in (3, 4, 5) else f32)) for k, c in enumerate(cols[:7])]
                t += [torch.tensor(cols[7], dtype=torch.bool, device=device),
                      torch.tensor(cols[8], dtype=torch.bool, device=device)]
            else:
                t = [torch.zeros(0, 3, **f32), torch.zeros(0, 3, 3, **f32), torch.zeros(0, 3, **f32)]
                t += [torch.zeros(0, 6, **i64) for _ in range(3)]
                t += [torch.zeros(0, 3, **f32), torch.zeros(0, dtype=torch.bool, device=device),
                      torch.zeros(0, dtype=torch.bool, device=device)]
            prims[kind] = Primitives(*t)
        if not self.mats:
            self.material("solid", (0.5, 0.5, 0.5))
        m = list(zip(*self.mats))
        mats = Materials(torch.tensor(m[0], **i64), torch.tensor(m[1], **f32), torch.tensor(m[2], **f32),
                         torch.tensor(m[3], **f32), torch.tensor(m[4], **f32), torch.tensor(m[5], **i64),
                         torch.tensor(m[6], **f32), torch.tensor(m[7], **f32))
        pts = list(zip(*self.points)) if self.points else [[], [], []]
        suns = list(zip(*self.suns)) if self.suns else [[], []]
        return Scene(
            prims=prims, materials=mats,
            point_lights=torch.tensor(pts[0], **f32).reshape(-1, 3),
            point_colour=torch.tensor(pts[1], **f32).reshape(-1, 3),
            point_falloff=torch.tensor(pts[2], **f32).reshape(-1),
            sun_dir=torch.tensor(suns[0], **f32).reshape(-1, 3), sun_colour=torch.tensor(suns[1], **f32).reshape(-1, 3),
            ambient=torch.tensor(self.ambient, **f32), sky=self.sky,
            sky_colours=torch.tensor(self.sky_colours, **f32), objects=list(self.objects))


# ---------------------------------------------------------------------------------------------------------------
# Random styles


class Style:
    """Draws materials within the config's colour/texture ranges (saturation, brightness, patterns, scale)."""

    def __init__(self, b: SceneBuilder, cfg):
        self.b, self.cfg, self.rng = b, cfg, b.rng

    def u(self, lo_hi) -> float:
        return float(self.rng.uniform(*lo_hi))

    def colour(self, hue=None, sat=None, val=None) -> tuple:
        h = self.rng.uniform() if hue is None else hue
        s = self.u(self.cfg.saturation) if sat is None else sat
        v = self.u(self.cfg.brightness) if val is None else val
        return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))

    def pattern(self, preferred: tuple) -> str:
        allowed = [p for p in preferred if p in self.cfg.patterns] or list(self.cfg.patterns)
        return str(self.rng.choice(allowed))

    def material(self, preferred: tuple, val=None, sat=None, contrast: float | None = None, scale=None) -> int:
        """A material whose pattern is drawn from ``preferred`` ∩ config patterns; the second colour is the first
        one lighter or darker by ``contrast`` (drawn when None) with a nearby hue."""
        pat = self.pattern(preferred)
        a = self.colour(val=val, sat=sat)
        h, s, v = colorsys.rgb_to_hsv(*a)
        if contrast is None:  # fine noise reads as granite when strong: keep it subtle
            lo, hi = {"noise": (0.04, 0.18), "wood": (0.08, 0.25)}.get(pat, (0.1, 0.4))
            contrast = self.rng.uniform(lo, hi)
        c = contrast
        v2 = v - c if v > 0.5 else v + c
        b = colorsys.hsv_to_rgb((h + self.rng.normal(0, 0.05)) % 1.0, min(s * self.rng.uniform(0.6, 1.3), 1), v2)
        if pat == "tiles":
            b = self.colour(sat=0.05, val=float(self.rng.uniform(0.3, 0.9)))  # grout
        lo, hi = self.cfg.texture_scale
        sc = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) if scale is None else scale
        param = {"stripes": self.rng.uniform(0.2, 0.8), "tiles": self.rng.uniform(0.03, 0.1)}.get(pat, 0.5)
        return self.b.material(pat, a, b, scale=sc, angle=float(self.rng.choice([0.0, math.pi / 2])),
                               variation=float(self.rng.uniform(0.0, 0.12)), param=float(param))


# ---------------------------------------------------------------------------------------------------------------
# Indoor rooms


@dataclass
class IndoorLayout:
    """What the camera trajectory needs to know about a room: size and the free rectangle for the camera."""

    size: tuple  # (lx, ly, lz) m
    free_lo: tuple  # (x, y) m
    free_hi: tuple  # (x, y) m


def _wall_frame(side: int, lx: float, ly: float):
    """(origin on the wall at floor level, along-wall unit vector, inward normal, wall length, yaw facing inward)."""
    if side == 0:  # x = 0 wall
        return np.array([0.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), ly, 0.0
    if side == 1:  # x = lx
        return np.array([lx, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), ly, math.pi
    if side == 2:  # y = 0
        return np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), lx, math.pi / 2
    return np.array([0.0, ly]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), lx, -math.pi / 2


def make_indoor(cfg, rng: np.random.Generator, device="cpu") -> tuple[Scene, IndoorLayout]:
    """A random furnished room: walls, floor and ceiling (one box seen from inside), doors, windows and pictures on
    the walls, furniture along the walls (cabinets, shelves, desks, sofas, beds, lamps, plants, crates; small objects
    on desks and cabinets), a table with chairs and small objects in the middle, point lights below the ceiling
    (``cfg.lights``).  Returns the scene and its layout."""
    b = SceneBuilder(rng)
    st = Style(b, cfg)
    lx, ly = st.u(cfg.room_size), st.u(cfg.room_size)
    lz = st.u(cfg.room_height)
    wall = st.material(("solid", "noise", "stripes"), val=rng.uniform(0.55, 0.95))
    walls = [wall] * 4
    if rng.uniform() < 0.35:  # an accent wall
        walls[int(rng.integers(4))] = st.material(("solid", "noise", "stripes", "checker"))
    floor = st.material(("wood", "tiles", "checker", "noise"), val=rng.uniform(0.25, 0.75))
    ceiling = st.material(("solid", "noise"), val=rng.uniform(0.75, 0.98), sat=0.03, contrast=0.05)
    inst = [b.new_instance() for _ in range(6)]
    b.box((lx / 2, ly / 2, lz / 2), (lx, ly, lz), walls + [floor, ceiling],
          [C["wall"]] * 4 + [C["floor"], C["ceiling"]], inst, inside=True, caster=False)

    # segments already used along each wall (for furniture and doors), and how deep tall furniture reaches
    used: list[list[tuple]] = [[] for _ in range(4)]
    depth_tall = [0.0] * 4

    def free_slot(side: int, width: float, tries: int = 20):
        _, _, _, length, _ = _wall_frame(side, lx, ly)
        if width > length - 0.2:
            return None
        for _ in range(tries):
            s = rng.uniform(0.1 + width / 2, length - 0.1 - width / 2)
            if all(abs(s - c) > (width + w) / 2 + 0.05 for c, w in used[side]):
                used[side].append((s, width))
                return s
        return None

    def on_wall(side, s, dist, z):
        o, along, inward, _, yaw = _wall_frame(side, lx, ly)
        xy = o + along * s + inward * dist
        return np.array([xy[0], xy[1], z]), yaw

    # doors, windows, pictures: thin boxes on the walls (not shadow casters: they hug the wall)
    for _ in range(int(rng.integers(0, 2)) + 1):
        side = int(rng.integers(4))
        s = free_slot(side, 0.95)
        if s is not None:
            c, yaw = on_wall(side, s, 0.02, 1.03)
            i = b.new_instance()
            b.box(c, (0.04, 0.9, 2.05), st.material(("solid", "wood", "noise")), C["door"], i, yaw=yaw, caster=False)
            hc, _ = on_wall(side, s - 0.33, 0.07, 1.0)
            b.sphere(hc, 0.035, b.material("solid", (0.75, 0.75, 0.7)), C["door"], i, caster=False)
    for _ in range(int(rng.integers(0, 3))):
        side = int(rng.integers(4))
        w = rng.uniform(0.8, 1.8)
        s = free_slot(side, w)
        if s is not None:
            c, yaw = on_wall(side, s, 0.015, rng.uniform(1.4, 1.7))
            glass = b.material("grid", st.colour(val=0.95, sat=0.1), st.colour(hue=0.58, sat=0.25, val=0.9),
                               scale=float(rng.uniform(0.4, 0.9)), variation=0.05)
            b.box(c, (0.03, w, rng.uniform(0.9, 1.3)), glass, C["window"], b.new_instance(), yaw=yaw, caster=False)
    for _ in range(int(rng.integers(0, 4))):
        side = int(rng.integers(4))
        w = rng.uniform(0.3, 1.2)
        o, along, inward, length, yaw = _wall_frame(side, lx, ly)
        s = rng.uniform(w / 2 + 0.1, max(w / 2 + 0.11, length - w / 2 - 0.1))
        c, yaw = on_wall(side, s, 0.012, rng.uniform(1.3, 1.9))
        art = st.material(("noise", "stripes", "checker", "solid"), scale=float(rng.uniform(0.03, 0.3)))
        b.box(c, (0.02, w, w * rng.uniform(0.6, 1.4)), art, C["picture"], b.new_instance(), yaw=yaw, caster=False)


    def small_items(centre_xy, yaw: float, half_l: float, half_w: float, top: float, count: int) -> None:
        """Cups, vases, balls and books standing on a surface at height ``top``."""
        R = yaw_matrix(yaw)
        for _ in range(count):
            q = np.array([*centre_xy, 0]) + R @ np.array([rng.uniform(-0.7, 0.7) * half_l,
                                                          rng.uniform(-0.7, 0.7) * half_w, 0])
            mat = st.material(("solid", "noise", "stripes", "checker"))
            oi = b.new_instance()
            shape = rng.integers(3)
            if shape == 0:
                r = rng.uniform(0.04, 0.12)
                b.sphere((q[0], q[1], top + r), r, mat, C["object"], oi)
            elif shape == 1:
                r, h = rng.uniform(0.03, 0.08), rng.uniform(0.08, 0.3)
                b.cylinder((q[0], q[1], top + h / 2), r, h, mat, C["object"], oi)
            else:
                s3 = rng.uniform(0.05, 0.3, size=3) * np.array([1, 1, 0.4])
                b.box((q[0], q[1], top + s3[2] / 2), s3, mat, C["object"], oi, yaw=float(rng.uniform(-3, 3)))

    # furniture along the walls
    kinds = ["cabinet", "shelf", "sofa", "bed", "lamp", "plant", "cabinet", "shelf", "desk", "desk", "crate"]
    n_furn = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    n_wall = max(n_furn - int(rng.integers(1, 4)), 0) if n_furn > 1 else n_furn
    tall_limit = cfg.camera_height[0] - 0.15
    for _ in range(n_wall):
        kind = str(rng.choice(kinds))
        side = int(rng.integers(4))
        dims = {"cabinet": (rng.uniform(0.35, 0.6), rng.uniform(0.5, 1.6), rng.uniform(0.5, 1.1)),
                "shelf": (rng.uniform(0.25, 0.45), rng.uniform(0.6, 1.4), rng.uniform(1.2, 2.1)),
                "sofa": (rng.uniform(0.8, 1.0), rng.uniform(1.5, 2.4), rng.uniform(0.75, 0.9)),
                "bed": (rng.uniform(1.9, 2.1), rng.uniform(1.0, 1.8), rng.uniform(0.45, 0.6)),
                "lamp": (0.35, 0.35, rng.uniform(1.3, 1.8)),
                "plant": (0.45, 0.45, rng.uniform(0.6, 1.4)),
                "desk": (rng.uniform(0.6, 0.8), rng.uniform(1.0, 1.8), rng.uniform(0.72, 0.76)),
                "crate": (rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))}[kind]
        d, w, h = dims
        if kind == "bed" and d > 0.45 * min(lx, ly):
            continue
        s = free_slot(side, w)
        if s is None:
            continue
        i = b.new_instance()
        if h > tall_limit:
            depth_tall[side] = max(depth_tall[side], d)
        if kind in ("cabinet", "shelf"):
            c, yaw = on_wall(side, s, d / 2 + 0.01, h / 2)
            mat = st.material(("wood", "solid", "noise"))
            b.box(c, (d, w, h), mat, C[kind], i, yaw=yaw)
            if kind == "cabinet":
                small_items(c[:2], yaw, d / 2, w / 2, h, int(rng.integers(0, 3)))
            if kind == "shelf":  # books: a row of thin boxes on each board
                for zb in np.arange(0.35, h - 0.2, 0.4):  # book rows standing out of the front
                    cb, _ = on_wall(side, s, d + 0.06, zb + 0.13)
                    b.box(cb, (0.1, w * 0.9, 0.26), st.material(("stripes",), scale=float(rng.uniform(0.03, 0.08))),
                          C["object"], b.new_instance(), yaw=yaw)
        elif kind == "sofa":
            mat = st.material(("noise", "solid", "stripes"))
            c, yaw = on_wall(side, s, d / 2 + 0.02, 0.22)
            b.box(c, (d, w, 0.44), mat, C["sofa"], i, yaw=yaw)
            c, _ = on_wall(side, s, 0.12 + 0.02, h / 2 + 0.05)
            b.box(c, (0.24, w, h - 0.1), mat, C["sofa"], i, yaw=yaw)
        elif kind == "bed":
            c, yaw = on_wall(side, s, d / 2 + 0.02, h / 2)
            b.box(c, (d, w, h), st.material(("noise", "stripes", "checker", "solid")), C["bed"], i, yaw=yaw)
            c, _ = on_wall(side, s, 0.04, 0.5)
            b.box(c, (0.06, w, 1.0), st.material(("wood", "solid")), C["bed"], i, yaw=yaw)
        elif kind == "desk":
            c, yaw = on_wall(side, s, d / 2 + 0.02, h - 0.02)
            wood = st.material(("wood", "solid"))
            b.box(c, (d, w, 0.04), wood, C["table"], i, yaw=yaw)
            R = yaw_matrix(yaw)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    p = c + R @ np.array([sx * (d / 2 - 0.04), sy * (w / 2 - 0.04), 0])
                    b.box((p[0], p[1], (h - 0.04) / 2), (0.04, 0.04, h - 0.04), wood, C["table"], i, yaw=yaw)
            small_items(c[:2], yaw, d / 2, w / 2, h, int(rng.integers(1, 4)))
        elif kind == "crate":
            c, yaw = on_wall(side, s, d / 2 + rng.uniform(0.02, 0.3), h / 2)
            crate = st.material(("solid", "noise", "wood"), sat=rng.uniform(0.1, 0.5), val=rng.uniform(0.4, 0.8))
            b.box(c, (d, w, h), crate, C["object"], i, yaw=yaw + rng.uniform(-0.3, 0.3))
            if rng.uniform() < 0.4:
                c2 = c.copy()
                c2[2] = h + h * 0.4
                b.box(c2, (d * 0.8, w * 0.8, h * 0.8), crate, C["object"], b.new_instance(),
                      yaw=yaw + rng.uniform(-0.3, 0.3))
        elif kind == "lamp":
            c, _ = on_wall(side, s, 0.3, h / 2)
            b.cylinder(c, 0.02, h, b.material("solid", st.colour(sat=0.1)), C["lamp"], i)
            c2 = c.copy()
            c2[2] = h
            b.cylinder(c2, 0.18, 0.3, st.material(("solid",), val=0.9), C["lamp"], i)
        else:  # plant: pot and foliage
            c, _ = on_wall(side, s, 0.3, 0.2)
            b.cylinder(c, 0.16, 0.4, st.material(("solid", "noise")), C["plant"], i)
            c2 = c.copy()
            c2[2] = 0.4 + (h - 0.4) / 2
            leaves = b.material("noise", st.colour(hue=rng.uniform(0.22, 0.4), sat=0.6, val=0.45),
                                st.colour(hue=rng.uniform(0.22, 0.4), sat=0.7, val=0.2), scale=0.06, variation=0.2)
            b.sphere(c2, min(0.3, (h - 0.4) / 2 + 0.05), leaves, C["plant"], i)

    margins = [max(0.7, dt + 0.6) for dt in depth_tall]  # x=0, x=lx, y=0, y=ly
    free_lo = [margins[0], margins[2]]
    free_hi = [lx - margins[1], ly - margins[3]]
    for k, length in ((0, lx), (1, ly)):
        if free_hi[k] - free_lo[k] < 0.3:  # a small room: centre the camera region
            mid = 0.5 * (free_lo[k] + free_hi[k])
            free_lo[k], free_hi[k] = mid - 0.15, mid + 0.15

    # a table with chairs and objects in the middle (low: the camera passes above it)
    n_mid = n_furn - n_wall
    if n_mid > 0:
        cx = rng.uniform(0.35, 0.65) * lx
        cy = rng.uniform(0.35, 0.65) * ly
        yaw = float(rng.uniform(-math.pi, math.pi))
        tl, tw, th = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78)
        wood = st.material(("wood", "solid", "noise"))
        ti = b.new_instance()
        R = yaw_matrix(yaw)
        round_table = rng.uniform() < 0.3
        if round_table:
            b.cylinder((cx, cy, th - 0.02), tw * 0.7, 0.04, wood, C["table"], ti)
            b.cylinder((cx, cy, (th - 0.04) / 2), 0.05, th - 0.04, wood, C["table"], ti)
            tl = tw = tw * 1.4
        else:
            b.box((cx, cy, th - 0.02), (tl, tw, 0.04), wood, C["table"], ti, yaw=yaw)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    p = np.array([cx, cy, 0]) + R @ np.array([sx * (tl / 2 - 0.06), sy * (tw / 2 - 0.06), 0])
                    b.box((p[0], p[1], (th - 0.04) / 2), (0.05, 0.05, th - 0.04), wood, C["table"], ti, yaw=yaw)
        chair_mat = st.material(("solid", "wood", "noise"))
        seats = [(sx * (tl / 2 + 0.3), 0.0, math.pi if sx > 0 else 0.0) for sx in (-1, 1)] + \
                [(0.0, sy * (tw / 2 + 0.3), -sy * math.pi / 2) for sy in (-1, 1)]
        for k in rng.permutation(4)[: max(0, n_mid - 1)]:
            ox, oy, cyaw = seats[k]
            p = np.array([cx, cy, 0]) + R @ np.array([ox, oy, 0])
            ci = b.new_instance()
            cyaw_w = yaw + cyaw
            Rc = yaw_matrix(cyaw_w)
            b.box((p[0], p[1], 0.45), (0.42, 0.42, 0.05), chair_mat, C["chair"], ci, yaw=cyaw_w)
            back = p + Rc @ np.array([-0.19, 0, 0])
            b.box((back[0], back[1], 0.7), (0.04, 0.42, 0.45), chair_mat, C["chair"], ci, yaw=cyaw_w)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    q = p + Rc @ np.array([sx * 0.18, sy * 0.18, 0])
                    b.box((q[0], q[1], 0.215), (0.035, 0.035, 0.43), chair_mat, C["chair"], ci, yaw=cyaw_w)
        small_items((cx, cy), yaw, tl / 2, tw / 2, th, int(rng.integers(0, 5)))

    # lights below the ceiling, a warm or cool tint each; ambient from the config
    for _ in range(int(rng.integers(cfg.lights[0], cfg.lights[1] + 1))):
        pos = (rng.uniform(0.2, 0.8) * lx, rng.uniform(0.2, 0.8) * ly, lz - rng.uniform(0.2, 0.5))
        tint = np.array(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.25), 1.0))
        b.point_light(pos, tint * st.u(cfg.light_intensity), rng.uniform(2.0, 4.0))
    amb = st.u(cfg.ambient)
    b.ambient = tuple(amb * np.array(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.6), rng.uniform(0, 0.15), 1.0)))
    layout = IndoorLayout((lx, ly, lz), tuple(free_lo), tuple(free_hi))
    return b.build(device), layout


# ---------------------------------------------------------------------------------------------------------------
# Streets


@dataclass
class StreetLayout:
    """What the camera trajectory needs to know about a street: lane centre, speed and extent along x."""

    lane_y: float  # m, the camera's lane centre
    speed: float  # m/s, camera speed along +x
    length: float  # m of road ahead of x = 0
    road_half: float  # m


def _car(b: SceneBuilder, st: Style, x, y, heading: float, speed: float, rng) -> None:
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.7, 1.95)
    v = np.array([math.cos(heading), math.sin(heading), 0.0]) * speed
    i = b.new_instance()
    paint = st.material(("solid",), sat=rng.uniform(0.0, 0.8), val=rng.uniform(0.15, 0.9), contrast=0.1)
    glass = b.material("solid", (0.12, 0.14, 0.17))
    tyre = b.material("solid", (0.05, 0.05, 0.05))
    R = yaw_matrix(heading)
    b.box((x, y, 0.62), (length, width, 0.62), paint, C["car"], i, yaw=heading, velocity=v)
    cab = np.array([x, y, 0]) + R @ np.array([-0.1 * length, 0, 0])
    b.box((cab[0], cab[1], 1.16), (0.5 * length, 0.92 * width, 0.48), [glass, glass, paint, paint, paint, paint],
          C["car"], i, yaw=heading, velocity=v)
    for sx in (-1, 1):
        for sy in (-1, 1):
            p = np.array([x, y, 0]) + R @ np.array([sx * 0.33 * length, sy * (width / 2 - 0.08), 0])
            b.cylinder((p[0], p[1], 0.32), 0.32, 0.2, tyre, C["car"], i, rot=R @ AXIS_Y, velocity=v)
    b.objects.append(SceneObject(i, C["car"], (x, y, 0.70), (length, width + 0.04, 1.40), heading, tuple(v)))


def _pedestrian(b: SceneBuilder, st: Style, x, y, z0: float, velocity, rng) -> None:
    i = b.new_instance()
    legs = st.material(("solid", "noise"), val=rng.uniform(0.1, 0.5))
    top = st.material(("solid", "stripes", "noise"))
    skin = b.material("solid", st.colour(hue=rng.uniform(0.03, 0.1), sat=rng.uniform(0.2, 0.6),
                                         val=rng.uniform(0.3, 0.9)))
    h = rng.uniform(1.55, 1.9)
    b.cylinder((x, y, z0 + 0.42 * h), 0.14, 0.84 * h, legs, C["pedestrian"], i, velocity=velocity)
    b.cylinder((x, y, z0 + 0.65 * h), 0.2, 0.32 * h, top, C["pedestrian"], i, velocity=velocity)
    b.sphere((x, y, z0 + h - 0.11), 0.11, skin, C["pedestrian"], i, velocity=velocity)
    b.objects.append(SceneObject(i, C["pedestrian"], (x, y, z0 + h / 2), (0.45, 0.45, h),
                                 math.atan2(velocity[1], velocity[0]) if any(velocity) else 0.0, tuple(velocity)))


def make_street(cfg, rng: np.random.Generator, duration: float, device="cpu") -> tuple[Scene, StreetLayout]:
    """A random street along +x: road with lanes and parking strips, sidewalks with kerbs, facades with windows,
    trees and poles, parked and driving cars (constant velocity along their lane), walking pedestrians; one sun.
    ``duration`` (s) sizes the street so the camera stays on it."""
    b = SceneBuilder(rng)
    st = Style(b, cfg)
    lanes = int(rng.integers(2, 4))
    lane_w, park_w = 3.4, 2.3
    road_half = lanes * lane_w / 2 + park_w
    speed = st.u(cfg.camera_speed)
    length = speed * duration + 140.0
    x0, x1 = -60.0, length
    road = b.material("road", st.colour(sat=0.02, val=rng.uniform(0.2, 0.4)), (0.9, 0.9, 0.85), scale=6.0,
                      variation=0.25, param=lanes)
    b.box(((x0 + x1) / 2, 0, -0.1), (x1 - x0, 2 * road_half, 0.2), road, C["road"], b.new_instance(), caster=False)
    walk_w = rng.uniform(2.0, 4.5)
    walk = st.material(("tiles", "noise", "checker"), sat=0.05, val=rng.uniform(0.4, 0.75), scale=rng.uniform(0.3, 0.6))
    for side in (-1, 1):
        b.box(((x0 + x1) / 2, side * (road_half + walk_w / 2), 0.075), (x1 - x0, walk_w, 0.15), walk,
              C["sidewalk"], b.new_instance(), caster=False)
    ground = b.material("noise", st.colour(hue=0.25, sat=0.3, val=0.35), st.colour(hue=0.1, sat=0.3, val=0.3),
                        scale=2.0)
    b.rect((0, 0, -0.02), np.eye(3), 0.0, 0.0, ground, C["terrain"], b.new_instance(), caster=False)

    # facades: a row of buildings on each side, windows in a grid
    for side in (-1, 1):
        x = x0
        while x < x1:
            w = rng.uniform(8, 25)
            gap = rng.uniform(0, 3) if rng.uniform() < 0.3 else 0.0
            depth, h = rng.uniform(8, 15), rng.uniform(6, 25)
            set_back = rng.uniform(0, 1.5)
            wall = st.colour(sat=rng.uniform(0, 0.4), val=rng.uniform(0.35, 0.9))
            win = st.colour(hue=rng.uniform(0.5, 0.65), sat=rng.uniform(0.1, 0.4), val=rng.uniform(0.1, 0.5))
            facade = b.material("grid", wall, win, scale=float(rng.uniform(2.5, 3.5)), variation=0.1)
            y = side * (road_half + walk_w + set_back + depth / 2)
            b.box((x + w / 2, y, h / 2), (w, depth, h), facade, C["building"], b.new_instance())
            x += w + gap

    # trees and poles along the kerbs
    for side in (-1, 1):
        x = x0 + rng.uniform(0, 10)
        while x < x1:
            y = side * (road_half + 0.5)
            i = b.new_instance()
            if rng.uniform() < 0.5:
                hgt = rng.uniform(3, 6)
                b.cylinder((x, y, 0.15 + hgt / 2), 0.12, hgt, b.material("noise", (0.35, 0.25, 0.18), (0.2, 0.15, 0.1),
                                                                          scale=0.2), C["vegetation"], i)
                crown = b.material("noise", st.colour(hue=rng.uniform(0.2, 0.4), sat=0.6, val=0.4),
                                   st.colour(hue=0.3, sat=0.7, val=0.15), scale=0.3, variation=0.2)
                b.sphere((x, y, 0.15 + hgt + 0.8), rng.uniform(1.2, 2.2), crown, C["vegetation"], i)
            else:
                hgt = rng.uniform(3, 7)
                b.cylinder((x, y, 0.15 + hgt / 2), 0.07, hgt, b.material("solid", st.colour(sat=0.1, val=0.4)),
                           C["pole"], i)
            x += rng.uniform(8, 25)

    # cars: lane 0 (the camera's, heading +x) only ahead and faster; the others either way; parked on the strips
    lane_y = [-road_half + park_w + lane_w * (k + 0.5) for k in range(lanes)]
    cam_lane = 0
    n_cars = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    frac_moving = st.u(cfg.movers)
    taken: list[list[float]] = [[] for _ in range(lanes + 2)]
    for _ in range(n_cars):
        for _try in range(10):
            moving = rng.uniform() < frac_moving
            if moving:
                k = int(rng.integers(lanes))
                heading = 0.0 if (k < lanes / 2 or lanes == 1) else math.pi
                if k == cam_lane:
                    x = rng.uniform(15, 60)
                    v = speed + rng.uniform(0.5, 4.0)
                else:
                    x = rng.uniform(0, length - 20)
                    v = rng.uniform(3, 14)
                y = lane_y[k] + rng.normal(0, 0.15)
                slot = k
            else:
                slot = lanes + int(rng.integers(2))
                y = (-1 if slot == lanes else 1) * (road_half - park_w / 2)
                heading, v = (0.0 if y < 0 else math.pi), 0.0
                x = rng.uniform(-10, length - 20)
            if all(abs(x - xo) > 6.0 for xo in taken[slot]):
                taken[slot].append(x)
                _car(b, st, x, y, heading, v, rng)
                break

    for _ in range(int(rng.integers(cfg.pedestrians[0], cfg.pedestrians[1] + 1))):
        side = -1 if rng.uniform() < 0.5 else 1
        y = side * (road_half + rng.uniform(0.9, walk_w - 0.3))
        x = rng.uniform(0, length - 40)
        v = (0.0, 0.0, 0.0) if rng.uniform() < 0.3 else (float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.6)), 0.0, 0.0)
        _pedestrian(b, st, x, y, 0.15, v, rng)

    elev, azim = math.radians(rng.uniform(20, 70)), rng.uniform(-math.pi, math.pi)
    sun_to_scene = -np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    warm = np.array(colorsys.hsv_to_rgb(rng.uniform(0.07, 0.14), rng.uniform(0.0, 0.3), 1.0))
    b.sun(sun_to_scene, warm * st.u(cfg.light_intensity))
    amb = st.u(cfg.ambient)
    b.ambient = tuple(amb * np.array(colorsys.hsv_to_rgb(0.6, rng.uniform(0.05, 0.25), 1.0)))
    b.sky = True
    b.sky_colours = (tuple(np.array(colorsys.hsv_to_rgb(0.58, rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.95)))),
                     tuple(np.array(colorsys.hsv_to_rgb(rng.uniform(0.55, 0.62), rng.uniform(0.3, 0.6),
                                                        rng.uniform(0.6, 0.9)))))
    return b.build(device), StreetLayout(lane_y[cam_lane], speed, length, road_half)

"""Vectorised analytic ray casting in torch: intersections, procedural textures, Lambertian shading, shadows.

Rays are intersected with every primitive of a kind at once, ``(rays, primitives)`` tensors per kind, in chunks of
rays; the nearest hit wins (ties go to the lower kind, then the lower index: ``torch.argmin`` returns the first).
Intersections follow the textbook formulas (Pharr, Jakob & Humphreys, *Physically Based Rendering*, 3rd ed., §3:
ray–box slab test (Kay & Kajiya 1986) in the box's local frame, ray–sphere and ray–cylinder quadratics,
ray–plane).
Shading is Lambertian (view-independent, so two views of a static point have the same colour — photometric
consistency holds exactly up to sampling): ``albedo * (ambient + sum_lights colour * max(0, n.l) * falloff *
visible)`` in linear RGB, then sRGB gamma (IEC 61966-2-1 curve).

Determinism: every arithmetic step is elementwise (no matmul/einsum, no reductions across pixels), so results do
not depend on the number of threads — the same seed gives bit-identical frames on 1 or 4 ranks.

Conventions: camera frame OpenCV (x right, y down, z forward); pixel (i, j) has its centre at (x = j, y = i);
``K`` (3, 3) pixels; ``cam_to_world`` (4, 4) maps camera coordinates to world coordinates (world z up, metres).
"""

from __future__ import annotations

import math

import torch

from .scene import KINDS, SKY, Materials, Primitives, Scene

EPS_T = 1e-4  # m: hits closer than this along a ray are ignored (self-intersection of shadow rays)
SHADOW_OFFSET = 2e-3  # m: shadow rays start this far off the surface, along its normal
INF = float("inf")


# ------------------------------------------------------------------------------------------------ small helpers
def _local_rows(v: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """``rot^T v`` per row: v (N, 3), rot (N, 3, 3)."""
    return v[:, 0:1] * rot[:, 0, :] + v[:, 1:2] * rot[:, 1, :] + v[:, 2:3] * rot[:, 2, :]


def _world_rows(v: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """``rot v`` per row: v (N, 3), rot (N, 3, 3)."""
    return v[:, 0:1] * rot[:, :, 0] + v[:, 1:2] * rot[:, :, 1] + v[:, 2:3] * rot[:, :, 2]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _safe_inv(d: torch.Tensor) -> torch.Tensor:
    tiny = torch.full_like(d, 1e-12)
    return 1.0 / torch.where(d.abs() < 1e-12, torch.where(d < 0, -tiny, tiny), d)


# ------------------------------------------------------------------------------------------------ intersections
# Exact tests on flat candidate pairs (M rows): ``ol``/``dl`` are the ray origin and direction in the primitive's local
# frame (for spheres, the origin relative to the centre and the world direction).  They return (M,) ray parameters,
# INF = miss.
def _t_box(ol, dl, size, inside) -> torch.Tensor:
    """Slab test in the box frame.  An ``inside`` box is hit where the ray leaves it (the room seen from inside)."""
    inv = _safe_inv(dl)
    t1 = (-size - ol) * inv
    t2 = (size - ol) * inv
    tn = torch.minimum(t1, t2).amax(-1)
    tf = torch.maximum(t1, t2).amin(-1)
    t = torch.where(tn > EPS_T, tn, torch.where(inside, tf, torch.full_like(tf, INF)))
    return torch.where((tn <= tf) & (t > EPS_T), t, torch.full_like(t, INF))


def _t_sphere(oc, d, size, inside) -> torch.Tensor:
    a = _dot(d, d)
    b = _dot(oc, d)
    c = _dot(oc, oc) - size[:, 0] ** 2
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0))
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = torch.where(t0 > EPS_T, t0, t1)
    return torch.where((disc >= 0) & (t > EPS_T), t, torch.full_like(t, INF))


def _t_cylinder(ol, dl, size, inside) -> torch.Tensor:
    r, hz = size[:, 0], size[:, 2]
    ox, oy, oz = ol.unbind(-1)
    dx, dy, dz = dl.unbind(-1)
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0))
    a_safe = torch.where(a > 1e-12, a, torch.ones_like(a))
    inf = torch.full_like(a, INF)
    t = inf
    for ts in ((-b - sq) / a_safe, (-b + sq) / a_safe):
        ok = (a > 1e-12) & (disc >= 0) & (ts > EPS_T) & ((oz + ts * dz).abs() <= hz)
        t = torch.minimum(t, torch.where(ok, ts, inf))
    inv = _safe_inv(dz)
    for sgn in (-1.0, 1.0):
        tc = (sgn * hz - oz) * inv
        x, y = ox + tc * dx, oy + tc * dy
        ok = (tc > EPS_T) & (x * x + y * y <= r * r)
        t = torch.minimum(t, torch.where(ok, tc, inf))
    return t


def _t_rect(ol, dl, size, inside) -> torch.Tensor:
    t = -ol[:, 2] * _safe_inv(dl[:, 2])
    x, y = ol[:, 0] + t * dl[:, 0], ol[:, 1] + t * dl[:, 1]
    hx, hy = size[:, 0], size[:, 1]
    ok = (t > EPS_T) & ((hx == 0) | (x.abs() <= hx)) & ((hy == 0) | (y.abs() <= hy))
    return torch.where(ok, t, torch.full_like(t, INF))


_T = {"box": _t_box, "sphere": _t_sphere, "cylinder": _t_cylinder, "rect": _t_rect}


def _pair_frames(p: Primitives, kind: str, o: torch.Tensor, d: torch.Tensor, ray: torch.Tensor, i: torch.Tensor):
    """Local origin and direction of each candidate pair; a shared origin (or direction) is moved into each
    primitive's frame once per primitive, then gathered."""
    if kind == "sphere":
        ol = (o - p.centre)[i] if o.dim() == 1 else o[ray] - p.centre[i]
        return ol, (d[None] if d.dim() == 1 else d[ray])
    if o.dim() == 1:
        ol = _local_rows(o[None] - p.centre, p.rot)[i]
    else:
        ol = _local_rows(o[ray] - p.centre[i], p.rot[i])
    if d.dim() == 1:
        dl = _local_rows(d[None].expand(len(p), 3), p.rot)[i]
    else:
        dl = _local_rows(d[ray], p.rot[i])
    return ol, dl


def bounding_spheres(p: Primitives, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 3) centres and (P,) radii (m) of spheres enclosing each primitive (INF for unbounded planes), padded by
    0.1 % + 1 mm so float rounding never drops a real hit."""
    if kind == "sphere":
        r = p.size[:, 0]
    elif kind == "cylinder":
        r = torch.sqrt(p.size[:, 0] ** 2 + p.size[:, 2] ** 2)
    elif kind == "rect":
        r = torch.sqrt(p.size[:, 0] ** 2 + p.size[:, 1] ** 2)
        r = torch.where((p.size[:, 0] == 0) | (p.size[:, 1] == 0), torch.full_like(r, INF), r)
    else:
        r = torch.sqrt(_dot(p.size, p.size))
    return p.centre, r * 1.001 + 1e-3


def _candidates(centre, radius, o, d) -> torch.Tensor:
    """(M, 2) (ray, primitive) pairs whose ray may meet the primitive's bounding sphere ahead of its origin.

    Three cases, each one (N, k) x (k, P) product:

    * shared origin ``o`` (3,), directions ``d`` (N, 3): with unit u the ray passes within r of c (ahead of o) iff
      ``u.(c-o) >= sqrt(|c-o|^2 - r^2)``, or o lies inside the sphere;
    * shared direction ``d`` (3,) (sun shadows), origins ``o`` (N, 3): project on the plane normal to d, the
      distance of c to the line is ``|q_c - q_o|``, and ``(c - o).d >= -r`` keeps spheres not behind the origin;
    * per-ray ``o`` and ``d`` (N, 3): the same test elementwise on (N, P, 3).

    The products may round differently with the thread count, but the test only has to be conservative (radii are
    padded far beyond rounding): the exact tests decide the hits, so results stay deterministic.  Row-major order.
    """
    inf_r = torch.isinf(radius)
    r = torch.where(inf_r, torch.zeros_like(radius), radius)
    if o.dim() == 1:
        u = d / torch.sqrt(_dot(d, d))[:, None]
        oc = centre - o  # (P, 3)
        dist2 = _dot(oc, oc)
        thr = torch.sqrt((dist2 - r * r).clamp(min=0))
        thr = torch.where((dist2 <= r * r) | inf_r, torch.full_like(thr, -INF), thr - 1e-4 * (dist2.sqrt() + 1))
        mask = torch.mm(u, oc.T) >= thr
    elif d.dim() == 1:
        u = d / torch.sqrt(_dot(d, d))
        e1 = torch.linalg.cross(u, torch.tensor([1.0, 0.0, 0.0], dtype=u.dtype, device=u.device))
        if float(_dot(e1, e1)) < 0.1:
            e1 = torch.linalg.cross(u, torch.tensor([0.0, 1.0, 0.0], dtype=u.dtype, device=u.device))
        e1 = e1 / torch.sqrt(_dot(e1, e1))
        E = torch.stack([e1, torch.linalg.cross(u, e1), u], 1)  # (3, 3) columns e1, e2, u
        qo, qc = torch.mm(o, E), torch.mm(centre, E)  # (N, 3), (P, 3)
        n2o = qo[:, 0] ** 2 + qo[:, 1] ** 2
        n2c = qc[:, 0] ** 2 + qc[:, 1] ** 2
        # |q_c - q_o|^2 <= r^2  <=>  2 q_o.q_c - |q_o|^2 >= |q_c|^2 - r^2 (padded for the rounding of the expansion)
        lhs = torch.addmm(-n2o[:, None], qo[:, :2], 2 * qc[:, :2].T)
        slack = 1e-5 * (float(n2o.max()) + n2c) + 1e-4
        rhs = torch.where(inf_r, torch.full_like(r, -INF), n2c - r * r - slack)
        zlim = torch.where(inf_r, torch.full_like(r, INF), qc[:, 2] + r + 1e-3 * (1 + float(qo[:, 2].abs().max())))
        mask = (lhs >= rhs) & (qo[:, 2:3] <= zlim)
    else:
        u = d / torch.sqrt(_dot(d, d))[:, None]
        oc = centre[None] - o[:, None]  # (N, P, 3)
        dist2 = _dot(oc, oc)
        proj = u[:, None, 0] * oc[..., 0] + u[:, None, 1] * oc[..., 1] + u[:, None, 2] * oc[..., 2]
        mask = ((proj >= 0) & (dist2 - proj * proj <= r * r)) | (dist2 <= r * r) | inf_r
    return mask.nonzero()


def nearest(prims: dict[str, Primitives], o: torch.Tensor, d: torch.Tensor, t_max: float = INF, bounds=None):
    """Nearest hit of each ray within ``(EPS_T, t_max)``.

    Bounding-sphere prefilter over all (ray, primitive) pairs, exact tests on the surviving pairs only, then a
    per-ray scatter-min (exact, so deterministic in any order) of the distance and of the (kind, index) key among
    the pairs at that distance: ties go to the lower kind, then the lower index.

    Args:
        prims: primitives by kind (already moved to the render time, :meth:`Scene.at`).
        o: ray origins, (3,) shared by all rays or (N, 3), metres, world frame.  d: (N, 3) directions (any length),
            or (3,) one direction shared by all rays (then ``o`` must be (N, 3)).
        t_max: ignore hits at ``t >= t_max``.  bounds: optional precomputed ``{kind: bounding_spheres(...)}``.

    Returns:
        ``(t, kind, index)``: (N,) ray parameter (hit point ``o + t d``; INF = miss), (N,) int64 kind (index into
        :data:`~hpc_taskology.sim.scene.KINDS`, -1 = miss) and (N,) int64 primitive index within that kind.
    """
    n, dev = (d if d.dim() == 2 else o).shape[0], d.device
    ts, rays, keys = [], [], []
    for k, kind in enumerate(KINDS):
        p = prims[kind]
        if len(p) == 0:
            continue
        c, r = bounds[kind] if bounds is not None else bounding_spheres(p, kind)
        pairs = _candidates(c, r, o, d)
        if pairs.shape[0] == 0:
            continue
        ray, i = pairs[:, 0], pairs[:, 1]
        ol, dl = _pair_frames(p, kind, o, d, ray, i)
        t = _T[kind](ol, dl, p.size[i], p.inside[i])
        ts.append(t)
        rays.append(ray)
        keys.append(i + (k << 32))
    t_min = torch.full((n,), INF, dtype=d.dtype, device=dev)
    none = torch.full((n,), -1, dtype=torch.int64, device=dev)
    if not ts:
        return t_min, none, torch.zeros_like(none)
    t, ray, key = torch.cat(ts), torch.cat(rays), torch.cat(keys)
    if t_max != INF:
        t = torch.where(t < t_max, t, torch.full_like(t, INF))
    t_min = t_min.scatter_reduce(0, ray, t, "amin")
    win = torch.isfinite(t) & (t == t_min[ray])
    big = torch.full((n,), 1 << 62, dtype=torch.int64, device=dev)
    key_min = big.scatter_reduce(0, ray[win], key[win], "amin")
    hit = key_min != (1 << 62)
    kind = torch.where(hit, key_min >> 32, none)
    index = torch.where(hit, key_min & 0xFFFFFFFF, torch.zeros_like(none))
    return t_min, kind, index


def occluded(prims: dict[str, Primitives], o: torch.Tensor, d: torch.Tensor, t_max: float):
    """(N,) bool: a shadow caster lies on the segment ``o + t d``, ``EPS_T < t < t_max``."""
    casters = {k: p.select(p.caster) for k, p in prims.items()}
    t, _, _ = nearest(casters, o, d, t_max)
    return torch.isfinite(t)


def surface(prims: dict[str, Primitives], kind: torch.Tensor, index: torch.Tensor, o: torch.Tensor, d: torch.Tensor,
            t: torch.Tensor):
    """Per-hit surface data for rays that hit (``kind >= 0``).

    Returns ``(normal_world, face, local_point, local_normal, prim_rows)`` where normals are outward unit vectors
    (not yet flipped towards the camera), ``face`` (N,) the face index, ``local_point`` (N, 3) the hit in the
    primitive's frame (textures live there, so they move with the object), and ``prim_rows`` a dict of the per-ray
    gathered ``material``, ``klass``, ``instance`` and ``velocity``.
    """
    n = d.shape[0]
    dev, dt = d.device, d.dtype
    normal = torch.zeros(n, 3, dtype=dt, device=dev)
    lnormal = torch.zeros(n, 3, dtype=dt, device=dev)
    lpoint = torch.zeros(n, 3, dtype=dt, device=dev)
    face = torch.zeros(n, dtype=torch.int64, device=dev)
    rows = {"material": torch.zeros(n, dtype=torch.int64, device=dev),
            "klass": torch.full((n,), SKY, dtype=torch.int64, device=dev),
            "instance": torch.zeros(n, dtype=torch.int64, device=dev),
            "velocity": torch.zeros(n, 3, dtype=dt, device=dev)}
    o_n = o.expand(n, 3) if o.dim() == 1 else o
    for k, name in enumerate(KINDS):
        sel = (kind == k).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        p = prims[name]
        i = index[sel]
        c, R, size = p.centre[i], p.rot[i], p.size[i]
        pw = o_n[sel] + t[sel, None] * d[sel]
        pl = _local_rows(pw - c, R)
        if name == "box":
            rel = (pl / size).abs()
            axis = rel.argmax(1)
            sgn = torch.where(pl.gather(1, axis[:, None])[:, 0] > 0, 1.0, -1.0).to(dt)
            nl = torch.zeros_like(pl).scatter_(1, axis[:, None], sgn[:, None])
            f = 2 * axis + (sgn > 0).long()
        elif name == "sphere":
            nl = pl / size[:, 0:1]
            f = torch.zeros_like(i)
        elif name == "cylinder":
            rho = torch.sqrt(pl[:, 0] ** 2 + pl[:, 1] ** 2)
            cap = (pl[:, 2].abs() - size[:, 2]).abs() < (rho - size[:, 0]).abs()
            side = torch.stack([pl[:, 0], pl[:, 1], torch.zeros_like(rho)], 1) / size[:, 0:1]
            capn = torch.stack([torch.zeros_like(rho), torch.zeros_like(rho), torch.sign(pl[:, 2])], 1)
            nl = torch.where(cap[:, None], capn, side)
            f = torch.where(cap, torch.where(pl[:, 2] > 0, 2, 1), 0)
        else:
            nl = torch.zeros_like(pl)
            nl[:, 2] = 1.0
            f = torch.zeros_like(i)
        nw = _world_rows(nl, R)
        normal[sel] = nw / torch.sqrt(_dot(nw, nw))[:, None]
        lnormal[sel], lpoint[sel], face[sel] = nl, pl, f
        rows["material"][sel] = p.material[i, f]
        rows["klass"][sel] = p.klass[i, f]
        rows["instance"][sel] = p.instance[i, f]
        rows["velocity"][sel] = p.velocity[i]
    return normal, face, lpoint, lnormal, rows


# ------------------------------------------------------------------------------------------------------ textures
def _hash01(ix: torch.Tensor, iy: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Integer lattice hash -> [0, 1) (int64 wrap-around arithmetic; deterministic on every device)."""
    h = ix * 374761393 + iy * 668265263 + seed * 1442695041
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


def value_noise(u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """2-D value noise in [0, 1): hashed lattice values, smoothstep-interpolated (Perlin 1985 style)."""
    fu, fv = torch.floor(u), torch.floor(v)
    iu, iv = fu.long(), fv.long()
    a, b = u - fu, v - fv
    a, b = a * a * (3 - 2 * a), b * b * (3 - 2 * b)
    n00, n10 = _hash01(iu, iv, seed), _hash01(iu + 1, iv, seed)
    n01, n11 = _hash01(iu, iv + 1, seed), _hash01(iu + 1, iv + 1, seed)
    return (n00 * (1 - a) + n10 * a) * (1 - b) + (n01 * (1 - a) + n11 * a) * b


def fbm(u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Two octaves of value noise, in [0, 1)."""
    return 0.65 * value_noise(u, v, seed) + 0.35 * value_noise(2.03 * u + 17.1, 2.03 * v + 5.3, seed + 1)


def texture(mats: Materials, material: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """sRGB albedo (N, 3) in [0, 1] of procedural materials at surface coordinates ``uv`` (N, 2) metres.

    Patterns (``scene.PATTERN_IDS``): solid, checker, stripes (duty = param), noise (fbm), wood (planks of width
    ``scale`` with grain and gaps), tiles (grout width = param), grid (window grid of period ``scale``), road (asphalt,
    lanes = param, dashed centre lines every ``scale`` m).  A second, fine noise varies the colour by ``variation``.
    Each pattern is evaluated only on the pixels that use it.
    """
    pat, a, b = mats.pattern[material], mats.colour_a[material], mats.colour_b[material]
    scale, ang, seed = mats.scale[material], mats.angle[material], mats.seed[material]
    var, par = mats.variation[material], mats.param[material]
    x, y = uv[:, 0], uv[:, 1]
    ca, sa = torch.cos(ang), torch.sin(ang)
    u, v = (ca * x - sa * y) / scale, (sa * x + ca * y) / scale
    mix = torch.zeros_like(u)
    shade = torch.ones_like(u)
    for pid in torch.unique(pat).tolist():
        if pid == 0:
            continue
        sel = (pat == pid).nonzero()[:, 0]
        us, vs, ps, ss = u[sel], v[sel], par[sel], seed[sel]
        fu, fv = us - torch.floor(us), vs - torch.floor(vs)
        sh = None
        if pid == 1:  # checker
            m = torch.remainder(torch.floor(us) + torch.floor(vs), 2.0)
        elif pid == 2:  # stripes
            m = (fu < ps).to(u.dtype)
        elif pid == 3:  # noise, cells of 4 periods (blotches, not speckle)
            m = ((fbm(us * 0.25, vs * 0.25, ss) - 0.5) * 2.2 + 0.5).clamp(0, 1)
        elif pid == 4:  # wood planks of width scale along u
            board = torch.floor(vs)
            m = ((fbm(us * 0.35 + board * 7.31, vs * 5.0, ss) - 0.5) * 2.5 + 0.5).clamp(0, 1)
            sh = torch.where(fv < 0.025, torch.full_like(us, 0.55), torch.ones_like(us))
        elif pid == 5:  # tiles with grout
            grout = (fu < ps) | (fv < ps)
            m = grout.to(u.dtype)
            sh = torch.where(grout, torch.ones_like(us),
                             0.92 + 0.16 * _hash01(torch.floor(us).long(), torch.floor(vs).long(), ss))
        elif pid == 6:  # window grid
            m = ((fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8)).to(u.dtype)
        else:  # road: x along the road, y across; param = number of 3.4 m lanes
            xs, ys = x[sel], y[sel]
            half = ps * 1.7
            lane_pos = (ys + half) / 3.4
            near_line = ((lane_pos - torch.round(lane_pos)).abs() * 3.4 < 0.07) & (lane_pos > 0.5) & \
                        (lane_pos < ps - 0.5)
            paint = ((fu < 0.5) & near_line) | ((ys.abs() - half).abs() < 0.08)
            m = paint.to(u.dtype)
            asphalt = value_noise(xs * 3.0, ys * 3.0, ss) * 0.5 + value_noise(xs * 0.2, ys * 0.2, ss + 3) * 0.5
            sh = torch.where(paint, torch.ones_like(us), 0.8 + 0.4 * asphalt)
        mix[sel] = m
        if sh is not None:
            shade[sel] = sh
    col = a + (b - a) * mix[:, None]
    k = (6.0 / scale).clamp(max=12.0)  # cells of at least 8 cm: finer noise only aliases into speckle
    fine = value_noise(x * k, y * k, seed + 7)
    col = col * (shade * (1.0 + var * (fine - 0.5) * 2.0))[:, None]
    return col.clamp(0, 1)


def surface_uv(lpoint: torch.Tensor, lnormal: torch.Tensor) -> torch.Tensor:
    """2-D texture coordinates (N, 2): the local hit point without its coordinate along the dominant normal axis."""
    axis = lnormal.abs().argmax(1)
    u = torch.where(axis == 0, lpoint[:, 1], lpoint[:, 0])
    v = torch.where(axis == 2, lpoint[:, 1], lpoint[:, 2])
    return torch.stack([u, v], 1)


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


# ------------------------------------------------------------------------------------------------------- shading
def shade(scene: Scene, prims: dict[str, Primitives], point: torch.Tensor, normal: torch.Tensor,
          albedo: torch.Tensor, shadows: bool) -> torch.Tensor:
    """Linear RGB (N, 3) radiance of Lambertian points (N, 3) with camera-facing unit normals (N, 3).

    Point lights: ``colour * max(0, n.l) / (1 + (dist / falloff)^2)``; suns: ``colour * max(0, n.l)``; each times
    its visibility (a shadow ray to the light, when ``shadows``), plus ``ambient``.
    """
    light = scene.ambient.expand_as(albedo).clone()
    lift = point + SHADOW_OFFSET * normal
    for k in range(scene.point_lights.shape[0]):
        to_l = scene.point_lights[k] - point
        dist = torch.sqrt(_dot(to_l, to_l))
        cos = _dot(normal, to_l) / dist
        w = cos.clamp(min=0) / (1.0 + (dist / scene.point_falloff[k]) ** 2)
        if shadows:  # cast from the light towards the points: one shared origin, so the fast prefilter applies
            lit = (cos > 0).nonzero()[:, 0]
            if lit.numel():
                blocked = occluded(prims, scene.point_lights[k], lift[lit] - scene.point_lights[k], 1.0)
                w[lit] = torch.where(blocked, torch.zeros_like(w[lit]), w[lit])
        light = light + w[:, None] * scene.point_colour[k]
    for k in range(scene.sun_dir.shape[0]):
        to_sun = -scene.sun_dir[k].expand_as(normal)
        cos = _dot(normal, to_sun)
        w = cos.clamp(min=0)
        if shadows:
            lit = (cos > 0).nonzero()[:, 0]
            if lit.numel():
                blocked = occluded(prims, lift[lit], to_sun[0], INF)
                w[lit] = torch.where(blocked, torch.zeros_like(w[lit]), w[lit])
        light = light + w[:, None] * scene.sun_colour[k]
    return srgb_to_linear(albedo) * light


def sky_colour(scene: Scene, d: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3) of the sky seen along world directions ``d``: horizon colour to zenith colour."""
    el = (d[:, 2] / torch.sqrt(_dot(d, d))).clamp(0, 1) ** 0.6
    return scene.sky_colours[0] + (scene.sky_colours[1] - scene.sky_colours[0]) * el[:, None]


# ------------------------------------------------------------------------------------------------------- cameras
def camera_rays(K: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int):
    """World-frame rays through every pixel centre, row-major.

    Args:
        K: (3, 3) intrinsics, pixels (fx, fy, cx, cy; no skew).  cam_to_world: (4, 4) camera -> world, metres.

    Returns:
        ``(origin, dirs)``: origin (3,) the camera centre; dirs (H*W, 3) = ``R K^-1 (j, i, 1)``, i.e. scaled so the
        ray parameter t of a hit **is its z-depth** in metres.
    """
    dt, dev = cam_to_world.dtype, cam_to_world.device
    i = torch.arange(height, dtype=dt, device=dev)
    j = torch.arange(width, dtype=dt, device=dev)
    x = ((j - K[0, 2]) / K[0, 0]).expand(height, width).reshape(-1)
    y = ((i - K[1, 2]) / K[1, 1])[:, None].expand(height, width).reshape(-1)
    R = cam_to_world[:3, :3]
    dirs = x[:, None] * R[:, 0] + y[:, None] * R[:, 1] + R[:, 2]
    return cam_to_world[:3, 3].clone(), dirs


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (H, W, C) with replicate borders, as explicit shifted sums (thread-invariant)."""
    if sigma <= 0:
        return img
    r = max(1, int(math.ceil(2.5 * sigma)))
    w = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-r, r + 1)]
    s = sum(w)
    w = [x / s for x in w]
    h, wd = img.shape[:2]
    pad = torch.cat([img[:1].expand(r, -1, -1), img, img[-1:].expand(r, -1, -1)], 0)
    out = sum(wk * pad[k:k + h] for k, wk in enumerate(w))
    pad = torch.cat([out[:, :1].expand(-1, r, -1), out, out[:, -1:].expand(-1, r, -1)], 1)
    return sum(wk * pad[:, k:k + wd] for k, wk in enumerate(w))


# -------------------------------------------------------------------------------------------------------- render
def render(scene: Scene, K, cam_to_world, height: int, width: int, *, time: float = 0.0, frame_dt: float = 0.1,
           shadows: bool = True, max_depth: float = INF, chunk: int = 32768) -> dict[str, torch.Tensor]:
    """Render one frame of ``scene`` seen by a pinhole camera.

    Args:
        scene: the scene (tensors on the render device).
        K: (3, 3) intrinsics, pixels, pixel centres at integer coordinates.  cam_to_world: (4, 4) camera -> world
            (OpenCV camera axes; world z up), metres.  Both torch or numpy; cast to float32 on the scene's device.
        height, width: image size in pixels.
        time: seconds; moving primitives are at ``centre + velocity * time``.
        frame_dt: seconds to the next frame (object motion = velocity * frame_dt).
        shadows: cast shadow rays.  max_depth: z-depth (m) beyond which pixels are not valid.
        chunk: rays intersected at once.

    Returns:
        dict of tensors on the scene's device: ``rgb`` (H, W, 3) float sRGB in [0, 1]; ``depth`` (H, W) float32
        z-depth in metres along the optical axis, 0 where not valid; ``valid`` (H, W) bool (a surface within
        ``max_depth``); ``normals`` (H, W, 3) unit vectors in the camera frame facing the camera (n . ray < 0), 0
        where nothing was hit; ``segmentation`` (H, W) int64 class ids (sky where nothing was hit); ``instance``
        (H, W) int64 (0 = none); ``object_motion`` (H, W, 3) metres, the motion of the point seen at each pixel
        during ``frame_dt`` (velocity * frame_dt) rotated into this camera's frame (``R^T v dt``); ``hit`` (H, W)
        bool.

    Raises:
        ValueError: ``K`` or ``cam_to_world`` has the wrong shape, or ``height``/``width`` < 1.
    """
    dev = scene.ambient.device
    K = torch.as_tensor(K, dtype=torch.float32, device=dev)
    T = torch.as_tensor(cam_to_world, dtype=torch.float32, device=dev)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected shape (3, 3), got {tuple(K.shape)}")
    if T.shape != (4, 4):
        raise ValueError(f"cam_to_world: expected shape (4, 4), got {tuple(T.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"height, width: expected >= 1, got {height}x{width}")
    prims = scene.at(time)
    origin, dirs = camera_rays(K, T, height, width)
    R = T[:3, :3]
    parts: dict[str, list] = {k: [] for k in ("rgb", "depth", "normals", "klass", "instance", "motion", "hit")}
    for s in range(0, dirs.shape[0], chunk):
        d = dirs[s:s + chunk]
        t, kind, index = nearest(prims, origin, d)
        hit = kind >= 0
        normal, _, lpoint, lnormal, rows = surface(prims, kind, index, origin, d, t)
        facing = torch.where(_dot(normal, d) > 0, -1.0, 1.0).to(d.dtype)[:, None]
        normal = normal * facing
        rgb = sky_colour(scene, d) if scene.sky else torch.zeros_like(d)
        h = hit.nonzero()[:, 0]
        if h.numel():
            point = origin + t[h, None] * d[h]
            albedo = texture(scene.materials, rows["material"][h], surface_uv(lpoint[h], lnormal[h]))
            rgb[h] = linear_to_srgb(shade(scene, prims, point, normal[h], albedo, shadows))
        parts["rgb"].append(rgb)
        parts["depth"].append(torch.where(hit, t, torch.zeros_like(t)))
        parts["normals"].append(torch.where(hit[:, None], _local_rows(normal, R.expand(len(d), 3, 3)),
                                            torch.zeros_like(normal)))
        parts["klass"].append(rows["klass"])
        parts["instance"].append(rows["instance"])
        parts["motion"].append(_local_rows(rows["velocity"] * frame_dt, R.expand(len(d), 3, 3)))
        parts["hit"].append(hit)
    out = {k: torch.cat(v, 0) for k, v in parts.items()}
    depth = out["depth"]
    valid = out["hit"] & (depth <= max_depth)
    hw = (height, width)
    return {
        "rgb": out["rgb"].reshape(*hw, 3),
        "depth": torch.where(valid, depth, torch.zeros_like(depth)).reshape(hw),
        "valid": valid.reshape(hw),
        "normals": out["normals"].reshape(*hw, 3),
        "segmentation": out["klass"].reshape(hw),
        "instance": out["instance"].reshape(hw),
        "object_motion": out["motion"].reshape(*hw, 3),
        "hit": out["hit"].reshape(hw),
    }

"""ScanNet frames exported by ScanNet's SensReader (``python/reader.py``: ``--export_color_images --export_depth_images
--export_poses --export_intrinsics``) → packed HDF5.

Layout of one scene (Dai et al., CVPR 2017, "ScanNet: Richly-annotated 3D Reconstructions of Indoor Scenes")::

    <scene>/color/<n>.jpg       colour, 1296×968 JPEG
    <scene>/depth/<n>.png       uint16 millimetres at 640×480, 0 = no measurement
    <scene>/pose/<n>.txt        4×4 camera-to-world (metres); frames where tracking failed hold -inf/NaN
    <scene>/intrinsic/intrinsic_color.txt, intrinsic_depth.txt      4×4 (top-left 3×3 = K in pixels)

The colour image is resized (bilinear) to the depth resolution and ``K`` is intrinsic_color scaled accordingly
(half-pixel rule, intrinsics.py); ScanNet's depth is registered to the colour camera, so this K also describes the
depth map (intrinsic_depth is kept in the ``K_depth`` attribute for reference).  Frames whose pose is not finite
are skipped with one counted warning and listed in the ``skipped_frames`` attribute.  ``frame_id`` = <n>;
``sequence`` = the scene folder's name; ``timestamp`` unknown (NaN).  SRC is a scene folder or a folder of scenes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..intrinsics import scale_intrinsics
from .common import (FrameRange, PackPlan, SourceError, check_intrinsics, licence_for, make_sample, read_matrix,
                     select, warn_skipped)
from .images import read_rgb, read_u16, resize_rgb

DEFAULT_LICENCE = (
    "ScanNet (Dai, Chang, Savva, Halber, Funkhouser, Niessner: ScanNet, CVPR 2017), http://www.scan-net.org/ - "
    "ScanNet Terms of Use: non-commercial research and educational use only; the data may not be redistributed."
)


def _scenes(src: Path) -> list[Path]:
    if not src.exists():
        raise FileNotFoundError(f"ScanNet source {src} does not exist")
    if (src / "color").is_dir():
        return [src]
    scenes = sorted(p for p in src.iterdir() if (p / "color").is_dir())
    if not scenes:
        raise SourceError(f"{src}: no ScanNet scene (expected <scene>/color, depth, pose, intrinsic)")
    return scenes


@dataclass(frozen=True)
class ScanNetFrame:
    color: Path
    depth: Path
    frame_id: int
    sequence: str
    K: np.ndarray
    cam_to_world: np.ndarray
    size: tuple  # (H, W) of the depth map = output size


def _read(fr: ScanNetFrame) -> dict:
    depth = read_u16(fr.depth, "depth PNG (uint16 mm)", fr.size).astype(np.float32) / np.float32(1000.0)
    rgb = resize_rgb(read_rgb(fr.color), *fr.size)
    return make_sample(rgb=rgb, depth=depth, K=fr.K, cam_to_world=fr.cam_to_world, frame_id=fr.frame_id,
                       sequence=fr.sequence)


def _scene_frames(scene: Path, frames: FrameRange | None) -> tuple[list[ScanNetFrame], list, dict]:
    colors = sorted((scene / "color").glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not colors:
        raise SourceError(f"{scene / 'color'}: no JPEG images")
    if not all(p.stem.isdigit() for p in colors):
        raise SourceError(f"{scene / 'color'}: names must be frame numbers (<n>.jpg, as SensReader exports them)")
    colors = select(colors, [int(p.stem) for p in colors], frames, str(scene))
    intr = scene / "intrinsic"
    K_color4 = read_matrix(intr / "intrinsic_color.txt", (4, 4), "intrinsic_color")
    K_depth4 = read_matrix(intr / "intrinsic_depth.txt", (4, 4), "intrinsic_depth")
    K_color = check_intrinsics(K_color4[:3, :3], str(intr / "intrinsic_color.txt"))
    check_intrinsics(K_depth4[:3, :3], str(intr / "intrinsic_depth.txt"))
    first_depth = scene / "depth" / f"{colors[0].stem}.png"
    if not first_depth.is_file():
        raise FileNotFoundError(f"depth image {first_depth} does not exist (for {colors[0]})")
    with Image.open(first_depth) as im:
        w, h = im.size
    with Image.open(colors[0]) as im:
        wc, hc = im.size
    K = scale_intrinsics(K_color, w / wc, h / hc)
    out, skipped = [], []
    for c in colors:
        pose = read_matrix(scene / "pose" / f"{c.stem}.txt", (4, 4), "camera-to-world pose", allow_nonfinite=True)
        if not np.isfinite(pose).all():
            skipped.append(int(c.stem))
            continue
        depth = scene / "depth" / f"{c.stem}.png"
        if not depth.is_file():
            raise FileNotFoundError(f"depth image {depth} does not exist (for {c})")
        out.append(ScanNetFrame(c, depth, int(c.stem), scene.name, K, pose, (h, w)))
    warn_skipped(str(scene), skipped, "a -inf/NaN pose")
    return out, skipped, {"K_color": K_color, "K_depth": K_depth4[:3, :3], "color_size": (hc, wc), "size": (h, w)}


def plan(src: str | Path, frames: FrameRange | None = None) -> PackPlan:
    """Plan packing a ScanNet scene (or every scene in a folder); ``frames`` = inclusive range of frame numbers.

    Raises ``FileNotFoundError``/:class:`SourceError` naming the file for missing intrinsics, depth or pose files,
    non-numeric matrices, scenes of different depth sizes.
    """
    src = Path(src)
    all_frames, skipped, meta = [], {}, {}
    for scene in _scenes(src):
        fr, sk, m = _scene_frames(scene, frames)
        all_frames += fr
        skipped[scene.name] = sk
        meta[scene.name] = m
    if not all_frames:
        raise SourceError(f"{src}: every selected frame has a non-finite pose; nothing to pack")
    sizes = {s: m["size"] for s, m in meta.items()}
    if len(set(sizes.values())) > 1:
        raise SourceError(f"{src}: scenes have different depth sizes {sizes}; pack them separately")
    h, w = next(iter(sizes.values()))
    first = next(iter(meta.values()))
    licence, licence_from = licence_for(src, all_frames[0].color.parent, DEFAULT_LICENCE)
    attrs = {"format": "scannet", "licence_file": licence_from, "K_color": first["K_color"], "K_depth": first["K_depth"],
             "colour_resized_from": list(first["color_size"]), "skipped_frames": json.dumps(skipped),
             "num_skipped": sum(len(v) for v in skipped.values()), "depth_units": "uint16 mm -> m"}
    return PackPlan(frames=all_frames, make_sample=_read, height=h, width=w, source=f"ScanNet ({src.resolve()})",
                    licence=licence, attrs=attrs)

"""Contact sheet of a packed file: one row per sample with RGB, depth, normals and segmentation (matplotlib).

    python -m hpc_taskology.sim.preview datasets/sim_indoor.h5 -o /tmp/sim_preview.png --samples 6

Depth is shown in metres (viridis, invalid pixels black), normals as ``(1 - n) / 2`` in RGB (camera frame: a wall
facing the camera, n = (0, 0, -1), is light blue-ish), segmentation with one colour per class of ``class_names``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def contact_sheet(path: str | Path, out_png: str | Path, samples: int = 6, seed: int = 0) -> Path:
    """Write a PNG of ``samples`` evenly spread samples of the packed file ``path``; returns the PNG path.

    Raises ``FileNotFoundError`` / :class:`~hpc_taskology.data.schema.SchemaError` for a missing or malformed file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.schema import open_packed, read_sample

    with open_packed(path) as f:
        n = f["rgb"].shape[0]
        idx = np.linspace(0, n - 1, min(samples, n)).round().astype(int) if n else []
        if seed:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
        names = json.loads(f.attrs.get("class_names", "[]"))
        keys = [k for k in ("rgb", "depth", "valid", "normals", "segmentation", "sequence", "frame_id") if k in f]
        rows = [read_sample(f, int(i), keys) for i in idx]
    cols = [k for k in ("rgb", "depth", "normals", "segmentation") if k in keys]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.2 * len(cols), 2.5 * len(rows)), squeeze=False)
    for r, s in enumerate(rows):
        for c, k in enumerate(cols):
            ax = axes[r, c]
            if k == "rgb":
                ax.imshow(s["rgb"])
                ax.set_title(f"{s.get('sequence', '')} #{s.get('frame_id', '')}", fontsize=7)
            elif k == "depth":
                d = np.where(s["valid"], s["depth"], np.nan)
                im = ax.imshow(d, cmap="viridis")
                im.cmap.set_bad("black")
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
                ax.set_title("depth (m)", fontsize=7)
            elif k == "normals":
                ax.imshow(np.clip((1 - s["normals"]) / 2, 0, 1))
                ax.set_title("normals (1 - n) / 2", fontsize=7)
            else:
                ax.imshow(s["segmentation"], cmap="tab20", vmin=0, vmax=max(len(names) - 1, 1), interpolation="nearest")
                present = [names[i] for i in np.unique(s["segmentation"]) if 0 <= i < len(names)]
                ax.set_title(", ".join(present)[:60], fontsize=6)
            ax.axis("off")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", help="packed HDF5 file")
    p.add_argument("-o", "--output", default="sim_preview.png", help="PNG to write")
    p.add_argument("--samples", type=int, default=6, help="rows (default 6)")
    p.add_argument("--seed", type=int, default=0, help="0: evenly spread samples; else a random draw")
    args = p.parse_args(argv)
    print(contact_sheet(args.file, args.output, args.samples, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

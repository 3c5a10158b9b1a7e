"""Evaluate a run's depth and normals networks on a packed RGB-D file (any file of the datasets schema).

Protocol (stated in results and README):

* Each network sees the frame resized (aspect kept, centre-cropped) to its input resolution, the job's mediator
  resolution ``[mediator].height × width``; its prediction is upsampled bilinearly to the evaluation resolution,
  ``eval_scale`` × the input resolution, where the ground truth is the measured depth resampled by nearest
  neighbour (invalid depth never blends into valid depth) with K updated.
* Depth: Eigen et al.'s metrics over measured pixels in (0.1, 10) m, per frame then averaged, reported both
  without scaling and with per-frame median scaling (monodepth2's protocol for scale-ambiguous predictions).
* Normals: angular error against normals fitted to the measured depth (:mod:`.normals_gt`, PCA plane fits over
  7×7 windows of measured points, only where the window is covered, planar and free of depth jumps).
* Also reported: ``baseline_constant_depth`` (a constant prediction under median scaling: what a network that learned
  no structure scores) and ``cross_task_consistency`` (angle between the normals network's output and normals derived
  from the depth network's output, at the input resolution: what the consistency loss optimises, not accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_latest
from ..data.loader import PackedDataset
from ..models import build_model
from ..tasks import task_class
from .metrics import depth_metrics, normal_metrics
from .normals_gt import normals_from_plane_fit


def load_task_model(cfg, task_name: str):
    """(model in eval mode, predict function, checkpoint step) for ``task_name`` of the run ``cfg``.

    Raises ``FileNotFoundError`` naming the checkpoint directory when the run has no checkpoint for the task.
    """
    tcfg = cfg.task(task_name)
    state = load_latest(cfg.run_dir(), task_name)
    if state is None:
        raise FileNotFoundError(f"no checkpoint of task {task_name!r} under {cfg.run_dir() / 'checkpoints'}; "
                                f"train the job first (taskology train {cfg.source})")
    model = build_model(tcfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    return model, task_class(tcfg).predict, int(state["step"])


def evaluate_file(cfg, data: str | Path, eval_scale: int = 2, batch_size: int = 8, n_examples: int = 4) -> dict:
    """Metrics of the run's ``depth`` and ``normals`` tasks (whichever the job has) on packed file ``data``.

    Returns ``{"data": ..., "frames": N, "protocol": ..., "depth": {"raw": {...}, "median_scaled": {...}},
    "normals": {...}, "examples": {...}}``; ``examples`` holds a few frames' arrays for the figure.
    """
    m = cfg.mediator
    if not (m.height and m.width):
        raise ValueError(f"{cfg.source}: [mediator] height/width set the networks' input size; they are missing")
    net_size = (m.height, m.width)
    eval_size = (m.height * eval_scale, m.width * eval_scale)
    net_ds = PackedDataset(data, size=net_size, mode="resize_crop")
    gt_ds = PackedDataset(data, size=eval_size, mode="resize_crop")
    tasks = [t.name for t in cfg.tasks if t.kind in ("depth", "normals")]
    models = {name: load_task_model(cfg, name) for name in tasks}
    preds = {name: [] for name in tasks}
    gts = {"depth": [], "valid": [], "normals": [], "normals_valid": [], "rgb": []}
    with torch.no_grad():
        for start in range(0, len(net_ds), batch_size):
            idx = range(start, min(start + batch_size, len(net_ds)))
            rgb = torch.stack([net_ds[i]["rgb"] for i in idx])
            gt = [gt_ds[i] for i in idx]
            depth = torch.stack([g["depth"] for g in gt])
            K = torch.stack([g["K"] for g in gt])
            gn, gv = normals_from_plane_fit(depth, K)
            gts["depth"].append(depth)
            gts["valid"].append(torch.stack([g["valid"] for g in gt]))
            gts["normals"].append(gn)
            gts["normals_valid"].append(gv)
            gts["rgb"].append(torch.stack([g["rgb"] for g in gt]))
            for name, (model, predict, _) in models.items():
                out = F.interpolate(predict(model, rgb), size=eval_size, mode="bilinear", align_corners=False)
                if cfg.task(name).kind == "normals":
                    out = F.normalize(out, dim=1, eps=1e-6)
                preds[name].append(out)
    cat = {k: torch.cat(v) for k, v in gts.items()}
    result = {
        "data": str(data), "frames": len(net_ds), "input_size": list(net_size), "eval_size": list(eval_size),
        "protocol": "depth in (0.1, 10) m, per-frame mean; median scaling per frame for 'median_scaled'; "
                    "normals vs PCA plane fits (7x7) of measured depth",
        "checkpoint_steps": {name: mdl[2] for name, mdl in models.items()},
    }
    examples = {"rgb": cat["rgb"][:n_examples], "gt_depth": cat["depth"][:n_examples],
                "gt_valid": cat["valid"][:n_examples], "gt_normals": cat["normals"][:n_examples],
                "gt_normals_valid": cat["normals_valid"][:n_examples]}
    for name in tasks:
        p = torch.cat(preds[name])
        if cfg.task(name).kind == "depth":
            result["depth"] = {
                "raw": depth_metrics(p, cat["depth"], cat["valid"], median_scaling=False),
                "median_scaled": depth_metrics(p, cat["depth"], cat["valid"], median_scaling=True),
            }
            examples["pred_depth"] = p[:n_examples]
        else:
            result["normals"] = normal_metrics(p, cat["normals"], cat["normals_valid"])
            examples["pred_normals"] = p[:n_examples]
    # Reference points for reading the table: a constant-depth predictor under median scaling (what the
    # median-scaled metrics give a network that learned no structure at all), and how consistent the two networks
    # are with each other on these frames (the quantity the consistency loss optimises; not a measure of accuracy).
    result["baseline_constant_depth"] = depth_metrics(torch.ones_like(cat["depth"]), cat["depth"], cat["valid"],
                                                      median_scaling=True)
    if "pred_depth" in examples and "pred_normals" in examples:
        from ..losses.depth_normals import normals_from_depth

        depth_name = next(t for t in tasks if cfg.task(t).kind == "depth")
        normals_name = next(t for t in tasks if cfg.task(t).kind == "normals")
        K_net = torch.stack([net_ds[i]["K"] for i in range(len(net_ds))])
        with torch.no_grad():
            d = F.interpolate(torch.cat(preds[depth_name]), size=net_size, mode="bilinear", align_corners=False)
            n = F.interpolate(torch.cat(preds[normals_name]), size=net_size, mode="bilinear", align_corners=False)
            nd, nv = normals_from_depth(d, K_net)
        result["cross_task_consistency"] = normal_metrics(n, nd, nv)
    net_ds.close()
    gt_ds.close()
    result["examples"] = examples
    return result


def save_figure(examples: dict, path: str | Path, title: str) -> Path:
    """PNG with, per frame: RGB, GT depth, predicted depth, |rel. error|, GT normals, predicted normals, angle error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import angular_error_deg

    n = examples["rgb"].shape[0]
    cols = [("rgb", "RGB")]
    if "pred_depth" in examples:
        cols += [("gt_depth", "measured depth (m)"), ("pred_depth", "predicted depth (m)"), ("depth_err", "|abs rel|")]
    if "pred_normals" in examples:
        cols += [("gt_normals", "plane-fit normals"), ("pred_normals", "predicted normals"), ("angle", "angle error (°)")]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.6 * len(cols), 1.9 * n), squeeze=False)
    # One colour scale for measured and predicted depth, wide enough for both (a sim-trained net can be off in scale).
    vmax = float(examples["gt_depth"][examples["gt_valid"]].quantile(0.98)) if examples["gt_valid"].any() else 5.0
    if "pred_depth" in examples:
        vmax = max(vmax, float(examples["pred_depth"].flatten().quantile(0.98)))
    for r in range(n):
        for c, (key, label) in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            if r == 0:
                ax.set_title(label, fontsize=8)
            valid = examples["gt_valid"][r, 0].numpy()
            if key == "rgb":
                ax.imshow(examples["rgb"][r].permute(1, 2, 0).numpy())
            elif key in ("gt_depth", "pred_depth"):
                img = examples[key][r, 0].numpy().copy()
                if key == "gt_depth":
                    img[~valid] = np.nan
                ax.imshow(img, cmap="magma_r", vmin=0, vmax=vmax)
            elif key == "depth_err":
                g, p = examples["gt_depth"][r, 0], examples["pred_depth"][r, 0]
                err = ((p - g).abs() / g.clamp_min(1e-3)).numpy()
                err[~valid] = np.nan
                ax.imshow(err, cmap="inferno", vmin=0, vmax=1)
            elif key in ("gt_normals", "pred_normals"):
                nrm = examples[key][r]
                img = (-nrm * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
                if key == "gt_normals":
                    img = img * examples["gt_normals_valid"][r, 0].numpy()[..., None]
                ax.imshow(img)
            elif key == "angle":
                ang = angular_error_deg(examples["pred_normals"][r:r + 1], examples["gt_normals"][r:r + 1])[0].numpy()
                ang[~examples["gt_normals_valid"][r, 0].numpy()] = np.nan
                ax.imshow(ang, cmap="viridis", vmin=0, vmax=60)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_result(result: dict, path: str | Path) -> Path:
    """Write ``result`` (without the example arrays) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))
    return path

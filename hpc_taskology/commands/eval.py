"""``taskology eval JOB.toml --data FILE.h5 [--data ...]``: metrics of a trained run on packed RGB-D files.

Writes ``<run_dir>/eval/<file stem>.json`` and ``.png`` (frames, predictions and error maps side by side) and
prints a summary.  Runs in one process (no mpirun needed).  Protocol: :mod:`hpc_taskology.evaluation.evaluate`.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("job", help="TOML job file of the run to evaluate")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job-file field")
    p.add_argument("--data", action="append", required=True, help="packed HDF5 file (repeatable)")
    p.add_argument("--name", help="run name (default: job.name), e.g. the name given to taskology train --name")
    p.add_argument("--eval-scale", type=int, default=2, help="evaluation resolution = this × the network input")


def run(args) -> int:
    from pathlib import Path

    from ..config import load_config
    from ..evaluation.evaluate import evaluate_file, save_figure, write_result

    cfg = load_config(args.job, args.set)
    if args.name:
        cfg.job.name = args.name
    for data in args.data:
        result = evaluate_file(cfg, data, eval_scale=args.eval_scale)
        stem = Path(data).stem
        out = write_result(result, cfg.run_dir() / "eval" / f"{stem}.json")
        fig = save_figure(result["examples"], cfg.run_dir() / "eval" / f"{stem}.png", f"{cfg.job.name} on {stem}")
        print(f"{cfg.job.name} on {stem} ({result['frames']} frames):")
        if "depth" in result:
            for mode in ("raw", "median_scaled"):
                d = result["depth"][mode]
                print(f"  depth [{mode}]  abs_rel={d['abs_rel']:.3f} sq_rel={d['sq_rel']:.3f} rmse={d['rmse']:.3f} m "
                      f"rmse_log={d['rmse_log']:.3f} d1={d['delta1']:.3f} d2={d['delta2']:.3f} d3={d['delta3']:.3f}")
        if "normals" in result:
            n = result["normals"]
            print(f"  normals  mean={n['mean_deg']:.1f}° median={n['median_deg']:.1f}° "
                  f"<11.25°={100 * n['within_11.25']:.1f}% <22.5°={100 * n['within_22.5']:.1f}% "
                  f"<30°={100 * n['within_30']:.1f}%")
        print(f"  -> {out}, {fig}")
    return 0

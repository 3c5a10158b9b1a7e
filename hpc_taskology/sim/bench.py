"""``taskology bench simulate [--json]``: simulator frames/s per core at 96×128, 128×160 and 240×320.

Renders frames of the indoor configuration the main job uses (``jobs/sim_indoor.toml`` when present, else the
defaults) at each size, in this process with a fixed number of torch threads (``--threads``, default 1: then
frames/s is frames/s per core).  Each sequence's scene is built once and several of its frames rendered, as in a
real run; sequence construction is included in the time (it is part of the cost per frame).  The first frames
(warm-up) are not timed; the best of ``--repeats`` interleaved measurements is kept.  Reports frames/s,
frames/s per core (= frames/s / threads), ms per frame and the projected wall time of the main job's dataset
(``sequences × frames`` of the config) on 2 cores (two ranks of one thread).  On a shared machine the wall time
includes other processes' load; frames per CPU-second of this process (``process_time``) is reported beside it
(the per-core figure on an idle core).  Prints a table and writes JSON (default ``bench_results/simulate.json``).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from ..commands.bench import save_report

SIZES = "96x128,128x160,240x320"


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="simulator TOML (default: jobs/sim_indoor.toml, else defaults)")
    p.add_argument("--sizes", default=SIZES, help=f"comma-separated HxW sizes (default {SIZES})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: frames/s = frames/s per core)")
    p.add_argument("--sequences", type=int, default=4, help="sequences per measurement (default 4)")
    p.add_argument("--frames", type=int, default=5, help="frames rendered per sequence (default 5)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats; best kept (default 2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="render device (default cpu)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.add_argument("--out", default="bench_results/simulate.json", help="JSON output file")


def _config(path, height: int, width: int, device: str):
    from .config import config_from_dict, load_sim_config

    repo = Path(__file__).resolve().parents[2]
    default = repo / "jobs" / "sim_indoor.toml"
    over = {"height": height, "width": width, "device": device, "scenenet_dir": ""}
    if path or default.is_file():
        return load_sim_config(path or default, over)
    return config_from_dict({"sim": over})


def measure(cfg, sequences: int, frames: int, first_sequence: int = 0) -> tuple[float, float, int]:
    """Build ``sequences`` sequences and render ``frames`` frames of each; returns (wall seconds, CPU seconds of
    this process, frames)."""
    from .simulate import make_sequence, render_sample, resolve_device

    device = resolve_device(cfg.device)
    step = max(1, cfg.frames // frames)
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(first_sequence, first_sequence + sequences):
        seq = make_sequence(cfg, s % cfg.sequences, device)
        for f in range(0, min(cfg.frames, frames * step), step):
            render_sample(cfg, seq, f)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0, sequences * min(frames, cfg.frames)


def run(args) -> int:
    from .simulate import render_sample, make_sequence  # noqa: F401  (import cost outside the timings)

    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    cfgs = {hw: _config(args.config, *hw, args.device) for hw in sizes}
    for hw, cfg in cfgs.items():  # warm-up
        measure(cfg, 1, 2, first_sequence=cfg.sequences - 1)
    best: dict = {}
    for _ in range(args.repeats):
        for hw, cfg in cfgs.items():
            wall, cpu, n = measure(cfg, args.sequences, args.frames)
            if hw not in best or wall < best[hw][0]:
                best[hw] = (wall, cpu, n)
    rows = []
    main = next(iter(cfgs.values()))
    total = main.sequences * main.frames
    print(f"simulator ({main.kind}, shadows={main.shadows}), {args.threads} thread(s), device {args.device}; "
          f"{args.sequences} sequences x {args.frames} frames per measurement, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'size':>9} {'frames/s':>9} {'frames/s/core':>14} {'(CPU time)':>11} {'ms/frame':>9} "
          f"{'main job: ' + str(total) + ' frames on 2 cores':>34}")
    for (h, w), (wall, cpu, n) in best.items():
        fps = n / wall
        per_core = fps / args.threads
        per_cpu_s = n / cpu  # frames per CPU-second: per core, whatever else runs on the machine
        job_s = total / (2 * per_core)
        rows.append({"kind": main.kind, "size": f"{h}x{w}", "height": h, "width": w, "threads": args.threads,
                     "device": args.device, "frames": n, "wall(s)": wall, "cpu(s)": cpu,
                     "throughput(frames/s)": fps, "throughput_per_core(frames/s/core)": per_core,
                     "throughput_per_cpu_second(frames/s)": per_cpu_s, "latency(ms/frame)": 1e3 * wall / n,
                     "main_job_frames": total, "main_job_on_2_cores(s)": job_s,
                     "main_job_on_2_idle_cores(s)": total / (2 * per_cpu_s)})
        print(f"{h:>4}x{w:<4} {fps:>9.2f} {per_core:>14.2f} {per_cpu_s:>11.2f} {1e3 * wall / n:>9.1f} "
              f"{job_s:>10.0f} s ({job_s / 60:.1f} min; {total / (2 * per_cpu_s) / 60:.1f} min idle)")
    report = {"benchmark": "simulate", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
              "torch": torch.__version__, "config": args.config or "jobs/sim_indoor.toml", "rows": rows}
    save_report(report, args.out, args.json)
    return 0

"""``taskology bench data [--json]``: samples/s of the packed-HDF5 loader vs reading the same frames from image folders.

Both paths return the same tensors (rgb (3,H,W), depth (1,H,W) m, valid, K, cam_to_world) through a torch
``DataLoader`` (batch 8, random order; 0, 1 and 2 workers, the 5x target applying to 1 and 2).  Colour is sent from
the workers either as uint8 and made float [0, 1] per batch in the main process (what GroupBatchLoader does: the
headline figure) or as float32 (4x the bytes through shared memory).  A "no I/O" row returns tensors of the same
shapes without reading anything: the cost of moving samples from workers to the trainer, the floor of any path.  The
image-folder path decodes the PNGs with Pillow per sample (the native HoloLens layout: images/<id>.png,
depth/<id>.png uint16 mm; poses and K parsed once).  The first batch (worker start-up) is not timed.  Both paths read
from the page cache here (small set, read repeatedly), so the figures compare decoding and transfer cost, not the
metadata load of many small files on a parallel file system, which only widens the gap on a cluster.  Prints a
table and writes JSON (default ``bench_results/data.json``).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..commands.bench import save_report

TARGET_SPEEDUP = 5.0


def add_arguments(p) -> None:
    repo = Path(__file__).resolve().parents[2]
    default_src = Path(os.environ.get("TASKOLOGY_SHARED_DATA", repo.parent / "shared" / "data")) / "hololens_rgbd_000"
    p.add_argument("--src", default=str(default_src), help="HoloLens-layout folder to read (default: shared sample)")
    p.add_argument("--frames", type=int, default=64, help="frames packed and read (default 64)")
    p.add_argument("--samples", type=int, default=240, help="samples read per measurement (default 240)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", default="0,1,2",
                   help="comma-separated DataLoader worker counts (default 0,1,2; 0 = read in this process, which "
                        "isolates the decode cost from the worker-to-trainer transfer)")
    p.add_argument("--compressions", default="lz4,none", help="HDF5 compressions to measure (default lz4,none)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per configuration; best kept (default 3)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.add_argument("--out", default="bench_results/data.json", help="JSON output file")


class ImageFolderDataset(torch.utils.data.Dataset):
    """The baseline: the HoloLens layout read with Pillow per sample, returning PackedDataset's core tensors."""

    def __init__(self, src: Path, frame_ids: list[int], K: np.ndarray, poses: dict[int, np.ndarray],
                 rgb_uint8: bool = False):
        self.src, self.ids, self.K, self.poses, self.rgb_uint8 = Path(src), list(frame_ids), K, poses, rgb_uint8

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        fid = self.ids[i]
        rgb = torch.from_numpy(np.array(Image.open(self.src / "images" / f"{fid:05d}.png").convert("RGB")))
        depth = np.asarray(Image.open(self.src / "depth" / f"{fid:05d}.png")).astype(np.float32) * np.float32(1e-3)
        rgb = rgb.permute(2, 0, 1).contiguous() if self.rgb_uint8 else rgb.permute(2, 0, 1).float().div_(255.0)
        return {"rgb": rgb,
                "depth": torch.from_numpy(depth)[None], "valid": torch.from_numpy(depth > 0)[None],
                "K": torch.from_numpy(self.K.astype(np.float32)),
                "cam_to_world": torch.from_numpy(self.poses[fid]), "index": torch.tensor(i)}


class ZeroDataset(torch.utils.data.Dataset):
    """The transfer floor: tensors of the same shapes and dtypes as a sample, made without any file I/O."""

    def __init__(self, n: int, height: int, width: int, rgb_uint8: bool):
        self.n, self.h, self.w, self.rgb_uint8 = n, height, width, rgb_uint8

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rgb = torch.zeros((3, self.h, self.w), dtype=torch.uint8 if self.rgb_uint8 else torch.float32)
        return {"rgb": rgb, "depth": torch.zeros((1, self.h, self.w)),
                "valid": torch.zeros((1, self.h, self.w), dtype=torch.bool), "K": torch.eye(3),
                "cam_to_world": torch.eye(4, dtype=torch.float64), "index": torch.tensor(i)}


def _measure(ds, workers: int, samples: int, batch_size: int, seed: int = 0) -> dict:
    """Time reading ``samples`` samples in random order through a DataLoader; uint8 colour is made float [0, 1] per
    batch in this process (as GroupBatchLoader does)."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(ds)) for _ in range(samples // len(ds) + 2)])[:samples + batch_size]
    batches = [order[k:k + batch_size].tolist() for k in range(0, len(order) - batch_size + 1, batch_size)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up and first open: not timed
    n, t0 = 0, time.perf_counter()
    for b in it:
        rgb = b["rgb"] if b["rgb"].is_floating_point() else b["rgb"].float().mul_(1.0 / 255.0)
        n += rgb.shape[0]
    dt = time.perf_counter() - t0
    del it, loader
    return {"samples": n, "seconds": round(dt, 4), "samples_per_s": round(n / dt, 2),
            "ms_per_sample": round(1e3 * dt / n, 3)}


def run(args) -> int:
    from .loader import PackedDataset
    from .pack import hololens
    from .pack.common import FrameRange
    from .parallel import pack_plan

    src = Path(args.src)
    plan = hololens.plan(src)
    ids = [f.frame_id for f in plan.frames][: args.frames]
    plan = hololens.plan(src, FrameRange(ids[0], ids[-1]))
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    comps = [c.strip() for c in args.compressions.split(",") if c.strip()]
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="taskology-bench-data-") as tmp:
        poses = {f.frame_id: f.cam_to_world for f in plan.frames}
        files = {}
        for c in comps:
            path = Path(tmp) / f"bench_{c}.h5"
            pack_plan(plan, path, compression=c, progress=False)
            files[c] = path
        configs = []  # (provider, compression, transport, workers, dataset)
        for transport in ("uint8", "float32"):
            u8 = transport == "uint8"
            for w in workers:
                configs.append(("image-folder (Pillow PNG)", None, transport, w,
                                ImageFolderDataset(src, ids, plan.frames[0].K, poses, rgb_uint8=u8)))
                configs += [("hdf5 (PackedDataset)", c, transport, w, PackedDataset(files[c], rgb_uint8=u8))
                            for c in comps]
                configs.append(("no I/O (transfer floor)", "-", transport, w,
                                ZeroDataset(len(ids), plan.height, plan.width, u8)))
        # repeats interleave all configurations, so a burst of load from other processes hits every one alike;
        # the best repeat (least disturbed) is reported, with the median beside it
        runs = [[] for _ in configs]
        for _ in range(args.repeats):
            for k, (_, _, _, w, ds) in enumerate(configs):
                runs[k].append(_measure(ds, w, args.samples, args.batch_size))
        folder_best = {}
        for (prov, c, transport, w, _), rs in zip(configs, runs):
            best_run = max(rs, key=lambda r: r["samples_per_s"])
            row = {"provider": prov, "compression": c, "rgb_transport": transport, "workers": w, **best_run,
                   "samples_per_s_median": round(float(np.median([r["samples_per_s"] for r in rs])), 2),
                   "repeats": len(rs)}
            if c is None:
                folder_best[(transport, w)] = row["samples_per_s"]
            elif c == "-":
                pass
            else:
                row["file_MiB"] = round(files[c].stat().st_size / 2**20, 2)
                row["speedup_vs_folder"] = round(row["samples_per_s"] / folder_best[(transport, w)], 2)
            results.append(row)
    png_mib = sum((src / d / f"{i:05d}.png").stat().st_size for i in ids for d in ("images", "depth")) / 2**20
    report = {
        "benchmark": "data", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "source": str(src), "frames": len(ids),
        "image_hw": [plan.height, plan.width], "batch_size": args.batch_size, "samples_per_measurement": args.samples,
        "image_folder_MiB": round(png_mib, 2), "target_speedup": TARGET_SPEEDUP, "results": results,
        "repeats": args.repeats, "load_average_1min_at_end": os.getloadavg()[0],
        "note": "page-cached reads on both paths: compares decode and transfer cost, not file-system metadata load; "
                "best of interleaved repeats",
    }
    best = {}  # the loader's configuration: uint8 colour transport (GroupBatchLoader's default), 1 and 2 workers
    for r in results:
        if r["provider"].startswith("hdf5") and r["rgb_transport"] == "uint8" and r["workers"] > 0:
            best[r["workers"]] = max(best.get(r["workers"], 0), r["speedup_vs_folder"])
    report["best_speedup_by_workers"] = best
    report["target_met"] = bool(best) and min(best.values()) >= TARGET_SPEEDUP

    print(f"data loading, {len(ids)} HoloLens frames {plan.height}x{plan.width}, batch {args.batch_size}, "
          f"{args.samples} samples per run, best of {args.repeats} interleaved runs, image folder {png_mib:.1f} MiB, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'provider':<28}{'compression':>12}{'rgb from workers':>17}{'workers':>9}{'samples/s':>12}"
          f"{'(median)':>10}{'ms/sample':>11}{'file MiB':>10}{'speedup':>9}")
    for r in results:
        print(f"{r['provider']:<28}{str(r['compression'] or '-'):>12}{r['rgb_transport']:>17}{r['workers']:>9}"
              f"{r['samples_per_s']:>12.1f}{r['samples_per_s_median']:>10.1f}{r['ms_per_sample']:>11.2f}"
              f"{str(r.get('file_MiB', '-')):>10}{str(r.get('speedup_vs_folder', '-')):>9}")
    print(f"best HDF5 speedup (uint8 transport) by workers: {best} "
          f"(target >= {TARGET_SPEEDUP}x: {'met' if report['target_met'] else 'NOT met'})")
    save_report(report, args.out, args.json)
    return 0

"""``taskology bench kernels``: every registered kernel benchmark, providers × modes × sizes.

Registered benchmarks (:data:`KERNEL_BENCHES`, name → module exposing ``get_bench() -> KernelBench``, see
:mod:`hpc_taskology.kernels.bench_utils`); a module that is not there yet is skipped with a message.  Prints one line
per figure, appends CSV rows to ``OUT/kernels.csv``, draws ``OUT/<kernel>.png`` and, with ``--json``, prints a JSON
summary as the last line of stdout.

On a CPU box the defaults are small sizes with the eager reference vs ``torch.compile`` (the Triton interpreter is
never benchmarked); on CUDA the headline sizes 8×128×416 and 32×384×1280 plus a sweep, with Triton and Kornia when
available.

Example::

    taskology bench kernels --kernels depth_normals --sizes 2x128x416 --modes full --json
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import torch

from hpc_taskology.kernels import bench_utils as bu

KERNEL_BENCHES: dict[str, str] = {
    "depth_normals": "hpc_taskology.kernels.bench_depth_normals",
    "photometric": "hpc_taskology.kernels.bench_photometric",
    "segmentation": "hpc_taskology.kernels.bench_segmentation",
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _csv_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p) -> None:
    p.add_argument("--kernels", default=",".join(KERNEL_BENCHES),
                   help=f"comma list of kernels (default: all of {', '.join(KERNEL_BENCHES)})")
    p.add_argument("--sizes", default=None,
                   help="comma list like 8x128x416, or 'default' (GPU: headline + sweep; CPU: small) or 'sweep'")
    p.add_argument("--modes", default=",".join(bu.MODES), help="comma list of forward, backward, full")
    p.add_argument("--providers", default=",".join(bu.PROVIDERS),
                   help="comma list of triton, eager, compile, kornia (unavailable ones are skipped)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="benchmark dtype (default float32)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is steadier on a loaded shared box)")
    p.add_argument("--rep-ms", type=float, default=100.0, help="timing budget per figure in ms (default 100)")
    p.add_argument("--out", default="bench_results", help="directory for kernels.csv and plots (default bench_results/)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _load(name: str):
    """(KernelBench or None, reason if skipped, error if broken)."""
    module = KERNEL_BENCHES.get(name)
    if module is None:
        return None, None, f"unknown kernel {name!r}; registered: {', '.join(KERNEL_BENCHES)}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):
            return None, f"module {module} not built yet", None
        return None, None, f"{module}: {type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - one broken benchmark must not hide the others
        return None, None, f"{module}: {type(e).__name__}: {e}"
    if not hasattr(mod, "get_bench"):
        return None, None, f"{module} has no get_bench()"
    return mod.get_bench(), None, None


def run(args) -> int:
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads: expected >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    csv_path = out / "kernels.csv"
    summary = {"device": bu.device_name(device), "csv": str(csv_path), "kernels": {}}
    failed = False
    done = []  # (name, spec, rows): memory is measured after every timing (see bench_utils.run_benchmark)
    for name in _csv_list(args.kernels) or []:
        spec, skipped, error = _load(name)
        if spec is None:
            print(f"[{name}] {'skipped: ' + skipped if skipped else 'ERROR: ' + error}", file=sys.stderr)
            summary["kernels"][name] = {"status": f"skipped: {skipped}" if skipped else f"error: {error}"}
            failed |= error is not None
            continue
        sizes = bu.default_sizes(spec, device, args.sizes)
        print(f"[{name}] sizes {', '.join(sizes)} ({spec.size_meaning}), dtype {args.dtype}")
        rows = bu.run_benchmark(spec, sizes, modes=_csv_list(args.modes), providers=_csv_list(args.providers),
                                device=device, dtype=DTYPES[args.dtype], rep_ms=args.rep_ms, memory=False)
        done.append((name, spec, rows))
    for name, spec, rows in done:
        bu.measure_memory(spec, rows, device, DTYPES[args.dtype], _csv_list(args.providers))
        bu.append_csv(rows, csv_path)
        png = bu.plot(rows, out / f"{name}.png", f"{name} on {bu.device_name(device)} ({args.dtype})")
        summary["kernels"][name] = {"status": "ok", "plot": None if png is None else str(png), "rows": rows}
        failed |= any(r["status"] != "ok" for r in rows)
    print(f"CSV rows appended to {csv_path}")
    if args.json:
        print(json.dumps(summary, default=str))
    return 1 if failed else 0

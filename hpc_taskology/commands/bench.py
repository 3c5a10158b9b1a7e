"""``taskology bench NAME``: figures, not timed tests.  Each benchmark module prints and writes JSON/CSV.

Registered benchmarks (module exposing ``add_arguments(parser)`` and ``run(args) -> int``):

* ``exchange`` — prediction board over MPI windows: Get/Put GB/s vs memcpy, latency per entry size, torn reads.
* ``kernels`` — fused Triton consistency losses vs eager reference vs torch.compile (and Kornia where equivalent).
* ``data`` — HDF5 loader vs image folders, samples/s.
* ``simulate`` — simulator frames/s per core.
"""

from __future__ import annotations

import importlib

BENCHES: dict[str, str] = {
    "exchange": "hpc_taskology.board.bench",
    "kernels": "hpc_taskology.kernels.bench",
    "data": "hpc_taskology.data.bench",
    "simulate": "hpc_taskology.sim.bench",
}


def save_report(report: dict, out, echo_json: bool) -> None:
    """Write a benchmark's JSON report to ``out`` (parents created), say where, and print it with ``--json``."""
    import json
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", flush=True)
    if echo_json:
        print(json.dumps(report, indent=2), flush=True)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, module in BENCHES.items():
        q = sub.add_parser(name, help=f"benchmark: {name}")
        q.set_defaults(_bench_module=module)
        try:
            importlib.import_module(module).add_arguments(q)
        except ModuleNotFoundError as e:  # a benchmark whose module is not built yet must not break the CLI
            if e.name is None or not module.startswith(e.name):
                raise
            q.set_defaults(_bench_missing=str(e))


def run(args) -> int:
    if getattr(args, "_bench_missing", None):
        raise SystemExit(f"taskology bench {args.bench}: not available ({args._bench_missing})")
    return int(importlib.import_module(args._bench_module).run(args) or 0)

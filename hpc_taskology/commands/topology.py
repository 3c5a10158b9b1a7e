"""``taskology topology JOB.toml``: build the topology and print one line per rank (gathered, in world-rank order)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("job", help="TOML job file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job-file field")
    p.add_argument("--backend", choices=["horovod", "torch"], help="override job.backend")


def run(args) -> int:
    from ..config import load_config
    from . import build_topology

    cfg = load_config(args.job, args.set)
    topo = build_topology(cfg, args.backend, "topology")
    if topo is None:
        return 2
    lines = topo.world.gather(topo.describe(), root=0)
    if topo.world_rank == 0:
        print("\n".join(lines), flush=True)
    topo.shutdown()
    return 0

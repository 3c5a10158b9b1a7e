"""``taskology train JOB.toml``: every rank trains its task group; results gathered to ``runs/<name>/results.json``.

Run under MPI with as many ranks as the job's tasks add up to, e.g. ``jobs/mpirun.sh -n 4 taskology train JOB``.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("job", help="TOML job file")
    p.add_argument("--resume", action="store_true", help="continue each group from its newest checkpoint")
    p.add_argument("--backend", choices=["horovod", "torch"], help="override job.backend")
    p.add_argument("--steps", type=int, help="override job.steps")


def run(args) -> int:
    import json
    import sys

    from mpi4py import MPI

    from ..config import load_config
    from ..tasks import make_task
    from ..topology import Topology, TopologyError
    from ..trainer import TaskTrainer

    cfg = load_config(args.job)
    if args.steps is not None:
        cfg.job.steps = args.steps
    try:
        topo = Topology.build(cfg, MPI.COMM_WORLD, backend=args.backend)
    except TopologyError as e:
        if MPI.COMM_WORLD.rank == 0:
            print(f"taskology train: {e}", file=sys.stderr)
        return 2
    task = make_task(topo.task_cfg, cfg, topo)
    try:
        summary = TaskTrainer(topo, task, resume=args.resume).train()
    finally:
        task.close()
    topo.wait_all()
    summaries = topo.world.gather((topo.task, topo.is_leader, summary), root=0)
    if topo.world_rank == 0:
        results = {"job": cfg.job.name, "backend": topo.backend.name, "world_size": topo.world_size,
                   "tasks": {name: s for name, leader, s in summaries if leader}}
        out = cfg.run_dir() / "results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        for name, s in results["tasks"].items():
            print(f"{name}: steps={s['steps']} loss/total={s.get('loss/total', float('nan')):.4g} "
                  f"steps/s={s['steps/s']:.2f}")
        print(f"results: {out}")
    topo.shutdown()
    return 0

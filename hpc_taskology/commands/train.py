"""``taskology train JOB.toml``: every rank trains its task group; results gathered to ``runs/<name>/results.json``.

Run under MPI with as many ranks as the job's tasks add up to, e.g. ``jobs/mpirun.sh -n 4 taskology train JOB``.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("job", help="TOML job file")
    p.add_argument("--resume", action="store_true", help="continue each group from its newest checkpoint")
    p.add_argument("--backend", choices=["horovod", "torch"], help="override job.backend")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job-file field, e.g. --set tasks.depth.ranks=1 --set board.max_staleness=0")
    p.add_argument("--steps", type=int, help="override job.steps")
    p.add_argument("--name", help="override job.name (the run directory under job.out_dir)")
    p.add_argument("--init-from", metavar="RUN_DIR",
                   help="start from another run's newest weights and optimizer state (e.g. a run trained alone)")
    p.add_argument("--no-consistency", action="store_true",
                   help="train every task alone (all consistency weights 0): the paper's baseline rows")


def open_board(cfg, topo, task):
    """The job's prediction board (collective over the world) and the mediator dataset, attached to ``task``."""
    from ..board import PredictionBoard
    from ..data.loader import PackedDataset
    from ..tasks import task_class

    m = cfg.mediator
    mediator = PackedDataset(m.path, size=(m.height, m.width), mode="resize_crop")
    outputs = {t.name: task_class(t).board_outputs(cfg) for t in cfg.tasks}
    board = PredictionBoard(topo, len(mediator), {k: v for k, v in outputs.items() if v}, cfg.board)
    task.attach_mediator(mediator, board)
    return board


def run(args) -> int:
    import json

    from ..config import load_config
    from ..tasks import make_task
    from ..trainer import TaskTrainer
    from . import build_topology

    cfg = load_config(args.job, args.set)
    if args.steps is not None:
        cfg.job.steps = args.steps
    if args.name:
        cfg.job.name = args.name
    if args.no_consistency:
        for t in cfg.tasks:
            t.consistency.weight = 0.0
    topo = build_topology(cfg, args.backend, "train")
    if topo is None:
        return 2
    task = make_task(topo.task_cfg, cfg, topo)
    board = None
    if cfg.mediator.path and any(t.consistency.weight > 0 for t in cfg.tasks):
        board = open_board(cfg, topo, task)
    try:
        summary = TaskTrainer(topo, task, resume=args.resume, init_from=args.init_from).train()
        summary["ranks"] = topo.group_size
        if board is not None:
            summary["exchange"] = task.staleness_report()
    except BaseException:
        if board is not None:
            board.set_state("failed")  # peers stop waiting for this group; python -m mpi4py aborts the job
        raise
    finally:
        task.close()
    if board is not None:
        board.close()
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

"""``taskology simulate CONFIG.toml -o OUT.h5``: render labelled procedural scenes into one packed HDF5 file.

Runs alone, or under MPI (``jobs/mpirun.sh -n 4 taskology simulate jobs/sim_indoor.toml -o datasets/sim_indoor.h5``):
the frames are split over the ranks, rank 0 merges; the same seed gives the same file whatever the number of ranks.
The file follows the datasets schema (``datasets/README.md``) with normals, segmentation, instance, object_motion
and movable; ``LICENSE-<OUT stem>.txt`` is written beside it.  See :mod:`hpc_taskology.sim`.
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("config", help="simulator TOML file with a [sim] table (jobs/sim_indoor.toml, jobs/sim_street.toml)")
    p.add_argument("-o", "--output", required=True, help="output .h5 file")
    p.add_argument("--sequences", type=int, help="override sim.sequences")
    p.add_argument("--frames", type=int, help="override sim.frames (per sequence)")
    p.add_argument("--seed", type=int, help="override sim.seed")
    p.add_argument("--height", type=int, help="override sim.height (pixels)")
    p.add_argument("--width", type=int, help="override sim.width (pixels)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override sim.device")
    p.add_argument("--scenenet-dir", help="override sim.scenenet_dir: also write SceneNet RGB-D's layout there")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def run(args) -> int:
    import time
    from pathlib import Path

    from ..config import ConfigError
    from ..data.pack.common import write_licence_file
    from ..data.parallel import launched_comm
    from ..sim.config import load_sim_config
    from ..sim.simulate import LICENCE, simulate

    comm = launched_comm()
    rank = comm.rank if comm is not None else 0
    multi = comm is not None and comm.size > 1
    overrides = {k: v for k, v in (("sequences", args.sequences), ("frames", args.frames), ("seed", args.seed),
                                   ("height", args.height), ("width", args.width), ("device", args.device),
                                   ("scenenet_dir", args.scenenet_dir)) if v is not None}
    out = Path(args.output)
    t0 = time.perf_counter()
    try:
        cfg = load_sim_config(args.config, overrides)  # same file on every rank: same error on every rank
        simulate(cfg, out, comm=comm, progress=not args.no_progress)
    except (OSError, ConfigError, ValueError, RuntimeError) as e:
        print(f"taskology simulate: rank {rank}: {e}" if multi else f"taskology simulate: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    if rank == 0:
        lic = write_licence_file(out, LICENCE)
        n = cfg.sequences * cfg.frames
        ranks = comm.size if comm is not None else 1
        print(f"taskology simulate: wrote {out} ({n} frames of {cfg.height}x{cfg.width}, {cfg.kind}, seed {cfg.seed}; "
              f"{out.stat().st_size / 2**20:.1f} MiB) in {dt:.1f} s = {n / dt:.1f} frames/s on {ranks} rank(s); "
              f"licence in {lic}", flush=True)
    return 0

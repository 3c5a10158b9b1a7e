"""``taskology`` / ``python -m hpc_taskology``: one entry point with a subcommand per stage of the data flow.

Each subcommand lives in its own module under :mod:`hpc_taskology.commands` exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so ``taskology pack`` does not import
torch.distributed and ``taskology topology`` does not import h5py.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "topology": ("hpc_taskology.commands.topology", "print each rank's task group (run under mpirun)"),
    "train": ("hpc_taskology.commands.train", "train the job's task groups collectively (run under mpirun)"),
    "eval": ("hpc_taskology.commands.eval", "evaluate a trained run's depth and normals on packed RGB-D files"),
    "report": ("hpc_taskology.commands.report", "compare runs: Table 3 layout, throughput, exchange staleness"),
    "bench": ("hpc_taskology.commands.bench", "benchmarks: exchange, kernels, data, simulate"),
    "pack": ("hpc_taskology.commands.pack", "pack a dataset's native layout into one HDF5 file (MPI-parallel)"),
    "simulate": ("hpc_taskology.commands.simulate", "render labelled synthetic scenes into one HDF5 file (MPI)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskology", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

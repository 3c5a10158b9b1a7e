"""Subcommands of the ``taskology`` CLI, one module each (``add_arguments(parser)``, ``run(args) -> int``)."""

from __future__ import annotations


def build_topology(cfg, backend: str | None, prog: str):
    """:meth:`Topology.build` on ``MPI.COMM_WORLD``; on a layout error rank 0 prints it and ``None`` is returned."""
    import sys

    from mpi4py import MPI

    from ..topology import Topology, TopologyError

    try:
        return Topology.build(cfg, MPI.COMM_WORLD, backend=backend)
    except TopologyError as e:
        if MPI.COMM_WORLD.rank == 0:
            print(f"taskology {prog}: {e}", file=sys.stderr)
        return None

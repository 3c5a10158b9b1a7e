"""Native dataset layouts → packed HDF5 (``taskology pack FORMAT SRC -o OUT.h5``).  One module per format.

Each module exposes ``plan(src, frames=None, **options) -> PackPlan`` (see :mod:`.common`); the packing itself
(serial or over MPI ranks) is :func:`hpc_taskology.data.parallel.pack_parallel`.
"""

from __future__ import annotations

import importlib

FORMATS: dict[str, str] = {
    "kitti_raw": "hpc_taskology.data.pack.kitti_raw",
    "kitti_stereo": "hpc_taskology.data.pack.kitti_stereo",
    "scannet": "hpc_taskology.data.pack.scannet",
    "hololens": "hpc_taskology.data.pack.hololens",
    "tum": "hpc_taskology.data.pack.tum",
    "scenenet": "hpc_taskology.data.pack.scenenet",
}


def get_format(name: str):
    """The reader module of format ``name``; raises ``ValueError`` listing the known formats."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])

"""Datasets: native layouts → HDF5 (``pack``), HDF5 → torch (``loader``), and the mediator schedule.

* :mod:`.schema` — the packed-file schema, :class:`~.schema.H5Writer`, :func:`~.schema.open_packed`.
* :mod:`.pack` — one reader per native layout (``kitti_raw``, ``kitti_stereo``, ``scannet``, ``hololens``, ``tum``,
  ``scenenet``), each ``plan(src, frames=None, **options) -> PackPlan``; ``pack.scenenet.write_scenenet_layout``.
* :mod:`.parallel` — ``pack_parallel``: packing split over MPI ranks, merged into one file.
* :mod:`.loader` — ``PackedDataset`` (lazy per-worker open, resize/crop with K updated), ``GroupBatchLoader``.
* :mod:`.mediator` — ``MediatorSchedule``: the sample-id order every task group derives from one seed.
* :mod:`.intrinsics` — K under resize/crop (half-pixel rule), nearest-neighbour resampling.
* :mod:`.bench` — ``taskology bench data``.

Schema, units and conventions: ``datasets/README.md``.
"""

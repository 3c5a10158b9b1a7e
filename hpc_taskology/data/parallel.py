"""Packing in parallel over MPI ranks: each rank packs a contiguous slice of the frames into its own part file, then
rank 0 merges the parts into one file by copying their per-sample chunks as stored (no recompression).

The result is the same file a single process would write (same datasets, rows in frame order, same compressed
chunks), written under a temporary name and renamed at the end (schema.H5Writer): a failed run on any rank leaves
an existing file of the final name untouched and removes every part file.  Works without mpirun (``comm=None`` or a
1-rank communicator: one process writes the file directly).  The output folder must be on a file system every rank
sees (it holds the part files).  Built on mpi4py, h5py and tqdm.

Public API::

    pack_parallel(frames, make_sample, out_path, height, width, *, source, licence, optional=(), compression="lz4",
                  attrs=None, comm=None, progress=True) -> Path
    pack_rank_samples(samples, out_path, height, width, *, n_local=None, ...same keywords...) -> Path
    pack_plan(plan, out_path, *, compression="lz4", comm=None, progress=True) -> Path
    rank_slice(n, rank, size) -> slice
    launched_comm() -> MPI communicator or None
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .schema import H5Writer

# set by mpirun/mpiexec (OpenMPI, MPICH/Hydra, PMIx) or srun with PMI: the process is one rank of an MPI job
_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS")


def launched_comm():
    """``MPI.COMM_WORLD`` if this process was started by an MPI launcher, else None (no MPI initialisation)."""
    if any(k in os.environ for k in _MPI_ENV):
        from mpi4py import MPI

        return MPI.COMM_WORLD
    return None


def rank_slice(n: int, rank: int, size: int) -> slice:
    """Contiguous block of ``range(n)`` for ``rank`` of ``size`` (the first n % size ranks get one more item);
    concatenating the blocks in rank order gives ``range(n)``."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} not in [0, {size})")
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


def _progress(iterable, enabled: bool, total: int | None, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="sample")


def pack_rank_samples(samples: Iterable[dict], out_path: str | os.PathLike, height: int, width: int, *, source: str,
                      licence: str, optional: Sequence[str] = (), compression: str = "lz4", attrs: dict | None = None,
                      comm=None, progress: bool = True, n_local: int | None = None) -> Path:
    """Write one packed file from samples produced on every rank: rank r's ``samples`` become rows after those of
    ranks 0..r-1.  Collective over ``comm`` (None = this process alone).  Returns the output path on every rank.

    ``samples``: schema samples (numpy; see schema.py) of this rank, in order; ``n_local``: their count, for the
    progress bar (rank 0 shows its own part).  Raises the rank's own exception on the rank where a sample failed
    (e.g. :class:`~hpc_taskology.data.pack.common.SourceError` naming the bad file), and ``RuntimeError`` naming the
    failed ranks and their errors on the others; no output or part file is left behind and an existing
    ``out_path`` is unchanged.
    """
    out_path = Path(out_path)
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    kw = dict(source=source, licence=licence, optional=optional, compression=compression, attrs=attrs)
    desc = f"pack {out_path.name}" + (f" (rank 0 of {size})" if size > 1 else "")
    if size == 1:
        with H5Writer(out_path, height, width, **kw) as w:
            for s in _progress(samples, progress, n_local, desc):
                w.append(s)
        return out_path

    token = comm.bcast(f"{os.getpid()}-{time.time_ns()}" if rank == 0 else None, root=0)
    parts = [out_path.with_name(f".{out_path.name}.part{r:04d}-of-{size:04d}-{token}") for r in range(size)]
    err, exc = None, None
    try:
        with H5Writer(parts[rank], height, width, **kw) as w:
            for s in _progress(samples, progress and rank == 0, n_local, desc):
                w.append(s)
    except Exception as e:  # reported to every rank below, then re-raised here
        err, exc = f"{type(e).__name__}: {e}", e
    errors = comm.allgather(err)
    if any(errors):
        parts[rank].unlink(missing_ok=True)
        comm.Barrier()  # every part is gone before any rank raises (a raise may abort the job)
        if exc is not None:
            raise exc
        failed = "; ".join(f"rank {r}: {m}" for r, m in enumerate(errors) if m)
        raise RuntimeError(f"packing {out_path} failed ({failed}); {out_path} left untouched")

    if rank == 0:
        try:
            with H5Writer(out_path, height, width, **kw) as w:
                for p in _progress(parts, progress, size, f"merge {out_path.name}"):
                    w.append_packed(p)
        except Exception as e:
            err, exc = f"{type(e).__name__}: {e}", e
        finally:
            for p in parts:
                p.unlink(missing_ok=True)
    err = comm.bcast(err, root=0)
    if err:
        if exc is not None:
            raise exc
        raise RuntimeError(f"merging the parts of {out_path} failed on rank 0 ({err}); {out_path} left untouched")
    return out_path


def pack_parallel(frames: Sequence[Any], make_sample: Callable[[Any], dict], out_path: str | os.PathLike, height: int,
                  width: int, *, source: str, licence: str, optional: Sequence[str] = (), compression: str = "lz4",
                  attrs: dict | None = None, comm=None, progress: bool = True) -> Path:
    """Pack ``make_sample(f)`` for every ``f`` in ``frames`` into ``out_path``, the frames split over the ranks of
    ``comm`` (rank r makes the samples of :func:`rank_slice`; rows stay in ``frames`` order).  Collective: every rank
    passes the same ``frames`` (checked: same length) and the same keywords.

    ``frames``: any picklable-or-not descriptors (paths, seeds, ids); ``make_sample(frame) -> dict``: a schema
    sample of ``height`` × ``width`` with the keys of schema.REQUIRED plus ``optional``; ``source``/``licence``:
    root attributes (required; keep the data's licence); ``compression``: lz4|zstd|blosc|gzip|none; ``attrs``: extra
    root attributes; ``comm``: an mpi4py communicator, or None for this process alone (see :func:`launched_comm`).
    Returns ``Path(out_path)`` on every rank.  Errors as :func:`pack_rank_samples`; ``ValueError`` if the ranks
    disagree on the number of frames.
    """
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    if size > 1:
        counts = comm.allgather(len(frames))
        if len(set(counts)) != 1:
            raise ValueError(f"pack_parallel: ranks passed different numbers of frames {counts}; pass the same list")
    local = list(frames)[rank_slice(len(frames), rank, size)]
    return pack_rank_samples((make_sample(f) for f in local), out_path, height, width, source=source, licence=licence,
                             optional=optional, compression=compression, attrs=attrs, comm=comm, progress=progress,
                             n_local=len(local))


def pack_plan(plan, out_path: str | os.PathLike, *, compression: str = "lz4", comm=None, progress: bool = True) -> Path:
    """Pack a format reader's :class:`~hpc_taskology.data.pack.common.PackPlan` (see :func:`pack_parallel`)."""
    attrs = {**plan.attrs, "num_source_frames": len(plan.frames)}
    return pack_parallel(plan.frames, plan.make_sample, out_path, plan.height, plan.width, source=plan.source,
                         licence=plan.licence, optional=plan.optional, compression=compression, attrs=attrs,
                         comm=comm, progress=progress)

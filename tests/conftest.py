"""Shared pytest fixtures and the multi-rank launcher for MPI tests.

MPI tests are written once as a script under ``tests/mpi/`` and run at 2 and 4 ranks by a pytest test that launches
``<mpiexec> <numproc flag> N <preflags> python -m mpi4py tests/mpi/<script>.py`` (mpi4py's ``-m mpi4py`` aborts the
whole job when one rank raises, instead of hanging it).  The launcher comes from the environment, as CTest passes it:

* ``MPIEXEC_EXECUTABLE`` (default: ``jobs/mpirun.sh``, which adds the root/oversubscribe flags), e.g. ``srun``
* ``MPIEXEC_NUMPROC_FLAG`` (default ``-n``)
* ``MPIEXEC_PREFLAGS`` (default empty), split on whitespace
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TASKOLOGY_SHARED_DATA", REPO.parent / "shared" / "data"))

# Triton kernels run on the CPU interpreter when there is no GPU; it must be set before any kernel is defined.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass


def mpi_command(n: int, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` (after ``python``) on ``n`` ranks."""
    exe = os.environ.get("MPIEXEC_EXECUTABLE") or str(REPO / "jobs" / "mpirun.sh")
    flag = os.environ.get("MPIEXEC_NUMPROC_FLAG", "-n")
    pre = shlex.split(os.environ.get("MPIEXEC_PREFLAGS", ""))
    return [exe, flag, str(n), *pre, sys.executable, *argv]


def _launch(n: int, argv: list[str], timeout: float, env: dict | None, check: bool) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMPI_MCA_osc": os.environ.get("OMPI_MCA_osc", "^ucx")}
    full_env.update(env or {})
    cmd = mpi_command(n, ["-m", "mpi4py", *argv])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return proc


def run_mpi(n: int, script: str | Path, *args: str, timeout: float = 300, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``tests/mpi/<script>`` (or any path) under MPI with ``n`` ranks through ``python -m mpi4py``.

    Returns the completed process (text stdout/stderr).  With ``check`` a non-zero exit fails the calling test with
    the tail of both streams.
    """
    path = Path(script)
    if not path.is_absolute():
        path = REPO / "tests" / "mpi" / path
    return _launch(n, [str(path), *args], timeout, env, check)


def run_mpi_cli(n: int, *args: str, timeout: float = 300, env: dict | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m mpi4py -m hpc_taskology <args>`` on ``n`` ranks (the ``taskology`` CLI under MPI)."""
    return _launch(n, ["-m", "hpc_taskology", *args], timeout, env, check)


def pytest_collection_modifyitems(config, items):
    """``TASKOLOGY_MPI_NP=2`` keeps only the MPI tests parametrised with 2 ranks (how CTest runs each size)."""
    only = os.environ.get("TASKOLOGY_MPI_NP")
    if not only:
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        n = next((params[k] for k in ("n", "np", "ranks", "nranks") if k in params), None)
        (drop if item.get_closest_marker("mpi") and n is not None and str(n) != only else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$TASKOLOGY_SHARED_DATA``); skips if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA

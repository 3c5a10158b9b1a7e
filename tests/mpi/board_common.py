"""Helpers shared by the tests/mpi/board_*.py scripts (run under mpirun by tests/test_board.py).

Layout used by the scripts: two task groups on consecutive world ranks, ``depth`` (producer) and ``normals``
(consumer; it also produces its own output in the round-trip script); with 2 ranks 1 + 1, with 4 ranks 2 + 2.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from mpi4py import MPI

from hpc_taskology.board import GroupLayout

WORLD = MPI.COMM_WORLD


def layout(first: str = "depth", second: str = "normals") -> GroupLayout:
    """``{first: n // 2, second: n - n // 2}`` (at least one rank each)."""
    n = WORLD.size
    if n < 2:
        raise SystemExit("board tests need at least 2 ranks")
    return GroupLayout(WORLD, {first: n // 2, second: n - n // 2})


def pattern(ids, step, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 (B, *shape) with ``v[b, j] = (step_b * 4099 + id_b * 131 + j) % 2048`` (``step`` an int or (B,)):
    integers exact in float32/float16, different for every (step mod 2048, id, element)."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64)
    steps = torch.as_tensor(np.asarray(step), dtype=torch.int64).reshape(-1, 1)
    n = int(np.prod(shape))
    j = torch.arange(n, dtype=torch.int64)
    v = (steps * 4099 + ids[:, None] * 131 + j[None, :]) % 2048
    return v.to(torch.float32).reshape(len(ids), *shape)


_TABLES: dict[int, np.ndarray] = {}


def pattern_ok(values: np.ndarray, ids: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """bool (B,): ``values`` (B, ...) equals ``pattern(ids, steps, shape)`` exactly.

    Same formula as :func:`pattern`, written as a table lookup (row ``(3 * step + 131 * id) % 2048`` of
    ``(o + j) % 2048``; 4099 = 2 * 2048 + 3) so that checking every read stays cheap."""
    v = np.asarray(values).reshape(len(values), -1)
    n = v.shape[1]
    if n not in _TABLES:
        _TABLES[n] = ((np.arange(2048)[:, None] + np.arange(n)[None, :]) % 2048).astype(np.float32)
    rows = (3 * np.asarray(steps, dtype=np.int64) + 131 * np.asarray(ids, dtype=np.int64)) % 2048
    return (v == _TABLES[n][rows]).all(axis=1)


def check(cond, msg: str) -> None:
    """Fail this rank (``python -m mpi4py`` aborts the whole job) with ``msg`` if ``cond`` is false."""
    if not cond:
        raise AssertionError(f"[world rank {WORLD.rank}] {msg}")


def log(*args) -> None:
    print(f"[rank {WORLD.rank}]", *args, flush=True)


def polite_barrier(comm=WORLD, poll_s: float = 0.005) -> None:
    """Barrier without busy-polling (Ibarrier + sleep), so a waiting rank leaves the core to busy ones."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll_s)


def expect_raises(exc_type, fn, *must_contain: str):
    """Call ``fn``; check it raises ``exc_type`` whose message contains every string of ``must_contain``."""
    try:
        fn()
    except exc_type as e:
        for s in must_contain:
            check(s in str(e), f"{exc_type.__name__} message lacks {s!r}: {e}")
        return e
    except Exception as e:  # noqa: BLE001 - report what was raised instead
        check(False, f"expected {exc_type.__name__}, got {type(e).__name__}: {e}")
    check(False, f"expected {exc_type.__name__}, nothing was raised")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("board_common.py is a helper module, not a test script")

"""A rank that is marked failed and never closes must not hang its peers' close (run by tests/test_board.py,
which expects this job to be *aborted* with the BoardError message, long before the failed rank would wake up).

The ``depth`` ranks mark themselves failed and sleep ``SLEEP_S`` without closing; the ``normals`` ranks close with
``CLOSE_GRACE_S = 1``: close must raise BoardError naming the failed ranks, and ``python -m mpi4py`` aborts the job.
"""

from __future__ import annotations

import time

import hpc_taskology.board.board as board_module
from board_common import WORLD, layout, log
from hpc_taskology.board import PredictionBoard
from hpc_taskology.config import BoardConfig

SLEEP_S = 60.0
lay = layout()
board = PredictionBoard(lay, 4, {"depth": {"depth": (2,)}}, BoardConfig())
WORLD.Barrier()
if lay.task == "depth":
    board.set_state("failed")
    time.sleep(SLEEP_S)  # "crashed": never reaches close
    log("the failed rank woke up: the peers' close should have aborted the job long before")
else:
    board_module.CLOSE_GRACE_S = 1.0
    time.sleep(0.2)
    log("closing")
    board.close()
    log("close returned although a failed rank never entered it")

"""One MPI RMA window of the board: allocation, passive-target lock epochs, Get/Put of byte ranges, Free.

Follows mpi4py's patterns (``demo/nxtval/nxtval-mpi3.py``: ``MPI.Win.Allocate`` then ``Lock``/``Get_accumulate``/
``Unlock``; ``test/test_rma.py::win_lock``: the lock epoch as a context manager that unlocks in ``finally``).

Windows come from ``MPI.Win.Allocate`` (not ``Win.Create`` on numpy memory) so that the MPI library chooses the
memory: shared memory for osc/sm on one node, registered memory for osc/rdma across nodes.  Displacement unit is
one byte; every rank of the communicator calls the constructor (collective), ranks that hold nothing pass 0 bytes.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from mpi4py import MPI


class RmaWindow:
    """A window of ``nbytes`` local bytes on ``comm`` (collective), named for error messages.

    Raises ``MPI.Exception`` if the MPI library cannot allocate the memory (the board turns it into a
    :class:`~hpc_taskology.board.errors.BoardCapacityError`).
    """

    def __init__(self, comm, nbytes: int, name: str):
        self.name = name
        self.nbytes = int(nbytes)
        self.win = MPI.Win.Allocate(self.nbytes, 1, MPI.INFO_NULL, comm)

    def local(self) -> np.ndarray:
        """This rank's bytes as a uint8 array of shape (nbytes,) (a view; touch only inside a lock epoch on self)."""
        if self.nbytes == 0:
            return np.zeros(0, np.uint8)
        return np.frombuffer(self.win.tomemory(), dtype=np.uint8, count=self.nbytes)

    @contextmanager
    def locked(self, rank: int, exclusive: bool, nocheck: bool = False):
        """A passive-target access epoch on ``rank``: ``Lock`` (exclusive or shared) ... ``Unlock`` in ``finally``.

        ``nocheck`` passes ``MPI.MODE_NOCHECK`` (no other process holds or will request a conflicting lock during the
        epoch): only valid while nobody else can access the window, i.e. before the start-up barrier.
        ``Unlock`` completes every Get/Put of the epoch at origin and target.
        """
        lock = MPI.LOCK_EXCLUSIVE if exclusive else MPI.LOCK_SHARED
        self.win.Lock(rank, lock, MPI.MODE_NOCHECK if nocheck else 0)
        try:
            yield self
        finally:
            self.win.Unlock(rank)

    def get(self, buf: np.ndarray, rank: int, offset: int) -> None:
        """Start a Get of ``buf.nbytes`` bytes at byte ``offset`` of ``rank``'s memory into contiguous ``buf``.

        Only inside :meth:`locked`; the data is there once the epoch ends (or after ``Flush``).
        """
        self.win.Get([buf, buf.nbytes, MPI.BYTE], rank, (offset, buf.nbytes, MPI.BYTE))

    def put(self, buf: np.ndarray, rank: int, offset: int) -> None:
        """Start a Put of contiguous ``buf`` to byte ``offset`` of ``rank``'s memory (only inside :meth:`locked`)."""
        self.win.Put([buf, buf.nbytes, MPI.BYTE], rank, (offset, buf.nbytes, MPI.BYTE))

    def free(self) -> None:
        """``MPI_Win_free`` (collective over the window's communicator); idempotent."""
        if self.win != MPI.WIN_NULL:
            self.win.Free()

"""Errors raised by the prediction board; each message names the (task, output), ids or config field involved."""

from __future__ import annotations


class BoardError(RuntimeError):
    """Misuse of the board (wrong group publishing, unknown output, closed board) or inconsistent arguments."""


class BoardCapacityError(BoardError):
    """A shard of the board does not fit in ``board.max_window_bytes`` or could not be allocated.

    The message gives the bytes needed (ids x entry size) and the ways out: ``board.dtype = "float16"``, a lower
    mediator resolution, more ranks in the producing group, or a larger ``board.max_window_bytes``.
    """


class BoardTimeoutError(BoardError, TimeoutError):
    """A synchronous read (``max_staleness == 0``) waited ``board.wait_timeout_s`` for fresh entries in vain."""

"""Gradient averaging inside one task group: Horovod process sets, or torch.distributed gloo subgroups.

Both backends expose the same small interface, :class:`GroupBackend`, so the task trainer never branches on the
backend.  Every collective here involves the ranks of *one* task group only; groups never wait for each other.

* :class:`HorovodBackend` follows Horovod's ``docs/process_set.rst`` and ``test/parallel/test_process_sets_multi_comm.py``:
  ``hvd.init(comm, process_sets=[hvd.ProcessSet(group_comm)])`` over an mpi4py ``Split``, ``process_set=`` on every
  collective and on ``hvd.DistributedOptimizer``.  ``hvd.broadcast_parameters`` takes no process set, so parameters
  are broadcast one tensor at a time with ``hvd.broadcast_(t, root_rank=<world rank of the leader>, process_set=ps)``.
* :class:`TorchDistBackend` uses ``torch.distributed`` with the gloo backend, one ``new_group`` per task; the
  optimizer wrapper all-reduces the group's gradients (one flattened bucket) before ``step()``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterable, Protocol

import torch
from torch import nn


class GroupBackend(Protocol):
    """What the task trainer needs from a backend.  All calls are collective over the caller's task group."""

    name: str

    def allreduce_mean(self, t: torch.Tensor, name: str) -> torch.Tensor:
        """Mean of ``t`` over the ranks of the group (any shape, float); returns a new tensor."""

    def broadcast_(self, t: torch.Tensor, name: str) -> None:
        """Overwrite ``t`` in place with the group leader's copy."""

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        """An optimizer whose ``step()`` applies gradients averaged over the group."""

    def shutdown(self) -> None:
        """Release the backend's resources (collective over the world)."""


def broadcast_module(backend: GroupBackend, module: nn.Module) -> None:
    """Copy every parameter and buffer of ``module`` from the group leader to all ranks of the group."""
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            backend.broadcast_(t.data, name=f"bcast.{name}")


class HorovodBackend:
    """Horovod with one process set per task group (Horovod >= 0.23 process sets; built with MPI, no Gloo).

    ``world``/``group`` are mpi4py communicators; ``leader`` is the world rank of the group's rank 0.
    Raises ``ImportError`` with the fix if Horovod is not installed.
    """

    name = "horovod"

    def __init__(self, world, group, leader: int):
        try:
            import horovod.torch as hvd
        except ImportError as e:  # pragma: no cover - exercised only without Horovod
            raise ImportError(
                f"backend 'horovod' needs horovod.torch ({e}); run jobs/setup.sh, or set job.backend = \"torch\""
            ) from e
        self.hvd = hvd
        self.process_set = hvd.ProcessSet(group)
        hvd.init(comm=world, process_sets=[self.process_set])
        if self.process_set.process_set_id is None or not self.process_set.included():
            raise RuntimeError(f"Horovod did not register this rank's task group as a process set: {self.process_set}")
        self.leader = leader

    def allreduce_mean(self, t: torch.Tensor, name: str) -> torch.Tensor:
        return self.hvd.allreduce(t, op=self.hvd.Average, name=name, process_set=self.process_set)

    def broadcast_(self, t: torch.Tensor, name: str) -> None:
        self.hvd.broadcast_(t, root_rank=self.leader, name=name, process_set=self.process_set)

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        return self.hvd.DistributedOptimizer(
            optimizer, named_parameters=model.named_parameters(), op=self.hvd.Average, process_set=self.process_set
        )

    def shutdown(self) -> None:
        self.hvd.shutdown()


class _GroupAveraged:
    """Mixin placed in front of an optimizer's class: ``step()`` first averages gradients over a gloo group.

    The gradients of all parameters are flattened into one bucket and all-reduced once (as DDP's reducer does, minus
    the overlap with backward); parameters without a gradient contribute zeros so every rank reduces the same bucket.
    The instance keeps its own class's state dict, so checkpoints are interchangeable with the Horovod backend's
    (Horovod's ``DistributedOptimizer`` subclasses the wrapped optimizer's class the same way).
    """

    _avg_params: list
    _avg_group: object
    _avg_size: int

    def synchronize(self) -> None:
        """All-reduce (mean) every gradient over the group; called by :meth:`step`."""
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._avg_params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self._avg_group)
        flat /= self._avg_size
        offset = 0
        for p, g in zip(self._avg_params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside this context ``step()`` applies the gradients as they are (after an explicit ``synchronize()``),
        as Horovod's ``DistributedOptimizer.skip_synchronize``."""
        self._avg_skip = True
        try:
            yield
        finally:
            self._avg_skip = False

    def step(self, closure=None):
        if not getattr(self, "_avg_skip", False):
            self.synchronize()
        return super().step(closure)


def group_averaged(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter], group, size: int):
    """Turn ``optimizer`` (in place) into one whose ``step()`` averages gradients over ``group`` first."""
    base = type(optimizer)
    optimizer.__class__ = type(f"GroupAveraged{base.__name__}", (_GroupAveraged, base), {})
    optimizer._avg_params = [p for p in params if p.requires_grad]
    optimizer._avg_group = group
    optimizer._avg_size = size
    return optimizer


class TorchDistBackend:
    """torch.distributed (gloo) with one subgroup per task, for machines without Horovod.

    The rendezvous address is the world rank 0's host name and a free port, broadcast over MPI, so the backend
    needs no environment variables from the launcher.  ``task_ranks`` lists the world ranks of every task in job-file
    order; every rank creates every subgroup (``new_group`` is collective over the world).
    """

    name = "torch"

    def __init__(self, world, task_ranks: list[list[int]], my_task: int, leader: int):
        import torch.distributed as dist

        self.dist = dist
        if world.rank == 0:
            with socket.socket() as s:
                s.bind(("", 0))
                port = s.getsockname()[1]
            addr = (os.environ.get("TASKOLOGY_TORCH_ADDR") or socket.gethostname(), port)
        else:
            addr = None
        host, port = world.bcast(addr, root=0)
        dist.init_process_group(
            "gloo", init_method=f"tcp://{host}:{port}", rank=world.rank, world_size=world.size
        )
        groups = [dist.new_group(ranks=r, backend="gloo") for r in task_ranks]
        self.group = groups[my_task]
        self.size = len(task_ranks[my_task])
        self.leader = leader

    def allreduce_mean(self, t: torch.Tensor, name: str) -> torch.Tensor:
        out = t.detach().clone()
        self.dist.all_reduce(out, op=self.dist.ReduceOp.SUM, group=self.group)
        return out / self.size

    def broadcast_(self, t: torch.Tensor, name: str) -> None:
        self.dist.broadcast(t, src=self.leader, group=self.group)

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        return group_averaged(optimizer, model.parameters(), self.group, self.size)

    def shutdown(self) -> None:
        self.dist.destroy_process_group()

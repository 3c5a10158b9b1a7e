"""The per-group training loop that tasks plug into.

For one task group: the task's model, its optimizer wrapped by the backend (Horovod ``DistributedOptimizer`` with the
group's process set, or the torch.distributed equivalent), the initial weights broadcast from the group leader, a
group-sharded sampler over the dedicated dataset, metrics averaged over the group and logged by the leader
(TensorBoard, JSON lines, tqdm), and per-group checkpoints (model, optimizer, step, sampler position) with resume.

A step (Taskology §3.1, eq. 1): loss = L_sup(dedicated batch) + λ · L_con(mediator batch, peers' predictions);
one backward, one optimizer step.  Gradient averaging involves only the ranks of this task's group.
"""

from __future__ import annotations

import sys
import time

import torch

from .backends import broadcast_module
from .checkpoint import load_latest, save_checkpoint
from .config import OptimizerConfig
from .metrics import LeaderLog, MetricAccumulator, group_mean
from .sampler import GroupShardedSampler


class _LineStream:
    """File for tqdm when stderr is not a terminal (mpirun pipes it): each refresh becomes one line.

    tqdm redraws with carriage returns; through mpirun's forwarding those updates only appear at the next newline,
    i.e. at the end of the run.
    """

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def make_optimizer(cfg: OptimizerConfig, params) -> torch.optim.Optimizer:
    """torch optimizer from ``[tasks.optimizer]``."""
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class TaskTrainer:
    """Train ``task`` on this rank's group of ``topo``.

    ``resume=True`` continues from the newest checkpoint of the task under the run directory (the step, the
    optimizer state and the sampler position are restored; with ``resume=False`` existing checkpoints are ignored
    and overwritten as the run proceeds).  ``init_from`` (another run's directory) starts a new run from that run's
    newest weights and optimizer state for this task, at step 0: Taskology §4.3 first trains each task on its
    simulated labels, then adds the consistency loss on the real mediator frames.  Raises ``FileNotFoundError``
    naming the directory when it holds no checkpoint of the task.
    """

    BASE_KEYS = ["loss/total", "loss/supervised", "loss/consistency", "time/step(s)", "throughput(samples/s)"]

    def __init__(self, topo, task, resume: bool = False, steps: int | None = None, init_from=None):
        self.topo, self.task = topo, task
        self.job = topo.cfg.job
        self.cfg = task.cfg
        self.run_dir = topo.cfg.run_dir()
        self.steps = steps if steps is not None else self.job.steps
        be = topo.backend

        # Different weights on every rank before the broadcast, so the broadcast is what makes them equal.
        torch.manual_seed(self.job.seed * 1000 + topo.world_rank)
        self.model = task.build_model()
        broadcast_module(be, self.model)
        self.optimizer = be.wrap_optimizer(make_optimizer(self.cfg.optimizer, self.model.parameters()), self.model)
        self.sampler = GroupShardedSampler(
            task.num_dedicated(), self.cfg.data.batch_size, topo.group_rank, topo.group_size,
            seed=self.job.seed + 7919 * topo.task_index,
        )
        self.start_step = 0
        if init_from is not None:
            state = load_latest(init_from, task.name)
            if state is None:
                raise FileNotFoundError(f"--init-from {init_from}: no checkpoint of task {task.name!r} under "
                                        f"{init_from}/checkpoints/{task.name}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if resume:
            state = load_latest(self.run_dir, task.name)
            if state is not None:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.start_step = self.sampler.check_state(state["sampler"])
        self.log = LeaderLog(self.run_dir, task.name, enabled=topo.is_leader)
        self.history: list[dict] = []

    def state_dict(self, step: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(step)}

    def save(self, step: int) -> None:
        """Leader writes the group's checkpoint at ``step`` completed steps (weights are equal across the group)."""
        if self.topo.is_leader:
            save_checkpoint(self.run_dir, self.task.name, step, self.state_dict(step))

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step; returns this rank's metrics."""
        t0 = time.perf_counter()
        self.model.train()
        batch = self.task.dedicated_batch(self.sampler.batch(step))
        self.optimizer.zero_grad()
        sup, metrics = self.task.supervised_loss(self.model, batch)
        total = sup
        metrics = {**metrics, "loss/supervised": float(sup.detach())}
        con_cfg = self.cfg.consistency
        if con_cfg.weight > 0 and step % con_cfg.every == 0:
            con, cmetrics = self.task.consistency_loss(self.model, step)
            metrics.update(cmetrics)
            if con is not None:
                total = total + con_cfg.weight * con
                metrics["loss/consistency"] = float(con.detach())
        total.backward()
        self.optimizer.step()
        self.task.after_step(self.model, step)
        dt = time.perf_counter() - t0
        metrics.update({"loss/total": float(total.detach()), "time/step(s)": dt,
                        "throughput(samples/s)": self.cfg.data.batch_size * self.topo.group_size / dt})
        return metrics

    def train(self) -> dict[str, float]:
        """Run from ``start_step`` to ``steps``; returns the last group-averaged metrics plus ``steps/s``."""
        from tqdm import tqdm

        keys = self.BASE_KEYS + [k for k in self.task.metric_keys() if k not in self.BASE_KEYS]
        acc = MetricAccumulator()
        tty = sys.stderr.isatty()
        bar = tqdm(total=self.steps, initial=self.start_step, desc=self.task.name, disable=not self.topo.is_leader,
                   mininterval=2.0 if tty else 20.0, dynamic_ncols=tty,
                   file=sys.stderr if tty else _LineStream(sys.stderr))
        last: dict[str, float] = {}
        t_start, step = time.perf_counter(), self.start_step
        try:
            for step in range(self.start_step, self.steps):
                acc.add(self.train_step(step))
                done = step + 1
                if done % self.job.log_every == 0 or done == self.steps:
                    last = group_mean(self.topo.backend, acc.means(), keys, name=f"metrics.{done}")
                    acc.reset()
                    self.log.log(done, last)
                    self.history.append({"step": done, **last})
                    bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in last.items() if k.startswith("loss")},
                                    refresh=False)
                if self.job.checkpoint_every and done % self.job.checkpoint_every == 0 and done < self.steps:
                    self.save(done)
                bar.update(1)
            self.save(self.steps)
        finally:
            bar.close()
            self.log.close()
        elapsed = time.perf_counter() - t_start
        ran = self.steps - self.start_step
        return {**last, "steps": self.steps, "steps/s": ran / elapsed if elapsed > 0 else float("nan")}

"""Depth and surface-normal tasks: dense networks trained on labelled frames and on consistency with each other.

Taskology §3.2.3 and §4.3 (Table 3): a depth network and a normals network, each supervised on its own dedicated
dataset (simulated frames), are made consistent on an unlabelled mediator dataset (real frames): normals derived
from the depth network's depth (supplementary §7, eqs. 10–18) should agree with the normals network's normals.
Each group only sees its peer's *stale* predictions, read from the prediction board; gradients stay in its own
network.

Per mediator step a group (1) predicts on its mediator batch, (2) publishes those predictions to the board
(write-through: publishing before reading means two groups in synchronous mode, ``max_staleness = 0``, never wait
on each other), (3) reads the peer's latest predictions for the same sample ids, and (4) computes the consistency
loss with the peer's values as constants, masking samples the board marks unusable (never written, or older than
``board.max_staleness``).

Conventions: images (B, 3, H, W) float in [0, 1]; depth (B, 1, H, W) metres along the optical axis; normals
(B, 3, H, W) unit vectors in the camera frame (x right, y down, z forward) facing the camera; K (B, 3, 3) pixels,
pixel centres at integer coordinates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from ..config import ConfigError
from ..data.loader import PackedDataset
from ..data.mediator import MediatorSchedule
from ..losses.depth_normals import depth_normal_consistency
from ..models import build_model
from .base import Task

MIN_DEPTH, MAX_DEPTH = 0.1, 10.0  # metres: the indoor range the depth head can express (monodepth2-style sigmoid)

CONSISTENCY_KEYS = [
    "consistency/coverage(frac)",
    "consistency/staleness_mean(steps)",
    "consistency/staleness_mean(s)",
    "consistency/valid_pixels(frac)",
    "board/read_time(ms)",
    "board/publish_time(ms)",
]


class DenseTask(Task):
    """Shared plumbing of the depth and normals tasks: dedicated and mediator data, board traffic, staleness."""

    OUTPUT: str = ""            # the output this task publishes on the board
    PEER: tuple[str, str] = ("", "")  # (peer task, peer output) it reads
    OUT_CHANNELS: int = 0
    EXTRAS: tuple[str, ...] = ()

    def __init__(self, cfg, job, topo):
        super().__init__(cfg, job, topo)
        if cfg.model.out_channels != self.OUT_CHANNELS:
            raise ConfigError(f"{cfg._path}.model.out_channels: task kind {cfg.kind!r} predicts "
                              f"{self.OUT_CHANNELS} channel(s), got {cfg.model.out_channels}")
        if not cfg.data.path:
            raise ConfigError(f"{cfg._path}.data.path: task kind {cfg.kind!r} needs a packed dedicated dataset")
        size = (cfg.data.height, cfg.data.width) if cfg.data.height and cfg.data.width else None
        self.dedicated = PackedDataset(cfg.data.path, extras=self.EXTRAS, size=size, mode="resize_crop")
        self.board = None
        self.mediator = None
        self.schedule = None
        self.ages_steps: list[np.ndarray] = []   # run-long staleness of every usable peer entry read
        self.ages_s: list[np.ndarray] = []
        self.coverage: list[float] = []

    # ---- board wiring (called by the train command when the job has a mediator dataset) ----------------------
    @classmethod
    def board_outputs(cls, job) -> dict[str, tuple[int, ...]]:
        """Outputs this task kind publishes, with their per-sample shapes at the mediator resolution."""
        m = job.mediator
        return {cls.OUTPUT: (cls.OUT_CHANNELS, m.height, m.width)}

    def attach_mediator(self, mediator: PackedDataset, board) -> None:
        """Use ``mediator`` (the shared unlabelled frames) and ``board`` for this task's consistency term."""
        self.mediator, self.board = mediator, board
        self.schedule = MediatorSchedule(len(mediator), self.job.job.seed, self.job.mediator.batch_size,
                                         self.topo.group_rank, self.topo.group_size)

    # ---- Task interface ---------------------------------------------------------------------------------------
    def build_model(self):
        return build_model(self.cfg.model)

    def num_dedicated(self) -> int:
        return len(self.dedicated)

    def dedicated_batch(self, indices: np.ndarray) -> dict:
        return default_collate([self.dedicated[int(i)] for i in indices])

    @staticmethod
    def predict(model, rgb: torch.Tensor) -> torch.Tensor:
        """The task's output map from images (B, 3, H, W) in [0, 1]."""
        raise NotImplementedError

    def consistency_terms(self, mine: torch.Tensor, peer: torch.Tensor, K: torch.Tensor, valid: torch.Tensor):
        """(loss, n_valid) between this task's prediction and the peer's (constant) prediction."""
        raise NotImplementedError

    def metric_keys(self) -> list[str]:
        return CONSISTENCY_KEYS if self.board is not None else []

    def consistency_loss(self, model, step: int):
        if self.board is None:
            return None, {}
        ids = self.schedule.batch(step)
        batch = default_collate([self.mediator[int(i)] for i in ids])
        mine = self.predict(model, batch["rgb"])
        self.board.publish(f"{self.name}.{self.OUTPUT}", ids, mine.detach(), step)
        peer = self.board.read(self.PEER[0], self.PEER[1], ids, now_step=step)
        usable = peer.usable.view(-1, 1, 1, 1).expand(-1, 1, *mine.shape[-2:])
        loss, n_valid = self.consistency_terms(mine, peer.values, batch["K"], usable)
        ok = peer.usable.numpy()
        self.ages_steps.append(peer.age_steps.numpy()[ok])
        self.ages_s.append(peer.age_s.numpy()[ok])
        cov = float(ok.mean())
        self.coverage.append(cov)
        board = self.board.metrics(reset=True)
        nan = float("nan")
        return loss, {
            "consistency/coverage(frac)": cov,
            "consistency/staleness_mean(steps)": float(peer.age_steps.numpy()[ok].mean()) if ok.any() else nan,
            "consistency/staleness_mean(s)": float(peer.age_s.numpy()[ok].mean()) if ok.any() else nan,
            "consistency/valid_pixels(frac)": float(n_valid) / mine[:, :1].numel(),
            "board/read_time(ms)": board.get(f"board/{self.PEER[0]}.{self.PEER[1]}/read_time(ms)", nan),
            "board/publish_time(ms)": board.get(f"board/{self.name}.{self.OUTPUT}/publish_time(ms)", nan),
        }

    def after_step(self, model, step: int) -> None:
        """Refresh sweep every ``board.refresh_every`` steps: a snapshot of the model re-predicts this rank's shard."""
        if self.board is None or not self.board.refresh_due(step):
            return
        was_training = model.training
        model.eval()

        def predict_ids(ids: torch.Tensor) -> torch.Tensor:
            rgb = torch.stack([self.mediator[int(i)]["rgb"] for i in ids])
            return self.predict(model, rgb)

        self.board.refresh(f"{self.name}.{self.OUTPUT}", predict_ids, step, self.job.mediator.batch_size)
        model.train(was_training)

    def staleness_report(self) -> dict:
        """Run-long coverage and staleness of the peer predictions this rank consumed (for results.json)."""
        steps = np.concatenate(self.ages_steps) if self.ages_steps else np.zeros(0)
        secs = np.concatenate(self.ages_s) if self.ages_s else np.zeros(0)
        edges_steps = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, np.inf]
        edges_s = [0, 0.1, 0.5, 1, 2, 5, 10, 30, 60, np.inf]
        pct = lambda a, q: float(np.percentile(a, q)) if a.size else float("nan")  # noqa: E731
        return {
            "coverage_mean(frac)": float(np.mean(self.coverage)) if self.coverage else float("nan"),
            "reads(samples)": int(sum(len(a) for a in self.ages_steps)),
            "staleness_p50(steps)": pct(steps, 50), "staleness_p90(steps)": pct(steps, 90),
            "staleness_max(steps)": float(steps.max()) if steps.size else float("nan"),
            "staleness_p50(s)": pct(secs, 50), "staleness_p90(s)": pct(secs, 90),
            "staleness_hist(steps)": {f"[{lo},{hi})": int(c) for lo, hi, c in
                                      zip(edges_steps[:-1], edges_steps[1:], np.histogram(steps, edges_steps)[0])},
            "staleness_hist(s)": {f"[{lo},{hi})": int(c) for lo, hi, c in
                                  zip(edges_s[:-1], edges_s[1:], np.histogram(secs, edges_s)[0])},
        }

    def close(self) -> None:
        # The board's state (finished / failed) is set by its owner, the train command, which knows which it is.
        self.dedicated.close()
        if self.mediator is not None:
            self.mediator.close()


class DepthTask(DenseTask):
    """Monocular depth: U-Net → sigmoid inverse depth in [1/MAX_DEPTH, 1/MIN_DEPTH] → depth (monodepth2's head).

    Supervised loss: mean |log d − log d*| over valid labelled pixels (scale-aware L1 in log space).
    Consistency: 1 − cos(normals from this depth, the normals group's stale normals), supp. eq. 18.
    """

    OUTPUT = "depth"
    PEER = ("normals", "normals")
    OUT_CHANNELS = 1

    @staticmethod
    def predict(model, rgb):
        disp = torch.sigmoid(model(rgb))
        return 1.0 / (1.0 / MAX_DEPTH + (1.0 / MIN_DEPTH - 1.0 / MAX_DEPTH) * disp)

    def supervised_loss(self, model, batch):
        depth = self.predict(model, batch["rgb"])
        gt, valid = batch["depth"], batch["valid"] & (batch["depth"] > MIN_DEPTH) & (batch["depth"] < MAX_DEPTH)
        n = valid.sum().clamp_min(1)
        loss = ((depth.log() - gt.clamp_min(MIN_DEPTH).log()).abs() * valid).sum() / n
        return loss, {}

    def consistency_terms(self, mine, peer, K, valid):
        return depth_normal_consistency(mine, peer, K, valid=valid)


class NormalsTask(DenseTask):
    """Surface normals: U-Net → 3 channels normalised to unit length (camera frame, facing the camera).

    Supervised loss: mean (1 − cos) to labelled normals where the label is non-zero.
    Consistency: 1 − cos(this task's normals, normals derived from the depth group's stale depth), supp. eq. 18.
    """

    OUTPUT = "normals"
    PEER = ("depth", "depth")
    OUT_CHANNELS = 3
    EXTRAS = ("normals",)

    @staticmethod
    def predict(model, rgb):
        return F.normalize(model(rgb), dim=1, eps=1e-6)

    def supervised_loss(self, model, batch):
        pred = self.predict(model, batch["rgb"])
        gt = batch["normals"]
        valid = (gt.norm(dim=1, keepdim=True) > 0.5) & batch["valid"]
        n = valid.sum().clamp_min(1)
        loss = ((1.0 - (pred * gt).sum(1, keepdim=True)) * valid).sum() / n
        return loss, {}

    def consistency_terms(self, mine, peer, K, valid):
        return depth_normal_consistency(peer, mine, K, valid=valid)

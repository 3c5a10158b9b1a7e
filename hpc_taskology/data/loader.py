"""Packed HDF5 → torch: a map-style Dataset opened lazily in each worker, and step-indexed batch loaders.

:class:`PackedDataset` validates the file and reads its length in ``__init__`` (opening and closing it: no handle
is kept), then opens its own read-only h5py handle on first access in each process — so it can be handed to
``DataLoader`` workers (fork or spawn) without sharing an HDF5 handle (h5py's multiprocessing advice).

Samples are dicts of tensors in CHW layout (see :meth:`PackedDataset.__getitem__`).  Resizing and cropping update
K with the half-pixel rule of intrinsics.py, so a 3-D point projected with the new K lands on the same scene point.

:class:`GroupBatchLoader` iterates ``(step, batch)`` for one rank of a task group: the ids of step s are
``schedule.batch(s)`` — a :class:`hpc_taskology.sampler.GroupShardedSampler` for a task's dedicated dataset, a
:class:`hpc_taskology.data.mediator.MediatorSchedule` for the mediator dataset — read by a torch ``DataLoader``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .intrinsics import crop_intrinsics, nearest_index, scale_intrinsics
from .schema import OPTIONAL, SchemaError, open_packed

MODES = ("resize", "resize_crop", "crop")
_CORE = ("rgb", "depth", "valid", "K", "cam_to_world", "pose_valid", "frame_id", "sequence", "timestamp")


class PackedDataset(torch.utils.data.Dataset):
    """Samples of one packed file, optionally resized/cropped to ``size`` = (H, W) pixels.

    Args:
        path: packed file (schema.py).
        extras: optional datasets to return besides the required ones (e.g. ``("normals", "segmentation")``);
            ``"all"`` = every optional dataset in the file.  Missing ones raise ``SchemaError`` naming the file.
        size: output (H, W); None or (0, 0) keeps the file's size.
        mode: ``"resize"`` scales to exactly ``size`` (aspect may change, fx and fy scale differently);
            ``"resize_crop"`` scales by max(H/h, W/w) keeping the aspect ratio, then crops; ``"crop"`` only crops.
        random_crop: crop at a position drawn from ``(seed, index)`` (the same crop every time a sample is read, so
            predictions stored by sample id stay pixel-aligned); False = centred crop.
        seed: seed of the crop positions.
        indices: rows of the file this dataset exposes (default all); ``index`` in a sample is the file row.
        rgb_uint8: return ``rgb``/``rgb_right`` as uint8 (3, H, W) 0..255 instead of float [0, 1] (a quarter of the
            bytes between DataLoader workers and the trainer; :class:`GroupBatchLoader` uses it and converts whole
            batches to float in the consuming process).  Resized colour is rounded back to 8 bits in this mode.

    Raises ``FileNotFoundError``/``SchemaError`` (file), ``ValueError`` (arguments, naming them).
    """

    def __init__(self, path: str | os.PathLike, *, extras: Sequence[str] | str = (),
                 size: tuple[int, int] | None = None, mode: str = "resize_crop", random_crop: bool = False, seed: int = 0,
                 indices: Sequence[int] | None = None, rgb_uint8: bool = False):
        self.path = Path(path)
        self.rgb_uint8 = bool(rgb_uint8)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if isinstance(extras, str) and extras != "all":
            extras = (extras,)
        unknown = set() if extras == "all" else set(extras) - set(OPTIONAL)
        if unknown:
            raise ValueError(f"extras: unknown dataset(s) {sorted(unknown)}; optional datasets are {sorted(OPTIONAL)}")
        with open_packed(self.path, require=() if extras == "all" else tuple(extras)) as f:
            n = f["rgb"].shape[0]
            self.file_height, self.file_width = f["rgb"].shape[1:3]
            present = tuple(k for k in OPTIONAL if k in f)
        self.extras = present if extras == "all" else tuple(extras)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(f"indices: must lie in [0, {n}) for {self.path}")
        if size is not None and tuple(size) == (0, 0):
            size = None  # the configs' "0 keeps the file's size"
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if size[0] < 1 or size[1] < 1:
                raise ValueError(f"size: expected positive (H, W), got {size}")
            if mode == "crop" and (size[0] > self.file_height or size[1] > self.file_width):
                raise ValueError(f"size {size} larger than the file's {self.file_height}x{self.file_width} "
                                 "with mode='crop'")
        self.size, self.mode, self.random_crop, self.seed = size, mode, bool(random_crop), int(seed)
        self._file = None
        self._pid = None
        self._meta: dict = {}
        self._datasets: dict = {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        state = dict(self.__dict__)
        # a handle never crosses a process boundary
        state["_file"], state["_pid"], state["_meta"], state["_datasets"] = None, None, {}, {}
        return state

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open_packed(self.path, require=self.extras)
            self._pid = os.getpid()
            # per-sample metadata (K, poses, ids, ...) is tiny: read it once per process instead of once per sample
            self._meta = {}
            self._datasets = {k: self._file[k] for k in _CORE + self.extras}  # name lookups once per process
            for k in _CORE + self.extras:
                ds = self._datasets[k]
                if ds.ndim <= 3 and ds.shape[1:3] != (self.file_height, self.file_width):
                    try:
                        self._meta[k] = ds[:]
                    except (OSError, ValueError) as e:
                        raise SchemaError(f"{self.path}: cannot read {k!r} (corrupt or truncated?): {e}") from None
        return self._file

    def _read(self, row: int) -> dict:
        self._handle()
        s = {}
        for k in _CORE + self.extras:
            if k in self._meta:
                continue
            try:
                s[k] = self._datasets[k][row]
            except (OSError, ValueError) as e:
                raise SchemaError(f"{self.path}: cannot read {k!r}[{row}] (corrupt chunk?): {e}") from None
        for k, v in self._meta.items():
            s[k] = v[row].decode() if isinstance(v[row], bytes) else v[row]
        return s

    def close(self) -> None:
        """Close this process's handle (reopened on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def geometry(self, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((resized H, W), (crop top, left)) applied to file row ``index``."""
        h0, w0 = self.file_height, self.file_width
        if self.size is None:
            return (h0, w0), (0, 0)
        H, W = self.size
        if self.mode == "resize":
            return (H, W), (0, 0)
        if self.mode == "crop":
            h1, w1 = h0, w0
        else:
            s = max(H / h0, W / w0)
            h1, w1 = max(H, round(h0 * s)), max(W, round(w0 * s))
        if self.random_crop:
            rng = np.random.default_rng((self.seed, int(index)))
            top, left = int(rng.integers(0, h1 - H + 1)), int(rng.integers(0, w1 - W + 1))
        else:
            top, left = (h1 - H) // 2, (w1 - W) // 2
        return (h1, w1), (top, left)

    def __getitem__(self, i: int) -> dict:
        """Sample ``i`` as tensors:

        * ``rgb`` float32 (3, H, W) in [0, 1] (uint8 0..255 with ``rgb_uint8``); ``depth`` float32 (1, H, W)
          metres, z-depth, 0 where not valid; ``valid`` bool (1, H, W); ``K`` float32 (3, 3) pixels for this resized/cropped image;
          ``cam_to_world`` float64 (4, 4) (world coordinates can be far from the origin: compose relative poses in
          float64, then cast), NaN if unknown; ``pose_valid`` bool ();
        * ``index`` int64 () = file row (the id the mediator schedule and the prediction board use),
          ``frame_id`` int64 (), ``timestamp`` float64 () seconds, ``sequence`` str;
        * extras: ``normals`` float32 (3, H, W) (camera frame, zero = unknown), ``segmentation`` int64 (1, H, W)
          (-1 = unlabelled), ``instance`` int64 (1, H, W), ``movable`` bool (1, H, W), ``object_motion`` float32
          (3, H, W) metres, ``rgb_right`` float32 (3, H, W), ``disparity`` float32 (1, H, W) px (scaled with the
          width), ``baseline`` float64 () metres.

        rgb is resampled bilinearly (half-pixel centres, antialiased when shrinking); every other map by nearest
        neighbour, so invalid depth never blends into valid depth.  Raises ``IndexError`` and ``SchemaError``
        (corrupt chunk, naming file, key and row).
        """
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples of {self.path}")
        row = int(self.indices[i])
        s = self._read(row)
        h0, w0 = self.file_height, self.file_width
        (h1, w1), (top, left) = self.geometry(row)
        H, W = self.size if self.size is not None else (h0, w0)
        if (h1, w1) == (h0, w0):  # no resampling: a crop is a view, no copy
            def nearest(a: np.ndarray) -> np.ndarray:
                return a[top:top + H, left:left + W]
        else:
            rows = nearest_index(h0, h1)[top:top + H]
            cols = nearest_index(w0, w1)[left:left + W]

            def nearest(a: np.ndarray) -> np.ndarray:
                return a[rows][:, cols]

        def colour(a: np.ndarray) -> torch.Tensor:
            src = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
            if (h1, w1) == (h0, w0):
                if self.rgb_uint8:
                    return src[:, top:top + H, left:left + W].contiguous()
                out = torch.empty((3, H, W), dtype=torch.float32)
                out.copy_(src[:, top:top + H, left:left + W])  # one pass: uint8 HWC -> float CHW
                return out.mul_(1.0 / 255.0)
            t = F.interpolate(src.float()[None], size=(h1, w1), mode="bilinear", align_corners=False,
                              antialias=h1 < h0 or w1 < w0)[0][:, top:top + H, left:left + W]
            if self.rgb_uint8:
                return t.round().clamp_(0, 255).to(torch.uint8).contiguous()
            return t.div(255.0).clamp_(0.0, 1.0).contiguous()

        K = crop_intrinsics(scale_intrinsics(s["K"], w1 / w0, h1 / h0), top, left)
        out = {
            "rgb": colour(s["rgb"]),
            "depth": torch.from_numpy(np.ascontiguousarray(nearest(s["depth"]), dtype=np.float32))[None],
            "valid": torch.from_numpy(np.ascontiguousarray(nearest(s["valid"]), dtype=bool))[None],
            "K": torch.from_numpy(K.astype(np.float32)),
            "cam_to_world": torch.from_numpy(np.asarray(s["cam_to_world"], dtype=np.float64)),
            "pose_valid": torch.tensor(bool(s["pose_valid"])),
            "index": torch.tensor(row, dtype=torch.int64),
            "frame_id": torch.tensor(int(s["frame_id"]), dtype=torch.int64),
            "timestamp": torch.tensor(float(s["timestamp"]), dtype=torch.float64),
            "sequence": s["sequence"],
        }
        for k in self.extras:
            v = s[k]
            if k == "rgb_right":
                out[k] = colour(v)
            elif k in ("normals", "object_motion"):
                out[k] = torch.from_numpy(np.ascontiguousarray(nearest(v), dtype=np.float32)).permute(2, 0, 1)
                out[k] = out[k].contiguous()
            elif k in ("segmentation", "instance"):
                out[k] = torch.from_numpy(np.ascontiguousarray(nearest(v)).astype(np.int64))[None]
            elif k == "movable":
                out[k] = torch.from_numpy(np.ascontiguousarray(nearest(v), dtype=bool))[None]
            elif k == "disparity":
                out[k] = torch.from_numpy((nearest(v) * np.float32(w1 / w0)).astype(np.float32))[None]
            elif k == "baseline":
                out[k] = torch.tensor(float(v), dtype=torch.float64)
        return out


class _StepBatches(torch.utils.data.Sampler):
    """``batch_sampler`` yielding ``schedule.batch(step)`` for step = start, start + 1, ... (``n_steps`` or forever)."""

    def __init__(self, schedule, start_step: int, n_steps: int | None):
        self.schedule, self.start, self.n_steps = schedule, int(start_step), n_steps

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while self.n_steps is None or step < self.start + self.n_steps:
            yield [int(i) for i in self.schedule.batch(step)]
            step += 1

    def __len__(self) -> int:
        if self.n_steps is None:
            raise TypeError("an endless step loader has no length; pass n_steps")
        return self.n_steps


class GroupBatchLoader:
    """``(step, batch)`` pairs for one rank of a task group, read with a torch ``DataLoader``.

    Args:
        dataset: a :class:`PackedDataset` (ids from the schedule index it).
        schedule: any object with ``batch(step) -> int ids`` — :class:`~hpc_taskology.sampler.GroupShardedSampler`
            (dedicated data, disjoint across group ranks) or :class:`~hpc_taskology.data.mediator.MediatorSchedule`.
        start_step: first step (resume from a checkpoint); n_steps: how many (None = endless).
        num_workers: DataLoader worker processes (each opens the file itself); prefetch_factor: batches per worker.

    ``batch`` is ``torch.utils.data.default_collate`` of the samples: tensors gain a leading B dimension,
    ``sequence`` becomes a list of str; ``rgb``/``rgb_right`` are float32 (B, 3, H, W) in [0, 1].  Colour travels
    from the workers as uint8 and is converted per batch here (``uint8_transport``; 4× fewer bytes through shared
    memory, which otherwise costs more than reading the packed file).  A dataset made with ``rgb_uint8=True`` keeps
    uint8 colour in the batches.
    """

    def __init__(self, dataset: PackedDataset, schedule, *, start_step: int = 0, n_steps: int | None = None,
                 num_workers: int = 0, prefetch_factor: int | None = None, pin_memory: bool = False,
                 uint8_transport: bool = True):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset, self.schedule, self.start_step, self.n_steps = dataset, schedule, int(start_step), n_steps
        self.uint8_transport = bool(uint8_transport) and not dataset.rgb_uint8
        if self.uint8_transport:
            dataset = copy.copy(dataset)  # the caller's dataset keeps returning float colour
            dataset.rgb_uint8 = True
            dataset._file, dataset._pid, dataset._meta, dataset._datasets = None, None, {}, {}  # own handle
        kw = {"prefetch_factor": prefetch_factor} if num_workers > 0 and prefetch_factor else {}
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=_StepBatches(schedule, start_step, n_steps), num_workers=num_workers,
            pin_memory=pin_memory, persistent_workers=False, **kw)

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        for k, batch in enumerate(self._loader):
            if self.uint8_transport:
                for key in ("rgb", "rgb_right"):
                    if key in batch:
                        batch[key] = batch[key].float().mul_(1.0 / 255.0)
            yield self.start_step + k, batch


def group_loader(dataset: PackedDataset, batch_size: int, group_rank: int, group_size: int, *, seed: int = 0,
                 start_step: int = 0, n_steps: int | None = None, num_workers: int = 0) -> GroupBatchLoader:
    """:class:`GroupBatchLoader` over a task's dedicated dataset, sharded by group rank with
    :class:`~hpc_taskology.sampler.GroupShardedSampler` (disjoint ids across the group's ranks within an epoch)."""
    from ..sampler import GroupShardedSampler

    sampler = GroupShardedSampler(len(dataset), batch_size, group_rank, group_size, seed=seed)
    return GroupBatchLoader(dataset, sampler, start_step=start_step, n_steps=n_steps, num_workers=num_workers)


def mediator_loader(dataset: PackedDataset, batch_size: int, group_rank: int, group_size: int, *, seed: int,
                    start_step: int = 0, n_steps: int | None = None, num_workers: int = 0) -> GroupBatchLoader:
    """:class:`GroupBatchLoader` over the mediator dataset with :class:`~hpc_taskology.data.mediator.MediatorSchedule`
    (the same global id order in every group; ``batch["index"]`` are the board's ids)."""
    from .mediator import MediatorSchedule

    schedule = MediatorSchedule(len(dataset), seed, batch_size, group_rank, group_size)
    return GroupBatchLoader(dataset, schedule, start_step=start_step, n_steps=n_steps, num_workers=num_workers)

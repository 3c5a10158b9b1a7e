"""Job configuration: a TOML job file parsed with :mod:`tomllib` into typed, validated dataclasses.

Follows torchtitan's ``config/configs.py``: one dataclass per section, a docstring per field, and ``__post_init__``
raising :class:`ConfigError` (a ``ValueError``) that names the bad field by its dotted path in the job file, e.g.
``tasks[1].optimizer.lr``.  Unknown keys are errors too: a typo must not silently fall back to a default.

A job file looks like ``jobs/depth_normals.toml``::

    [job]
    name = "depth_normals"
    backend = "horovod"            # or "torch" (torch.distributed, gloo subgroups)

    [[tasks]]
    name = "depth"
    ranks = 2
    [tasks.model]
    kind = "unet"
    [tasks.optimizer]
    name = "adam"
    lr = 1e-3
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("horovod", "torch")
OPTIMIZERS = ("adam", "adamw", "sgd")
BOARD_DTYPES = ("float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A job file field is missing, of the wrong type, or out of range; the message names the field."""


def _check(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {msg}")


@dataclass
class JobSection:
    """``[job]``: what the whole MPI job is called and how groups average gradients."""

    name: str
    """Run name; outputs go to ``<out_dir>/<name>/``."""
    backend: str = "horovod"
    """Gradient averaging inside a task group: ``horovod`` (process sets) or ``torch`` (torch.distributed gloo)."""
    seed: int = 0
    """Seed for weights, samplers and the mediator schedule; every group derives the same schedule from it."""
    steps: int = 100
    """Optimizer steps each task group trains for."""
    out_dir: str = "runs"
    """Directory holding one folder per run (TensorBoard logs, checkpoints, results.json)."""
    log_every: int = 10
    """Steps between metric logs (group-averaged, written by the group leader)."""
    checkpoint_every: int = 0
    """Steps between per-group checkpoints; 0 saves only at the end."""
    threads_per_rank: int = 0
    """torch intra-op threads per rank; 0 = cores / ranks on this node (at least 1), so ranks do not oversubscribe."""
    _path: str = field(default="job", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(bool(self.name) and "/" not in self.name, f"{p}.name", f"must be a non-empty name without '/', got {self.name!r}")
        _check(self.backend in BACKENDS, f"{p}.backend", f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        _check(self.steps >= 1, f"{p}.steps", f"must be >= 1, got {self.steps}")
        _check(self.log_every >= 1, f"{p}.log_every", f"must be >= 1, got {self.log_every}")
        _check(self.checkpoint_every >= 0, f"{p}.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        _check(self.threads_per_rank >= 0, f"{p}.threads_per_rank", f"must be >= 0, got {self.threads_per_rank}")


@dataclass
class ModelConfig:
    """``[tasks.model]``: which network the task trains."""

    kind: str
    """Registered model name (see :mod:`hpc_taskology.models`), e.g. ``unet`` or ``mlp``."""
    base_channels: int = 16
    """Width of the first encoder stage (channels double per stage)."""
    depth: int = 4
    """Encoder stages (each halves the resolution)."""
    in_channels: int = 3
    """Input channels (3 for RGB)."""
    out_channels: int = 1
    """Output channels (1 for depth, 3 for normals, C for segmentation logits)."""
    _path: str = field(default="tasks[].model", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(bool(self.kind), f"{p}.kind", "must name a model")
        for name in ("base_channels", "depth", "in_channels", "out_channels"):
            _check(getattr(self, name) >= 1, f"{p}.{name}", f"must be >= 1, got {getattr(self, name)}")


@dataclass
class OptimizerConfig:
    """``[tasks.optimizer]``: each task keeps its own optimizer and hyperparameters (Taskology §3.3)."""

    name: str = "adam"
    """``adam``, ``adamw`` or ``sgd``."""
    lr: float = 1e-3
    """Learning rate (per step, not scaled by the group size)."""
    weight_decay: float = 0.0
    """L2 penalty (decoupled for ``adamw``)."""
    momentum: float = 0.9
    """SGD momentum (ignored by Adam)."""
    _path: str = field(default="tasks[].optimizer", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.name in OPTIMIZERS, f"{p}.name", f"unknown optimizer {self.name!r}; choose one of {OPTIMIZERS}")
        _check(self.lr > 0, f"{p}.lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(0 <= self.momentum < 1, f"{p}.momentum", f"must be in [0, 1), got {self.momentum}")


@dataclass
class DataConfig:
    """``[tasks.data]``: the task's dedicated (labelled) dataset."""

    path: str = ""
    """Packed HDF5 file (datasets/README.md schema); empty = the task's built-in synthetic data (runtime tests)."""
    batch_size: int = 8
    """Samples per rank per step."""
    height: int = 0
    """Resize/crop height in pixels fed to the network; 0 keeps the file's."""
    width: int = 0
    """Resize/crop width in pixels; 0 keeps the file's."""
    _path: str = field(default="tasks[].data", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.batch_size >= 1, f"{p}.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.height >= 0 and self.width >= 0, f"{p}.height/width", f"must be >= 0, got {self.height}x{self.width}")


@dataclass
class ConsistencyConfig:
    """``[tasks.consistency]``: weight of this task's consistency term on the mediator dataset."""

    weight: float = 0.0
    """λ multiplying the consistency loss; 0 trains the task alone (the paper's baseline)."""
    every: int = 1
    """Take a mediator step every this many dedicated steps (the paper alternates, i.e. 1)."""
    _path: str = field(default="tasks[].consistency", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.weight >= 0, f"{p}.weight", f"must be >= 0, got {self.weight}")
        _check(self.every >= 1, f"{p}.every", f"must be >= 1, got {self.every}")


@dataclass
class TaskConfig:
    """``[[tasks]]``: one task group — its ranks, network, data and optimizer."""

    name: str
    """Task name, unique in the job (``depth``, ``normals``, ``motion``, ``segmentation``, ...)."""
    ranks: int
    """MPI ranks in this task's group; the tasks' ranks must add up to the world size."""
    model: ModelConfig
    kind: str = ""
    """Which task implementation trains this group (see :mod:`hpc_taskology.tasks`); empty = the task's name."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    _path: str = field(default="tasks[]", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(bool(self.name) and self.name.isidentifier(), f"{p}.name", f"must be an identifier, got {self.name!r}")
        _check(self.ranks >= 1, f"{p}.ranks", f"must be >= 1, got {self.ranks}")
        if not self.kind:
            self.kind = self.name


@dataclass
class BoardConfig:
    """``[board]``: the prediction board (stale peer predictions over one-sided MPI windows)."""

    dtype: str = "float16"
    """Storage dtype of predictions in the windows: ``float32``, ``float16`` or ``bfloat16``."""
    max_staleness: int = 2000
    """Entries older than this many producer steps are masked out; 0 waits for fresh entries (synchronous baseline)."""
    refresh_every: int = 0
    """R of the paper's Fig. 5: every R steps a model snapshot re-predicts the whole mediator set; 0 = write-through only."""
    max_window_bytes: int = 4 << 30
    """Largest window one rank may allocate; larger boards fail at start-up with the figure and the ways out."""
    verify_reads: bool = True
    """Check every entry read against the crc32 in its header (torn or corrupt entries are retried, then masked and
    counted as ``torn_reads``); False checks only the header/tail write ids, which is free."""
    wait_timeout_s: float = 600.0
    """With ``max_staleness = 0``, how long a read waits for fresh entries before raising (seconds)."""
    _path: str = field(default="board", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.dtype in BOARD_DTYPES, f"{p}.dtype", f"unknown dtype {self.dtype!r}; choose one of {BOARD_DTYPES}")
        _check(self.max_staleness >= 0, f"{p}.max_staleness", f"must be >= 0, got {self.max_staleness}")
        _check(self.refresh_every >= 0, f"{p}.refresh_every", f"must be >= 0, got {self.refresh_every}")
        _check(self.max_window_bytes > 0, f"{p}.max_window_bytes", f"must be > 0, got {self.max_window_bytes}")
        _check(self.wait_timeout_s > 0, f"{p}.wait_timeout_s", f"must be > 0 seconds, got {self.wait_timeout_s}")


@dataclass
class MediatorConfig:
    """``[mediator]``: the shared unlabelled dataset on which tasks meet through consistency losses."""

    path: str = ""
    """Packed HDF5 file; empty = no mediator (tasks train alone)."""
    batch_size: int = 4
    """Mediator samples per rank per mediator step."""
    height: int = 0
    """Resize height in pixels; 0 keeps the file's."""
    width: int = 0
    """Resize width in pixels; 0 keeps the file's."""
    _path: str = field(default="mediator", repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self._path
        _check(self.batch_size >= 1, f"{p}.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.height >= 0 and self.width >= 0, f"{p}.height/width", f"must be >= 0, got {self.height}x{self.width}")
        if self.path:
            _check(self.height > 0 and self.width > 0, f"{p}.height/width",
                   "must be set (> 0) with a mediator path: they fix the shape of the board's entries")


@dataclass
class JobConfig:
    """The whole job file: ``[job]``, ``[[tasks]]``, ``[board]``, ``[mediator]``, plus free-form ``[extra]``."""

    job: JobSection
    tasks: list[TaskConfig]
    board: BoardConfig = field(default_factory=BoardConfig)
    mediator: MediatorConfig = field(default_factory=MediatorConfig)
    extra: dict = field(default_factory=dict)
    """Job-specific settings read by the job's own code (e.g. evaluation files); kept as parsed TOML."""
    source: str = field(default="<dict>", compare=False)
    """File the config came from, for error messages."""

    def __post_init__(self) -> None:
        _check(len(self.tasks) >= 1, "tasks", "the job needs at least one [[tasks]] entry")
        seen: dict[str, int] = {}
        for i, t in enumerate(self.tasks):
            if t.name in seen:
                raise ConfigError(f"tasks[{i}].name: task name {t.name!r} repeats tasks[{seen[t.name]}].name")
            seen[t.name] = i

    @property
    def total_ranks(self) -> int:
        """Sum of every task's ``ranks``: the world size the job needs."""
        return sum(t.ranks for t in self.tasks)

    def task(self, name: str) -> TaskConfig:
        """The task called ``name``; raises ``KeyError`` listing the job's tasks."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task {name!r} in {self.source}; tasks are {[t.name for t in self.tasks]}")

    def run_dir(self) -> Path:
        """``<job.out_dir>/<job.name>``: where this run's logs, checkpoints and results go."""
        return Path(self.job.out_dir) / self.job.name


# ----------------------------------------------------------------------------------------------------------------
# Parsing: TOML dict -> dataclasses, with the dotted path of every field for error messages.


def build_dataclass(cls, data: object, path: str):
    """Instantiate dataclass ``cls`` from a TOML table, checking keys and types; errors name ``path.field``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_") and f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        fpath = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{fpath}: required field is missing")
            continue
        kwargs[name] = _convert(hints[name], data[name], fpath)
    if "_path" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["_path"] = path
    return cls(**kwargs)


def _convert(hint, value, path: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, path)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {type(value).__name__}")
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported field type {hint!r}")  # a bug in this module, not in the job file


def config_from_dict(data: dict, source: str = "<dict>") -> JobConfig:
    """Build a :class:`JobConfig` from a parsed TOML document.

    Raises :class:`ConfigError` naming the first bad field (dotted path, e.g. ``tasks[0].optimizer.lr``).
    """
    try:
        cfg = build_dataclass(JobConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    cfg.source = source
    return cfg


def apply_overrides(data: dict, overrides: list[str], source: str = "<cli>") -> dict:
    """Apply command-line overrides ``KEY=VALUE`` to a parsed job file, in place; returns ``data``.

    KEY is a dotted path; inside ``tasks`` the next part names a task, e.g. ``tasks.depth.ranks=1``,
    ``tasks.normals.optimizer.lr=3e-4``, ``job.steps=50``, ``board.max_staleness=0``.  VALUE is read as a TOML
    value (``1``, ``0.5``, ``true``, ``"text"``) and taken as a bare string if it is not one.  Types and ranges are
    then validated like the file's own values.  Raises :class:`ConfigError` naming the override for a malformed
    one or an unknown task.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        parts, node = key.split("."), data
        if parts[0] == "tasks":
            if len(parts) < 3:
                raise ConfigError(f"{source}: override {item!r}: use tasks.<task name>.<field>=VALUE")
            match = [t for t in data.get("tasks", []) if isinstance(t, dict) and t.get("name") == parts[1]]
            if not match:
                raise ConfigError(f"{source}: override {item!r}: no task named {parts[1]!r}")
            node, parts = match[0], parts[2:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {item!r}: {part!r} is not a table")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> JobConfig:
    """Read and validate a TOML job file, after applying ``overrides`` (see :func:`apply_overrides`).

    Raises ``FileNotFoundError`` if the file is missing, :class:`ConfigError` for TOML syntax errors and bad fields
    (the message starts with the file name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"job file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    apply_overrides(data, list(overrides), source=str(path))
    return config_from_dict(data, source=str(path))

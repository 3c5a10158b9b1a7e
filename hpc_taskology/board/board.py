"""PredictionBoard: every task group's latest predictions on the mediator dataset, in one-sided MPI windows.

Taskology (Lu et al., CVPR 2021, §3.3 and §4.4) trains each task against its peers' *stale* predictions; the paper
queried forward-pass servers over RPC.  Here each group writes its predictions into MPI windows and any rank of
another group reads them with passive-target RMA, so a read needs nothing from the producer's CPU and the traffic is
predictions, not weights.

Layout
    For every (task, output) — key ``"task.output"``, e.g. ``"depth.depth"`` of shape (1, H, W) — a table with one
    entry per mediator sample id ``0 .. n_samples-1``, sharded round-robin over the producing group's ranks (id ``i``
    on group rank ``i % G``, slot ``i // G``; :mod:`.layout`).  Each table is one ``MPI.Win.Allocate`` on a duplicate
    of the world communicator (so it works across nodes); ranks outside the producing group allocate 0 bytes.
    Entries are header + payload + tail (:mod:`.codec`).  One more small window, the *header window*, holds each
    rank's state record (running / finished / failed, step, heartbeat time).

Why no torn reads (MPI-3.1 §11.5.3, §11.7)
    A writer puts a whole entry (header, payload, tail in one ``Put``) inside an ``MPI.LOCK_EXCLUSIVE`` epoch on the
    owning rank; readers ``Get`` inside ``MPI.LOCK_SHARED`` epochs.  An exclusive lock is granted only while no other
    process holds any lock on that target of that window, and ``Unlock`` completes the epoch's operations at the
    target, so a Get never overlaps a Put to the same memory: each read returns exactly one write.  (Without locks,
    conflicting Put/Get in the same period are erroneous in MPI's separate memory model and give undefined values in
    the unified one, which is why a seqlock over plain Get/Put would rely on behaviour MPI does not define.)  The
    seq/tail pair and crc32 in every entry verify this on each read (:meth:`EntryCodec.intact`); a read that failed
    the check would be retried, then masked and counted as ``torn_reads`` — the stress test requires 0.

Passive target
    Nothing is asked of the owner: with osc/sm (one node) locks are atomics in shared memory and Get/Put are
    memcpy by the origin; with osc/rdma across nodes they are NIC atomics and RDMA.  A producer busy computing (or
    asleep) does not delay readers; see ``hpc_taskology/board/README.md`` for the OpenMPI settings.

Staleness and policy: :mod:`.policy`.  ``max_staleness == 0`` makes :meth:`PredictionBoard.read` wait for entries
at least as new as the reader's step (the synchronous baseline of Fig. 5), unless the producer finished or failed.
"""

from __future__ import annotations

import atexit
import time
import weakref
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from mpi4py import MPI

from .codec import EntryCodec
from .errors import BoardCapacityError, BoardError, BoardTimeoutError
from .layout import owner_of, shard_ids, shard_len, slot_of
from .policy import (ReadStats, WriteStats, age_seconds, age_steps, capacity_plan, check_capacity, fmt_bytes,
                     usable_mask)
from .window import RmaWindow

STATES = {"running": 1, "finished": 2, "failed": 3}
_STATE_NAMES = {v: k for k, v in STATES.items()}
_STATE_DTYPE = np.dtype([("state", "<i8"), ("step", "<i8"), ("heartbeat", "<f8"), ("closing", "<i8")])
_READ_RETRIES = 3
CLOSE_GRACE_S = 30.0
"""How long :meth:`PredictionBoard.close` waits for a rank marked failed that has not entered close, then raises."""
# Writers take LOCK_EXCLUSIVE.  The stress test's negative control sets this False (writers then take LOCK_SHARED,
# legal MPI but without mutual exclusion) to show that the torn-read checks do catch overlapping writes.
_WRITE_LOCK_EXCLUSIVE = True


@dataclass
class PeerPredictions:
    """A peer's predictions for a batch of mediator samples, as returned by :meth:`PredictionBoard.read`.

    Attributes:
        values: float32 (B, *shape), the stored predictions (rounded to ``board.dtype``); zeros where not usable.
        usable: bool (B,): written, intact, finite and at most ``max_staleness`` steps old; use it as the sample
            mask of the consistency term.
        step: int64 (B,): producer's training step of each entry; -1 = never written.
        age_steps: int64 (B,): ``max(0, now_step - step)``; -1 = never written.
        age_s: float64 (B,): wall-clock age in seconds (writer's ``time.time()`` vs reader's); -1 = never written.
    """

    values: torch.Tensor
    usable: torch.Tensor
    step: torch.Tensor
    age_steps: torch.Tensor
    age_s: torch.Tensor


class PeerState(NamedTuple):
    """A task group's state from the header window (:meth:`PredictionBoard.peer_state`).

    ``state``: ``"failed"`` if any rank failed, else ``"running"`` if any rank runs, else ``"finished"``;
    ``step``: the largest step any rank of the group reported (-1 before the first); ``heartbeat_time``: the latest
    heartbeat of any rank, seconds since the epoch (``time.time()``).
    """

    state: str
    step: int
    heartbeat_time: float


@dataclass
class _Table:
    key: str
    task: str
    output: str
    ranks: list[int]  # world ranks of the producing group, in group-rank order
    codec: EntryCodec
    win: RmaWindow
    reads: ReadStats
    writes: WriteStats

    @property
    def group_size(self) -> int:
        return len(self.ranks)


class PredictionBoard:
    """Peers' latest predictions on the mediator set, in RMA windows (collective constructor and :meth:`close`).

    Args:
        topo: a :class:`~hpc_taskology.topology.Topology` or :class:`~hpc_taskology.board.layout.GroupLayout`:
            uses ``world``, ``task``, ``world_rank``, ``group_rank``, ``group_size`` and ``ranks_of(task)``.
        n_samples: number of mediator samples; ids are ``0 .. n_samples-1``.
        outputs: ``{task: {output: shape}}`` for every producing task, e.g.
            ``{"depth": {"depth": (1, H, W)}, "normals": {"normals": (3, H, W)}, "motion": {"pose": (6,)}}``.
        cfg: :class:`~hpc_taskology.config.BoardConfig` (dtype, max_staleness, refresh_every, max_window_bytes,
            verify_reads, wait_timeout_s).

    Every rank of the world must call it with the same arguments (checked: :class:`BoardError` on all ranks
    otherwise).  Raises :class:`BoardCapacityError` on all ranks, before any allocation, if a shard would exceed
    ``cfg.max_window_bytes``; ``BoardError`` for an unknown task or a bad output name/shape.

    Use as a context manager (``with PredictionBoard(...) as board:``) or call :meth:`close` on every rank.
    """

    def __init__(self, topo, n_samples: int, outputs: dict[str, dict[str, tuple[int, ...]]], cfg):
        self.cfg = cfg
        self.task = topo.task
        self.group_rank = topo.group_rank
        self._closed = True  # until the windows exist
        self.comm = topo.world.Dup()
        self.rank = self.comm.rank
        # validate locally, then agree: every rank raises if any rank's arguments are bad or differ (no rank may
        # leave for the collective allocations while another raised)
        try:
            if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
                raise BoardError(f"PredictionBoard: n_samples must be an integer >= 1 (mediator samples), got "
                                 f"{n_samples!r}")
            self.n_samples = int(n_samples)
            specs = self._check_outputs(topo, outputs)
            error = None
        except BoardError as e:
            specs, error = {}, str(e)
        self._check_same_args(specs, error)
        plan = capacity_plan(self.n_samples, {k: (t, c.shape, len(r), c.payload_bytes, c.nbytes)
                                              for k, (t, o, r, c) in specs.items()}, cfg.dtype)
        try:
            check_capacity(plan, cfg.max_window_bytes)
        except BoardCapacityError:
            self.comm.Free()
            raise
        self._seq = ((self.rank + 1) << 40)
        self._step = -1
        self._state = "running"
        self._closing = 0
        self._windows: list[RmaWindow] = []
        try:
            # fixed order: header window first, then tables sorted by key; close() frees in reverse
            self._header = self._allocate(_STATE_DTYPE.itemsize, "header", plan=None)
            self.tables: dict[str, _Table] = {}
            for k in sorted(specs):
                t, o, ranks, codec = specs[k]
                mine = shard_len(self.n_samples, len(ranks), ranks.index(self.rank)) if self.rank in ranks else 0
                win = self._allocate(mine * codec.nbytes, k, plan=next(p for p in plan if p["key"] == k))
                self.tables[k] = _Table(k, t, o, ranks, codec, win, ReadStats(), WriteStats())
                with win.locked(self.rank, exclusive=True, nocheck=True):  # nobody else touches it before the barrier
                    self._init_entries(win.local().view(codec.np_dtype))
        except BaseException:
            for w in reversed(self._windows):
                w.free()
            self.comm.Free()
            raise
        self._closed = False
        self._write_state(nocheck=True)
        self.comm.Barrier()
        ref = weakref.ref(self)
        self._atexit = lambda: (b := ref()) is not None and b._at_exit()
        atexit.register(self._atexit)

    # ---- construction helpers ---------------------------------------------------------------------------------
    def _check_outputs(self, topo, outputs) -> dict[str, tuple[str, str, list[int], EntryCodec]]:
        if not isinstance(outputs, dict) or not outputs:
            raise BoardError(f"PredictionBoard: outputs must be a non-empty {{task: {{output: shape}}}} dict, got {outputs!r}")
        specs = {}
        for task, outs in outputs.items():
            try:
                ranks = list(topo.ranks_of(task))
            except KeyError as e:
                raise BoardError(f"PredictionBoard: outputs[{task!r}]: {e.args[0]}") from None
            if not isinstance(outs, dict) or not outs:
                raise BoardError(f"PredictionBoard: outputs[{task!r}] must be a non-empty {{output: shape}} dict, got {outs!r}")
            for name, shape in outs.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise BoardError(f"PredictionBoard: outputs[{task!r}]: output name must be an identifier, got {name!r}")
                try:
                    shape = tuple(int(d) for d in shape)
                    codec = EntryCodec(shape, self.cfg.dtype)
                except (TypeError, ValueError) as e:
                    raise BoardError(f"PredictionBoard: outputs[{task!r}][{name!r}]: {e}") from None
                specs[f"{task}.{name}"] = (task, name, ranks, codec)
        return specs

    def _check_same_args(self, specs, error: str | None) -> None:
        c = self.cfg
        sig = None if error else repr((self.n_samples, sorted((k, v[2], v[3].shape) for k, v in specs.items()),
                                       c.dtype, c.max_staleness, c.max_window_bytes))
        gathered = self.comm.allgather((error, sig))
        errors = [(r, e) for r, (e, _) in enumerate(gathered) if e]
        sigs = [s_ for _, s_ in gathered]
        if errors or any(s_ != sigs[0] for s_ in sigs):
            self.comm.Free()
            if error:
                raise BoardError(error)
            if errors:
                raise BoardError(f"PredictionBoard: world rank {errors[0][0]} rejected its arguments: {errors[0][1]}")
            bad = [r for r, s_ in enumerate(sigs) if s_ != sigs[0]]
            raise BoardError(f"PredictionBoard: ranks {bad} were called with other arguments than rank 0 "
                             f"(n_samples, outputs, board config must agree): rank 0 has {sigs[0]}, rank {bad[0]} "
                             f"has {sigs[bad[0]]}")

    def _allocate(self, nbytes: int, name: str, plan: dict | None) -> RmaWindow:
        try:
            w = RmaWindow(self.comm, nbytes, name)
        except MPI.Exception as e:
            extra = ""
            if plan is not None:
                extra = (f" ({plan['ids']} ids x {plan['entry_bytes']} bytes/entry in the largest shard); ways out: "
                         f'board.dtype = "float16", a lower mediator resolution, more ranks in group '
                         f"{plan['task']!r}, or free memory on the node (/dev/shm for osc/sm)")
            raise BoardCapacityError(f"prediction board: MPI could not allocate the window of {name} on world rank "
                                     f"{self.rank}: {fmt_bytes(nbytes)}{extra}. MPI said: {e}") from e
        self._windows.append(w)
        return w

    @staticmethod
    def _init_entries(view: np.ndarray) -> None:
        view["seq"] = 0
        view["step"] = -1
        view["time"] = 0.0
        view["crc"] = 0
        view["nbytes"] = 0
        view["payload"] = 0
        view["tail"] = 0

    # ---- argument checks ---------------------------------------------------------------------------------------
    def _live(self, where: str) -> None:
        if self._closed:
            raise BoardError(f"{where}: the prediction board was closed")

    def _table(self, key: str, where: str) -> _Table:
        self._live(where)
        if key not in self.tables:
            raise BoardError(f"{where}: no board output {key!r}; outputs are {sorted(self.tables)}")
        return self.tables[key]

    def _ids(self, ids, where: str) -> np.ndarray:
        a = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise ValueError(f"{where}: ids must be a 1-D integer sequence of mediator sample ids (B,), got shape "
                             f"{a.shape} dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= self.n_samples):
            raise ValueError(f"{where}: ids must lie in [0, {self.n_samples}) (mediator samples), got min {a.min()} "
                             f"max {a.max()}")
        return a

    # ---- writes ------------------------------------------------------------------------------------------------
    def publish(self, task_output: str, ids, preds: torch.Tensor, step: int) -> None:
        """Write this rank's predictions ``preds`` (B, *shape) for mediator sample ``ids`` (B,) at training ``step``.

        Called by ranks of the producing group (write-through, every mediator step).  Entries go to their owners'
        shards (possibly other ranks of the group) under an exclusive lock per owner; the owners do nothing.  Values
        are rounded to ``board.dtype``; a CUDA tensor is copied to the CPU first (which synchronises its stream).
        If an id repeats in ``ids``, its last prediction wins.  Also updates this rank's step and heartbeat.

        Raises:
            BoardError: unknown ``task_output``, closed board, or this rank is not in the producing group.
            ValueError / TypeError: ``ids`` not 1-D integers in range, ``preds`` not a float tensor of shape
                (B, *shape) (the message gives expected vs actual).
        """
        t0 = time.perf_counter()
        where = f"publish({task_output!r})"
        tb = self._table(task_output, where)
        if self.rank not in tb.ranks:
            raise BoardError(f"{where}: world rank {self.rank} is in group {self.task!r}; only the ranks "
                             f"{tb.ranks} of group {tb.task!r} publish {task_output}")
        ids = self._ids(ids, where)
        if not isinstance(preds, torch.Tensor) or not preds.is_floating_point():
            raise TypeError(f"{where}: preds must be a floating-point torch.Tensor, got "
                            f"{getattr(preds, 'dtype', type(preds).__name__)}")
        want = (len(ids), *tb.codec.shape)
        if tuple(preds.shape) != want:
            raise ValueError(f"{where}: preds: expected shape (B, *shape) = {want} for {len(ids)} ids, got "
                             f"{tuple(preds.shape)}")
        if len(ids) == 0:
            return
        preds = preds.detach().to("cpu")
        _, first_rev = np.unique(ids[::-1], return_index=True)
        if len(first_rev) < len(ids):  # duplicate ids: conflicting Puts in one epoch are undefined, keep the last
            keep = np.sort(len(ids) - 1 - first_rev)
            ids, preds = ids[keep], preds[torch.from_numpy(keep)]
        seqs = self._seq + np.arange(1, len(ids) + 1, dtype=np.int64)
        self._seq += len(ids)
        entries = tb.codec.encode(preds, int(step), time.time(), seqs)
        self._write(tb, ids, entries)
        self._step = max(self._step, int(step))
        self._write_state()
        tb.writes.publishes += 1
        tb.writes.entries += len(ids)
        tb.writes.publish_s.append(time.perf_counter() - t0)

    def _write(self, tb: _Table, ids: np.ndarray, entries: np.ndarray) -> None:
        rows = entries.view(np.uint8).reshape(len(entries), tb.codec.nbytes)
        owners, slots = owner_of(ids, tb.group_size), slot_of(ids, tb.group_size)
        for g in np.unique(owners):
            rank = tb.ranks[g]
            with tb.win.locked(rank, exclusive=_WRITE_LOCK_EXCLUSIVE):
                for i in np.flatnonzero(owners == g):
                    tb.win.put(rows[i], rank, int(slots[i]) * tb.codec.nbytes)

    def refresh_due(self, step: int) -> bool:
        """True when ``board.refresh_every`` = R > 0 and ``step`` is a multiple of R."""
        r = self.cfg.refresh_every
        return r > 0 and step % r == 0

    def refresh(self, task_output: str, predict_fn: Callable[[torch.Tensor], torch.Tensor], step: int,
                batch_size: int, force: bool = False) -> int:
        """Refresh sweep: re-predict this rank's shard of the mediator set and write it, every R steps.

        Taskology Fig. 5's staleness knob: with R = ``board.refresh_every`` every entry is at most about R steps
        old even for samples the write-through has not visited.  Does nothing (returns 0) unless
        :meth:`refresh_due` (``step`` % R == 0, R > 0) or ``force``.  Call it between training steps on every rank
        of the producing group; each rank predicts only the ids it owns (``id % G == group_rank``), so all writes
        are local.

        Args:
            predict_fn: ids int64 (b,) -> predictions (b, *shape) (the model snapshot in eval mode; called under
                ``torch.no_grad()``).
            step: the model's training step, stored as the entries' version.
            batch_size: ids per ``predict_fn`` call (>= 1).

        Returns:
            Number of entries written.  Raises as :meth:`publish`, and ``ValueError`` for ``batch_size < 1``.
        """
        where = f"refresh({task_output!r})"
        tb = self._table(task_output, where)
        if batch_size < 1:
            raise ValueError(f"{where}: batch_size must be >= 1, got {batch_size}")
        if not (force or self.refresh_due(step)):
            return 0
        if self.rank not in tb.ranks:
            raise BoardError(f"{where}: world rank {self.rank} is not in the producing group {tb.task!r} {tb.ranks}")
        t0 = time.perf_counter()
        ids = shard_ids(self.n_samples, tb.group_size, tb.ranks.index(self.rank))
        with torch.no_grad():
            for s in range(0, len(ids), batch_size):
                chunk = ids[s:s + batch_size]
                self.publish(task_output, chunk, predict_fn(torch.from_numpy(chunk)), step)
        tb.writes.refresh_entries += len(ids)
        tb.writes.refresh_s += time.perf_counter() - t0
        return len(ids)

    # ---- reads -------------------------------------------------------------------------------------------------
    def _fetch(self, tb: _Table, ids: np.ndarray) -> np.ndarray:
        """Entries (B,) for ``ids``: one shared-lock epoch per owner, one Get per entry."""
        out = np.empty(len(ids), dtype=tb.codec.np_dtype)
        rows = out.view(np.uint8).reshape(len(ids), tb.codec.nbytes)
        owners, slots = owner_of(ids, tb.group_size), slot_of(ids, tb.group_size)
        for g in np.unique(owners):
            rank = tb.ranks[g]
            with tb.win.locked(rank, exclusive=False):
                for i in np.flatnonzero(owners == g):
                    tb.win.get(rows[i], rank, int(slots[i]) * tb.codec.nbytes)
        return out

    def _fetch_intact(self, tb: _Table, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Entries, intact mask and number of torn entries seen (each retried up to 3 times)."""
        out = self._fetch(tb, ids)
        ok = tb.codec.intact(out, self.cfg.verify_reads)
        torn = int((~ok).sum())
        for _ in range(_READ_RETRIES):
            if ok.all():
                break
            bad = np.flatnonzero(~ok)
            out[bad] = self._fetch(tb, ids[bad])
            ok[bad] = tb.codec.intact(out[bad], self.cfg.verify_reads)
            torn += int((~ok[bad]).sum())
        return out, ok, torn

    def read(self, task: str, output: str, ids, now_step: int, max_staleness: int | None = None) -> PeerPredictions:
        """Peer predictions of ``task``'s ``output`` for mediator sample ``ids`` (B,), as seen at the reader's ``now_step``.

        Passive target: the producer's ranks make no call.  Entries never written, torn (after retries), holding
        NaN/Inf, or older than ``max_staleness`` steps (default ``board.max_staleness``) come back with
        ``usable = False`` and zero values.  With ``max_staleness == 0`` the call waits (polling with sleeps of
        0.5-20 ms) until every entry has ``step >= now_step`` — the synchronous baseline — unless the producing
        group is finished or failed (then the stale entries come back unusable).  Records coverage and staleness
        (see :meth:`metrics`).

        Returns:
            :class:`PeerPredictions` (values float32 (B, *shape), usable bool (B,), step/age_steps int64 (B,),
            age_s float64 (B,)).

        Raises:
            BoardError: unknown (task, output) or closed board.
            ValueError: ids not 1-D integers in [0, n_samples), or ``max_staleness < 0``.
            BoardTimeoutError: synchronous read waited ``board.wait_timeout_s`` seconds; names task, output, ids.
        """
        t0 = time.perf_counter()
        key = f"{task}.{output}"
        where = f"read({task!r}, {output!r})"
        tb = self._table(key, where)
        ids = self._ids(ids, where)
        ms = self.cfg.max_staleness if max_staleness is None else int(max_staleness)
        if ms < 0:
            raise ValueError(f"{where}: max_staleness must be >= 0, got {ms}")
        out, intact, torn = self._fetch_intact(tb, ids)
        ages = age_steps(now_step, out["step"])
        usable = usable_mask(ages, ms, intact)
        waited = 0.0
        if ms == 0 and not usable.all():
            out, intact, usable, t_more, waited = self._wait_fresh(tb, ids, now_step, out, intact, usable, t0)
            torn += t_more
            ages = age_steps(now_step, out["step"])
        values = tb.codec.decode(out)
        finite = np.isfinite(values.reshape(len(ids), tb.codec.numel)).all(axis=1)
        written = ages >= 0
        usable &= finite
        values[~usable] = 0.0
        ages_s = age_seconds(time.time(), out["time"], out["step"])
        tb.reads.add(ages, ages_s, usable, ms, torn, int((~finite & written).sum()), time.perf_counter() - t0, waited)
        return PeerPredictions(values=torch.from_numpy(values), usable=torch.from_numpy(usable),
                               step=torch.from_numpy(out["step"].copy()), age_steps=torch.from_numpy(ages),
                               age_s=torch.from_numpy(ages_s))

    def _wait_fresh(self, tb, ids, now_step, out, intact, usable, t0):
        """Synchronous mode: re-read the entries older than ``now_step`` until fresh, producer done, or timeout."""
        tw = time.perf_counter()
        deadline = t0 + self.cfg.wait_timeout_s
        sleep, torn = 0.0005, 0
        while not usable.all():
            st = self.peer_state(tb.task)
            done = st.state != "running"
            if not done and time.perf_counter() > deadline:
                bad = np.flatnonzero(~usable)
                raise BoardTimeoutError(
                    f"read({tb.task!r}, {tb.output!r}) with max_staleness = 0 waited {self.cfg.wait_timeout_s:g} s "
                    f"(board.wait_timeout_s) for step >= {now_step} on ids {ids[bad][:16].tolist()}"
                    f"{' ...' if len(bad) > 16 else ''} (their steps {out['step'][bad][:16].tolist()}); group "
                    f"{tb.task!r} is {st.state} at step {st.step}, last heartbeat {time.time() - st.heartbeat_time:.1f} "
                    f"s ago")
            if not done:
                time.sleep(sleep)
                sleep = min(2 * sleep, 0.02)
            bad = np.flatnonzero(~usable)  # one last read after the producer is done: it may have just written
            again, ok, t = self._fetch_intact(tb, ids[bad])
            out[bad], intact[bad], torn = again, ok, torn + t
            usable = usable_mask(age_steps(now_step, out["step"]), 0, intact)
            if done:
                break
        return out, intact, usable, torn, time.perf_counter() - tw

    # ---- header window: group states ---------------------------------------------------------------------------
    def _write_state(self, nocheck: bool = False) -> None:
        rec = np.zeros(1, _STATE_DTYPE)
        rec["state"], rec["step"], rec["heartbeat"] = STATES[self._state], self._step, time.time()
        rec["closing"] = self._closing
        with self._header.locked(self.rank, exclusive=True, nocheck=nocheck):
            self._header.put(rec.view(np.uint8), self.rank, 0)

    def set_state(self, state: str, step: int | None = None) -> None:
        """Record this rank's ``state`` (``running``, ``finished`` or ``failed``), ``step`` and a heartbeat (now).

        Peers read it with :meth:`peer_state`.  A group that stops training calls ``set_state("finished")`` (or
        ``"failed"`` in its ``finally``/``except``) so synchronous readers stop waiting for it.  ``publish`` updates
        step and heartbeat by itself.  Raises ``ValueError`` for an unknown state.
        """
        if state not in STATES:
            raise ValueError(f"set_state: state must be one of {tuple(STATES)}, got {state!r}")
        self._live("set_state")
        self._state = state
        if step is not None:
            self._step = int(step)
        self._write_state()

    def _records(self, ranks: list[int]) -> np.ndarray:
        """State records (``_STATE_DTYPE``, shape (len(ranks),)) of world ``ranks``, one shared-lock Get each."""
        recs = np.zeros(len(ranks), _STATE_DTYPE)
        rows = recs.view(np.uint8).reshape(len(ranks), _STATE_DTYPE.itemsize)
        for i, r in enumerate(ranks):
            with self._header.locked(r, exclusive=False):
                self._header.get(rows[i], r, 0)
        return recs

    def peer_state(self, task: str) -> PeerState:
        """State of ``task``'s group read from the header window (passive target; see :class:`PeerState`).

        Raises ``KeyError`` naming the board's tasks if ``task`` has no output on the board.
        """
        self._live("peer_state")
        ranks = next((tb.ranks for tb in self.tables.values() if tb.task == task), None)
        if ranks is None:
            raise KeyError(f"peer_state: no task {task!r} on the board; tasks are "
                           f"{sorted({tb.task for tb in self.tables.values()})}")
        recs = self._records(ranks)
        codes = set(recs["state"].tolist())
        state = "failed" if STATES["failed"] in codes else "running" if STATES["running"] in codes else "finished"
        return PeerState(state, int(recs["step"].max()), float(recs["heartbeat"].max()))

    # ---- metrics -----------------------------------------------------------------------------------------------
    def metrics(self, reset: bool = True) -> dict[str, float]:
        """This rank's board metrics since the last reset, names with units, prefixed ``board/<task>.<output>/``.

        Reader side (per peer output read): ``reads(count)``, ``entries(count)``, ``coverage(frac)`` (usable /
        entries), ``usable/unwritten/over_stale/torn_reads/nonfinite(count)``, ``read_time(ms)`` (mean per call,
        including waits), ``read_time_max(ms)``, ``wait_time(ms)`` (total synchronous wait),
        ``staleness_p50/p90/max(steps)`` and ``(s)``, and histograms ``staleness_hist(steps)/[lo,hi)`` and
        ``staleness_hist(s)/[lo,hi)`` (buckets in :mod:`.policy`).  Writer side: ``publishes(count)``,
        ``entries_written(count)``, ``publish_time(ms)``, ``refresh_entries(count)``, ``refresh_time(s)``.
        """
        m: dict[str, float] = {}
        for k, tb in self.tables.items():
            m.update(tb.reads.metrics(f"board/{k}"))
            m.update(tb.writes.metrics(f"board/{k}"))
            if reset:
                tb.reads.reset()
                tb.writes.reset()
        return m

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Mark this rank finished (if still running), wait for every rank without spinning, free the windows.

        Collective over the world.  The wait is ``Ibarrier`` + sleep (OpenMPI's blocking barrier busy-polls, and a
        group that finished early must not steal cores from one still training); peers keep reading this group's
        entries until they close too.  Windows are freed in reverse allocation order (tables by key, descending,
        then the header window), then the duplicated communicator.  Idempotent.

        Raises:
            BoardError: a rank marked ``failed`` has not entered ``close`` for :data:`CLOSE_GRACE_S` seconds (it
                crashed or exited without closing): the windows cannot be freed collectively, so instead of hanging
                the error names the ranks; under ``python -m mpi4py`` it aborts the job.
        """
        if self._closed:
            return
        if self._state == "running":
            self._state = "finished"
        self._closing = 1
        self._write_state()
        req = self.comm.Ibarrier()
        failed_since, next_check = None, time.monotonic() + 1.0
        while not req.Test():
            time.sleep(0.01)
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + 1.0
            recs = self._records(list(range(self.comm.size)))
            stuck = [r for r in range(self.comm.size)
                     if r != self.rank and recs["state"][r] == STATES["failed"] and recs["closing"][r] == 0]
            failed_since = (failed_since or time.monotonic()) if stuck else None
            if stuck and time.monotonic() - failed_since > CLOSE_GRACE_S:
                raise BoardError(f"PredictionBoard.close: world rank(s) {stuck} are marked failed and did not enter "
                                 f"close within {CLOSE_GRACE_S:g} s; the board's windows cannot be freed "
                                 f"collectively. Abort the job (python -m mpi4py does so on this exception)")
        for w in reversed(self._windows):
            w.free()
        self._windows.clear()
        self.comm.Free()
        self._closed = True
        atexit.unregister(self._atexit)

    def _at_exit(self) -> None:
        """Interpreter exit without :meth:`close`: mark this rank failed (if it was still running), then close, so
        that peers waiting in synchronous reads stop waiting and peers in :meth:`close` are not left hanging."""
        if self._closed or MPI.Is_finalized():
            return
        if self._state == "running":
            self.set_state("failed")
        try:
            self.close()
        except BoardError as e:  # pragma: no cover - nothing left to do at exit but say why
            import sys
            print(e, file=sys.stderr, flush=True)

    def __enter__(self) -> "PredictionBoard":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Normal exit: :meth:`close`.  On an exception: mark this rank failed and skip the collective close
        (other ranks may never reach it; ``python -m mpi4py`` then aborts the job)."""
        if exc_type is None:
            self.close()
        elif not self._closed and not MPI.Is_finalized():
            self.set_state("failed")
        return False

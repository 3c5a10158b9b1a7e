"""Staleness policy, read/write metrics and the capacity check of the prediction board (pure numpy, no MPI).

Staleness (Taskology §3.3, §4.4, Fig. 5): the age of a peer prediction in the *reader's* steps,
``age_steps = max(0, now_step - entry_step)``, where ``now_step`` is the reader's own training step and
``entry_step`` the producer's step when it wrote the entry (groups follow the same mediator schedule, so steps of
different groups are comparable).  An entry is *usable* in the consistency term of its sample when it was written,
is intact (one whole write), holds only finite values, and ``age_steps <= max_staleness``.  Unusable samples are
masked out of the consistency term and counted.

Histogram buckets (half-open ``[lo, hi)``; the last one is ``[lo, inf)``):

* steps: ``0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000`` (the paper's tolerance ends near 2000 steps);
* seconds: ``0, 0.01, 0.1, 1, 10, 60, 600`` (Fig. 5 measures staleness in minutes).

They cover written entries (usable or over-stale); never-written entries are counted apart (``unwritten``).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BoardCapacityError

STEP_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SECOND_BUCKETS = (0.0, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0)


def age_steps(now_step: int, entry_steps: np.ndarray) -> np.ndarray:
    """int64 (B,): ``max(0, now_step - entry_steps)`` for written entries, -1 where ``entry_steps < 0`` (never written)."""
    s = np.asarray(entry_steps, dtype=np.int64)
    return np.where(s < 0, -1, np.maximum(0, int(now_step) - s))


def age_seconds(now_s: float, entry_times: np.ndarray, entry_steps: np.ndarray) -> np.ndarray:
    """float64 (B,): wall-clock age ``max(0, now_s - entry_times)`` in seconds, -1.0 for never-written entries.

    Times are ``time.time()`` of two processes: across nodes the clock offset between them adds to the age.
    """
    t = np.maximum(0.0, float(now_s) - np.asarray(entry_times, dtype=np.float64))
    return np.where(np.asarray(entry_steps) < 0, -1.0, t)


def usable_mask(ages: np.ndarray, max_staleness: int, intact: np.ndarray | None = None,
                finite: np.ndarray | None = None) -> np.ndarray:
    """bool (B,): written (``ages >= 0``), ``ages <= max_staleness``, and intact/finite where those masks are given."""
    a = np.asarray(ages)
    ok = (a >= 0) & (a <= max_staleness)
    if intact is not None:
        ok &= intact
    if finite is not None:
        ok &= finite
    return ok


def bucket_labels(edges) -> list[str]:
    """Labels ``[lo,hi)`` of the histogram buckets for ``edges``; the last is ``[lo,inf)``."""
    fmt = lambda v: f"{v:g}"
    return [f"[{fmt(lo)},{fmt(hi)})" for lo, hi in zip(edges, edges[1:])] + [f"[{fmt(edges[-1])},inf)"]


def histogram(values: np.ndarray, edges) -> np.ndarray:
    """int64 counts of ``values`` per bucket of ``edges`` (``len(edges)`` buckets, the last open-ended)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right") - 1
    return np.bincount(np.clip(idx, 0, len(edges) - 1), minlength=len(edges)).astype(np.int64)


class ReadStats:
    """Counters of one consumer's reads of one (task, output) since the last reset; see :meth:`metrics`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reads = 0
        self.entries = 0
        self.usable = 0
        self.unwritten = 0
        self.over_stale = 0
        self.torn = 0
        self.nonfinite = 0
        self.read_s: list[float] = []
        self.wait_s = 0.0
        self.ages_steps: list[np.ndarray] = []
        self.ages_s: list[np.ndarray] = []

    def add(self, ages: np.ndarray, ages_s: np.ndarray, usable: np.ndarray, max_staleness: int, torn: int,
            nonfinite: int, read_s: float, wait_s: float) -> None:
        """Record one read call: per-entry ages (steps, seconds; -1 = never written), usable mask, counts, times."""
        written = ages >= 0
        self.reads += 1
        self.entries += len(ages)
        self.usable += int(usable.sum())
        self.unwritten += int((~written).sum())
        self.over_stale += int((ages > max_staleness).sum())
        self.torn += torn
        self.nonfinite += nonfinite
        self.read_s.append(read_s)
        self.wait_s += wait_s
        self.ages_steps.append(ages[written])
        self.ages_s.append(ages_s[written])

    def metrics(self, prefix: str) -> dict[str, float]:
        """Metric dict, names carrying units, e.g. ``<prefix>/coverage(frac)``, ``<prefix>/staleness_p50(steps)``.

        Empty if nothing was read.  Percentiles are over written entries; ``nan``-free: with no written entry the
        staleness percentiles are omitted.
        """
        if self.reads == 0:
            return {}
        p = prefix
        m: dict[str, float] = {
            f"{p}/reads(count)": self.reads,
            f"{p}/entries(count)": self.entries,
            f"{p}/coverage(frac)": self.usable / self.entries if self.entries else 0.0,
            f"{p}/usable(count)": self.usable,
            f"{p}/unwritten(count)": self.unwritten,
            f"{p}/over_stale(count)": self.over_stale,
            f"{p}/torn_reads(count)": self.torn,
            f"{p}/nonfinite(count)": self.nonfinite,
            f"{p}/read_time(ms)": 1e3 * float(np.mean(self.read_s)),
            f"{p}/read_time_max(ms)": 1e3 * float(np.max(self.read_s)),
            f"{p}/wait_time(ms)": 1e3 * self.wait_s,
        }
        steps = np.concatenate(self.ages_steps)
        secs = np.concatenate(self.ages_s)
        if len(steps):
            for q in (50, 90):
                m[f"{p}/staleness_p{q}(steps)"] = float(np.percentile(steps, q))
                m[f"{p}/staleness_p{q}(s)"] = float(np.percentile(secs, q))
            m[f"{p}/staleness_max(steps)"] = float(steps.max())
            m[f"{p}/staleness_max(s)"] = float(secs.max())
        for label, c in zip(bucket_labels(STEP_BUCKETS), histogram(steps, STEP_BUCKETS)):
            m[f"{p}/staleness_hist(steps)/{label}"] = int(c)
        for label, c in zip(bucket_labels(SECOND_BUCKETS), histogram(secs, SECOND_BUCKETS)):
            m[f"{p}/staleness_hist(s)/{label}"] = int(c)
        return m


class WriteStats:
    """Counters of one producer's writes of one (task, output) since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.publishes = 0
        self.entries = 0
        self.publish_s: list[float] = []
        self.refresh_entries = 0
        self.refresh_s = 0.0

    def metrics(self, prefix: str) -> dict[str, float]:
        """``<prefix>/publishes(count)``, ``entries_written(count)``, ``publish_time(ms)`` (mean per call),
        ``refresh_entries(count)``, ``refresh_time(s)``; empty if nothing was written."""
        if self.publishes == 0 and self.refresh_entries == 0:
            return {}
        return {
            f"{prefix}/publishes(count)": self.publishes,
            f"{prefix}/entries_written(count)": self.entries,
            f"{prefix}/publish_time(ms)": 1e3 * float(np.mean(self.publish_s)) if self.publish_s else 0.0,
            f"{prefix}/refresh_entries(count)": self.refresh_entries,
            f"{prefix}/refresh_time(s)": self.refresh_s,
        }


def fmt_bytes(n: int) -> str:
    """``n`` bytes as a human figure with the exact count, e.g. ``1.50 GiB (1610612736 bytes)``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    k = min(len(units) - 1, int(math.log(n, 1024))) if n > 0 else 0
    return f"{n / 1024 ** k:.2f} {units[k]} ({n} bytes)" if k else f"{n} bytes"


def capacity_plan(n_samples: int, tables: dict[str, tuple[str, tuple[int, ...], int, int, int]], dtype: str) -> list[dict]:
    """Bytes of the largest shard of every table.

    Args:
        n_samples: mediator samples (ids ``0 .. n_samples-1``).
        tables: ``{"task.output": (task, shape, group_size, payload_bytes, entry_bytes)}``.
        dtype: storage dtype name (for the message).

    Returns:
        One row per table: ``key, task, shape, dtype, group_size, ids`` (ids held by group rank 0, the largest shard:
        ``ceil(n_samples / group_size)``), ``payload_bytes, entry_bytes, bytes = ids * entry_bytes``.
    """
    rows = []
    for key, (task, shape, g, payload, entry) in tables.items():
        ids = -(-n_samples // g)
        rows.append({"key": key, "task": task, "shape": tuple(shape), "dtype": dtype, "group_size": g, "ids": ids,
                     "payload_bytes": payload, "entry_bytes": entry, "bytes": ids * entry})
    return rows


def check_capacity(plan: list[dict], max_window_bytes: int) -> None:
    """Raise :class:`BoardCapacityError` if any shard of ``plan`` exceeds ``max_window_bytes``.

    ``plan``: rows of :func:`capacity_plan`.  The message gives the bytes needed as ids x entry size, the total of
    the producing group's outputs per rank, and the ways out.
    """
    over = [r for r in plan if r["bytes"] > max_window_bytes]
    if not over:
        return
    r = max(over, key=lambda r: r["bytes"])
    per_task = sum(q["bytes"] for q in plan if q["task"] == r["task"])
    # float16 halves the payload; header (32) + tail (8) stay, payload padded to 8 bytes (codec.entry_dtype)
    half = 40 + (r["payload_bytes"] // 2 + 7) // 8 * 8 if r["dtype"] == "float32" else None
    ways = []
    if half:
        ways.append(f'board.dtype = "float16" or "bfloat16" (entry {r["entry_bytes"]} -> {half} bytes)')
    ways += [
        "a lower mediator resolution (mediator.height / mediator.width)",
        f"more ranks in the producing group (tasks.ranks of {r['task']!r}, now {r['group_size']}: the shard shrinks "
        f"as 1/ranks)",
        f"a larger board.max_window_bytes (now {fmt_bytes(max_window_bytes)}) if the nodes have the memory",
    ]
    raise BoardCapacityError(
        f"prediction board: the shard of {r['key']} (shape {tuple(r['shape'])}, {r['dtype']}) needs "
        f"{r['ids']} ids x {r['entry_bytes']} bytes/entry = {fmt_bytes(r['bytes'])} on each of the "
        f"{r['group_size']} rank(s) of group {r['task']!r} ({fmt_bytes(per_task)} for all its outputs), more than "
        f"board.max_window_bytes = {fmt_bytes(max_window_bytes)}. Ways out: " + "; ".join(ways) + "."
    )

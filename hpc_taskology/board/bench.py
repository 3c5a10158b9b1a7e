"""``taskology bench exchange``: the prediction board's one-sided MPI transfers against a memcpy of the same bytes.

Run under MPI with >= 2 ranks (world rank 0 hosts the windows and makes no MPI call while rank 1 measures; further
ranks only wait)::

    jobs/mpirun.sh -n 2 .venv/bin/python -m mpi4py -m hpc_taskology bench exchange --json

Measures, and prints and writes as JSON (default ``bench_results/exchange.json``):

* latency per entry from 4 KiB to 64 MiB of ``Lock(shared) + Get + Unlock`` and ``Lock(exclusive) + Put + Unlock``
  into rank 0's window, and of ``numpy.copyto`` of the same bytes in the measuring process (the physical reference
  on one node), each timed in blocks of repetitions (steady state, warm caches for all alike), in 3 rounds that
  alternate the operations so that a change of load on a shared machine hits all of them; quantiles 0.5 / 0.2 / 0.8
  over repetitions (as ``triton.testing.do_bench`` reports);
* ``get_GBps``, ``put_GBps``, ``memcpy_GBps`` (GB = 1e9 bytes) and their ratios over entries >= 1 MiB, where the
  target is Get >= 0.8 x memcpy; plus ``memcpy_shm_GBps``, numpy's copy from anonymous shared memory (the kind of
  pages an osc/sm window lives in), to tell the cost of the memory from the cost of MPI;
* the time of one :meth:`PredictionBoard.read` of a main-job-like batch (default 4 x (3, 96, 128) float16) against
  a training step (``--step-ms``, or a proxy: forward + backward of a small conv net on that batch);
* ``torn_reads`` and ``reads_tried``: rank 0 rewrites entries as fast as it can while rank 1 reads and verifies
  every entry (seq/tail and crc32, :meth:`EntryCodec.intact`).
"""

from __future__ import annotations

import mmap
import os
import socket
import sys
import time
from datetime import datetime, timezone

import numpy as np

KIB, MIB = 1 << 10, 1 << 20


def _size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": KIB, "M": MIB, "G": 1 << 30}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the JSON document instead of a table")
    p.add_argument("--out", default="bench_results/exchange.json", help="JSON file to write (rank 0)")
    p.add_argument("--sizes", default="4K,16K,64K,256K,1M,4M,16M,64M", help="entry sizes, comma-separated (K/M suffixes)")
    p.add_argument("--min-time", type=float, default=0.25, help="seconds of repetitions per size and operation")
    p.add_argument("--batch", type=int, default=4, help="mediator batch of the batch-read case")
    p.add_argument("--shape", default="3x96x128", help="prediction shape C x H x W of the batch-read case")
    p.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"], help="board storage dtype")
    p.add_argument("--step-ms", type=float, default=0.0,
                   help="the main job's training step in ms (0: measure a conv-net proxy on the batch)")
    p.add_argument("--torn-reads", type=int, default=20000, help="entry reads of the torn-read check")


def _quantiles(times_s: list[float]) -> tuple[float, float, float]:
    """Median, 20th and 80th percentile in microseconds."""
    q = np.percentile(np.asarray(times_s) * 1e6, [50, 20, 80])
    return float(q[0]), float(q[1]), float(q[2])


def _repeat(fn, min_time: float) -> list[float]:
    """Per-call times (s) of ``fn`` repeated for about ``min_time`` s (at least 5 calls, after 2 warm-up calls)."""
    for _ in range(2):
        fn()
    times, t_end = [], time.perf_counter() + min_time
    while len(times) < 5 or (time.perf_counter() < t_end and len(times) < 20000):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _raw_transfers(comm, sizes: list[int], min_time: float) -> list[dict]:
    """Rank 1 times Get/Put of each size against rank 0's window, and memcpy; rank 0 waits without MPI calls."""
    from .window import RmaWindow

    biggest = max(sizes)
    win = RmaWindow(comm, biggest if comm.rank == 0 else 0, "bench")
    rows = []
    if comm.rank == 0:
        with win.locked(0, exclusive=True, nocheck=True):
            win.local()[:] = 1  # touch the pages before timing
    comm.Barrier()
    if comm.rank == 1:
        src = np.random.default_rng(0).integers(0, 255, biggest, dtype=np.uint8)
        dst = np.zeros(biggest, np.uint8)
        # the same bytes in anonymous shared memory (tmpfs pages, like osc/sm's /dev/shm window; numpy's private
        # buffers get transparent huge pages, shared memory usually does not): separates memory type from MPI cost
        shm_map = mmap.mmap(-1, biggest, flags=mmap.MAP_SHARED)
        shm = np.frombuffer(shm_map, np.uint8)
        shm[:] = src

        def get(n):
            with win.locked(0, exclusive=False):
                win.get(dst[:n], 0, 0)

        def put(n):
            with win.locked(0, exclusive=True):
                win.put(src[:n], 0, 0)

        for n in sizes:
            # each operation in its own block (steady state: its source as warm in cache as it gets), in 3 rounds
            # alternating the operations so that a change of load on a shared machine hits all of them alike
            ops = {"get": lambda: get(n), "put": lambda: put(n), "memcpy": lambda: np.copyto(dst[:n], src[:n]),
                   "memcpy_shm": lambda: np.copyto(dst[:n], shm[:n])}
            times = {k: [] for k in ops}
            for _ in range(3):
                for k, fn in ops.items():
                    times[k] += _repeat(fn, min_time / 3)
            row = {"entry_bytes": n, "reps": len(times["get"])}
            for k, ts in times.items():
                p50, p20, p80 = _quantiles(ts)
                row.update({f"{k}_us_p50": p50, f"{k}_us_p20": p20, f"{k}_us_p80": p80, f"{k}_GBps": n / p50 / 1e3})
            row["get_over_memcpy"] = row["get_GBps"] / row["memcpy_GBps"]
            row["put_over_memcpy"] = row["put_GBps"] / row["memcpy_GBps"]
            row["get_over_memcpy_shm"] = row["get_GBps"] / row["memcpy_shm_GBps"]
            rows.append(row)
        del shm
        shm_map.close()
    _polite_barrier(comm)
    win.free()
    return rows


def _polite_barrier(comm, poll_s: float = 0.002) -> None:
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll_s)


def _proxy_step_ms(batch: int, shape: tuple[int, ...]) -> float:
    """Forward + backward + SGD step of a small conv net on (batch, *shape): a stand-in for a training step."""
    import torch
    from torch import nn

    c = shape[0]
    net = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 2, stride=2), nn.ReLU(),
                        nn.Conv2d(32, c, 3, padding=1))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape)

    def step():
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    return float(np.median(_repeat(step, 1.0))) * 1e3


def _board_cases(comm, args) -> dict:
    """Batch-read time (verify on/off) and the torn-read check on a board with one producer (rank 0)."""
    import torch

    from ..config import BoardConfig
    from .board import PredictionBoard
    from .codec import EntryCodec
    from .layout import GroupLayout

    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    n_samples = 64
    lay = GroupLayout(comm, {"producer": 1, "consumer": comm.size - 1})
    out: dict = {}
    for verify in (True, False):
        cfg = BoardConfig(dtype=args.dtype, max_staleness=1 << 40, verify_reads=verify)
        board = PredictionBoard(lay, n_samples, {"producer": {"pred": shape}}, cfg)
        if comm.rank == 0:
            board.publish("producer.pred", np.arange(n_samples), torch.randn(n_samples, *shape), step=0)
        comm.Barrier()
        if comm.rank == 1:
            rng = np.random.default_rng(0)
            times = _repeat(lambda: board.read("producer", "pred", rng.choice(n_samples, args.batch, replace=False), 1),
                            max(args.min_time, 0.5))
            p50, p20, p80 = _quantiles(times)
            tag = "read" if verify else "read_noverify"
            out.update({f"{tag}_ms_p50": p50 / 1e3, f"{tag}_ms_p20": p20 / 1e3, f"{tag}_ms_p80": p80 / 1e3})
        if verify:  # torn-read check: rank 0 rewrites entries while rank 1 reads and verifies every entry
            _polite_barrier(comm)
            if comm.rank == 0:
                done = comm.Ibarrier()  # completes once rank 1 has finished reading
                rng, step, writes = np.random.default_rng(1), 1, 0
                x = torch.randn(args.batch, *shape)
                while not done.Test():
                    ids = rng.choice(n_samples, args.batch, replace=False)
                    board.publish("producer.pred", ids, x + step, step)
                    step, writes = step + 1, writes + len(ids)
                out["torn_writes"] = writes
            else:
                if comm.rank == 1:
                    while board.peer_state("producer").step < 1:  # start once the writer is writing
                        time.sleep(0.001)
                    board.metrics(reset=True)
                    rng, reads = np.random.default_rng(2), 0
                    while reads < args.torn_reads:
                        board.read("producer", "pred", rng.choice(n_samples, args.batch, replace=False), 1)
                        reads += args.batch
                    m = board.metrics(reset=True)
                    out["torn_reads"] = int(m["board/producer.pred/torn_reads(count)"])
                    out["reads_tried"] = reads
                _polite_barrier(comm)
        board.close()
    writes = comm.bcast(out.get("torn_writes"), root=0)
    if comm.rank == 1:
        out["torn_writes"] = writes
        step_ms = args.step_ms or _proxy_step_ms(args.batch, shape)
        entry = EntryCodec(shape, args.dtype).nbytes
        out.update({"batch": args.batch, "shape": list(shape), "dtype": args.dtype, "entry_bytes": entry,
                    "step_ms": step_ms, "step_source": "--step-ms" if args.step_ms else "proxy conv net fwd+bwd",
                    "fraction_of_step": out["read_ms_p50"] / step_ms})
        out["target_fraction_le_0.02"] = out["fraction_of_step"] <= 0.02
    return out


def run(args) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    if comm.size < 2:
        print("taskology bench exchange: run under MPI with >= 2 ranks, e.g. jobs/mpirun.sh -n 2 .venv/bin/python "
              "-m mpi4py -m hpc_taskology bench exchange --json", file=sys.stderr)
        return 2
    sizes = sorted(_size(s) for s in args.sizes.split(","))
    rows = _raw_transfers(comm, sizes, args.min_time)
    board = _board_cases(comm, args)
    rows, board = comm.bcast((rows, board) if comm.rank == 1 else None, root=1)
    comm.Free()
    if MPI.COMM_WORLD.rank != 0:
        return 0
    big = [r for r in rows if r["entry_bytes"] >= MIB] or rows[-1:]
    mean = lambda k: float(np.mean([r[k] for r in big]))
    doc = {
        "bench": "exchange",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "ranks": MPI.COMM_WORLD.size,
        "mpi": MPI.Get_library_version().splitlines()[0].strip().rstrip("\x00"),
        "OMPI_MCA_osc": os.environ.get("OMPI_MCA_osc", ""),
        "note": "GB = 1e9 bytes; Get/Put include Lock+Unlock; summary = mean over entries >= 1 MiB",
        "get_GBps": mean("get_GBps"),
        "put_GBps": mean("put_GBps"),
        "memcpy_GBps": mean("memcpy_GBps"),
        "get_over_memcpy": mean("get_over_memcpy"),
        "put_over_memcpy": mean("put_over_memcpy"),
        "memcpy_shm_GBps": mean("memcpy_shm_GBps"),
        "get_over_memcpy_shm": mean("get_over_memcpy_shm"),
        "min_get_over_memcpy_ge_1MiB": min(r["get_over_memcpy"] for r in big),
        "target_get_ge_0.8_memcpy": min(r["get_over_memcpy"] for r in big) >= 0.8,
        "torn_reads": board.pop("torn_reads"),
        "reads_tried": board.pop("reads_tried"),
        "writes_during_reads": board.pop("torn_writes"),
        "latency": rows,
        "batch_read": board,
    }
    from ..commands.bench import save_report

    save_report(doc, args.out, args.json)
    if not args.json:
        print(f"{'entry':>10} {'get us':>10} {'put us':>10} {'memcpy us':>10} {'get GB/s':>9} {'put GB/s':>9} "
              f"{'memcpy GB/s':>11} {'shm GB/s':>9} {'get/memcpy':>10} {'get/shm':>8}")
        for r in rows:
            print(f"{r['entry_bytes']:>10} {r['get_us_p50']:>10.1f} {r['put_us_p50']:>10.1f} {r['memcpy_us_p50']:>10.1f} "
                  f"{r['get_GBps']:>9.2f} {r['put_GBps']:>9.2f} {r['memcpy_GBps']:>11.2f} {r['memcpy_shm_GBps']:>9.2f} "
                  f"{r['get_over_memcpy']:>10.2f} {r['get_over_memcpy_shm']:>8.2f}")
        b = doc["batch_read"]
        print(f"get {doc['get_GBps']:.2f} GB/s, put {doc['put_GBps']:.2f} GB/s, memcpy {doc['memcpy_GBps']:.2f} GB/s "
              f"(>= 1 MiB); torn reads {doc['torn_reads']} of {doc['reads_tried']}; batch read "
              f"{b['batch']}x{tuple(b['shape'])} {b['dtype']}: {b['read_ms_p50']:.3f} ms = "
              f"{100 * b['fraction_of_step']:.2f} % of a {b['step_ms']:.1f} ms step ({b['step_source']})")
    return 0

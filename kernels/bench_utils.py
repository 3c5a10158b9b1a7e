"""Benchmark harness shared by every kernel benchmark (``taskology bench kernels``).

Follows Liger-Kernel ``benchmark/scripts/utils.py`` (providers × modes, ``triton.testing.do_bench`` with quantiles
[0.5, 0.2, 0.8], CSV rows keyed by kernel/provider/mode/size/device/versions/date) and the Triton tutorial
``05-layer-norm.py`` (GB/s from a bytes-moved model).

A kernel benchmark module (e.g. ``hpc_taskology.kernels.bench_depth_normals``) exposes ``get_bench() -> KernelBench``:

* ``make_case(size, device, dtype) -> Case``: the inputs for one size (a tuple of ints parsed from "8x128x416"; the
  module says what the numbers mean) and the tensors that receive gradients.
* ``reference(**inputs)``: the pure-torch reference loss (the one copy in ``hpc_taskology.losses``), used as the
  ``eager`` provider and, wrapped in ``torch.compile``, as the ``compile`` provider.  It should skip input checks
  that force a host sync, so that ``torch.compile`` sees one graph.
* ``triton(**inputs)``: the fused kernel path (CUDA only here: the interpreter is never benchmarked).
* ``kornia() -> fn | None``: optional factory for a Kornia equivalent; used only if ``import kornia`` works.
* ``bytes_moved(size, mode, elem_bytes) -> int``: the minimal bytes a kernel must move (every input read once, every
  output written once); the same model for every provider, so GB/s compare providers on equal terms.

Each provider returns a scalar loss (or a tuple whose first element is the loss).  ``compile`` runs with
``torch._functorch.config.donated_buffer = False`` (the backward mode's ``retain_graph=True`` forbids donated
buffers), which can cost ``compile`` a little memory in the full mode.  Modes: ``forward`` (loss with the
autograd graph built, as in training), ``backward`` (``loss.backward(retain_graph=True)`` on a prebuilt graph),
``full`` (forward + backward).

Figures per row: median / p20 / p80 in ms; peak MB above the memory held before the call (CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; CPU: the peak resident set size, VmHWM after a
reset through ``/proc/self/clear_refs``, minus VmRSS before the call, after ``malloc_trim(0)`` and with glibc's mmap threshold pinned to
16 KiB so that freed tensors go back to the OS and every allocation of 16 KiB or more shows in the RSS — page-exact, but it also
counts allocator and thread-stack growth; measured in a separate pass after all timings, see :func:`run_benchmark`); GB/s from the bytes model; % of the device's memory-bandwidth peak (table keyed
by CUDA device name; on CPU the peak is a measured numpy memcpy bandwidth, counting read + write).
"""

from __future__ import annotations

import csv
import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

QUANTILES = [0.5, 0.2, 0.8]
MODES = ("forward", "backward", "full")
PROVIDERS = ("triton", "eager", "compile", "kornia")

# HBM bandwidth peaks in GB/s, matched as substrings of torch.cuda.get_device_name() in this order.
DEVICE_PEAK_GBPS: list[tuple[str, float]] = [
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),  # SXM5 80 GB HBM3
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("A10G", 600.0),
    ("T4", 320.0),
]

CSV_FIELDS = [
    "kernel", "provider", "mode", "size", "dtype", "device", "threads", "ms_median", "ms_p20", "ms_p80", "peak_mb",
    "memory_method", "bytes_model_mb", "gbps", "peak_gbps", "pct_of_peak", "torch", "triton", "python", "date",
    "status",
]


@dataclass
class Case:
    """Inputs for one benchmark size: keyword arguments for the providers and the tensors that receive gradients."""

    inputs: dict[str, Any]
    grad_tensors: list[torch.Tensor] = field(default_factory=list)


@dataclass
class KernelBench:
    """What a kernel benchmark module provides (see the module docstring)."""

    name: str
    make_case: Callable[[tuple[int, ...], torch.device, torch.dtype], Case]
    reference: Callable[..., Any]
    bytes_moved: Callable[[tuple[int, ...], str, int], int]
    sizes: list[str]  # the headline sizes on a GPU
    sweep: list[str]  # extra sizes on a GPU
    cpu_sizes: list[str]  # defaults on a CPU box (small)
    size_meaning: str = "BxHxW"
    triton: Callable[..., Any] | None = None
    kornia: Callable[[], Callable[..., Any] | None] | None = None


# ----------------------------------------------------------------------------------------------------- utilities
def parse_size(text: str) -> tuple[int, ...]:
    """``"8x128x416"`` → ``(8, 128, 416)``; raises ValueError naming the bad size."""
    try:
        dims = tuple(int(t) for t in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--sizes: expected sizes like 8x128x416, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"--sizes: expected positive sizes like 8x128x416, got {text!r}")
    return dims


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}"


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "n/a"


_CPU_PEAK: float | None = None


def cpu_memcpy_gbps(nbytes: int = 128 << 20, repeats: int = 5) -> float:
    """Measured CPU memory bandwidth in GB/s: best of ``repeats`` numpy copies of ``nbytes``, counting read + write."""
    global _CPU_PEAK
    if _CPU_PEAK is None:
        src = np.ones(nbytes // 8, dtype=np.float64)
        dst = np.empty_like(src)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - t0)
        _CPU_PEAK = 2 * src.nbytes / best / 1e9
    return _CPU_PEAK


def peak_gbps(device: torch.device) -> tuple[float | None, str]:
    """(peak memory bandwidth in GB/s, where it comes from) for ``device``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, gbps in DEVICE_PEAK_GBPS:
            if key in name:
                return gbps, f"spec sheet ({key})"
        return None, f"unknown device {name!r}"
    return cpu_memcpy_gbps(), "measured numpy memcpy (read + write)"


# ------------------------------------------------------------------------------------------------- CPU memory
_MALLOC_PINNED = False


def _pin_malloc_threshold() -> None:
    """mallopt(M_MMAP_THRESHOLD, 16 KiB): every block >= 16 KiB is its own mmap, returned to the OS when freed, so the
    RSS tracks live tensors (irreversible: it also turns off glibc's dynamic threshold for the process)."""
    global _MALLOC_PINNED
    if _MALLOC_PINNED or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 16 * 1024)  # M_MMAP_THRESHOLD = -3
        _MALLOC_PINNED = True
    except OSError:
        pass


def _malloc_trim() -> None:
    """malloc_trim(0): give free heap pages back to the OS (glibc also madvises free chunks inside the heap), so a
    chunk reused during the measured call is faulted in again and shows in the RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # since Linux 4.0: reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def measure_peak_mb(fn: Callable[[], Any], device: torch.device) -> tuple[float | None, str]:
    """Peak memory in MB above what is held before one call of ``fn``; and the method used."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_max_allocated"
    _pin_malloc_threshold()
    _malloc_trim()
    if not _reset_hwm():
        return None, "n/a (no /proc/self/clear_refs)"
    base = _status_kb("VmRSS")
    fn()
    hwm = _status_kb("VmHWM")
    if base is None or hwm is None:
        return None, "n/a (no /proc/self/status)"
    return max(hwm - base, 0) / 1024, "rss_hwm"


# ------------------------------------------------------------------------------------------------------ timing
def time_ms(fn: Callable[[], Any], device: torch.device, grad_to_none: list[torch.Tensor] | None = None,
            rep_ms: float = 100.0, warmup_ms: float = 25.0) -> list[float]:
    """[median, p20, p80] in ms: ``triton.testing.do_bench`` on CUDA; a wall-clock loop with the same quantiles on CPU.

    The CPU loop runs 2 warm-up calls, then repeats until ``rep_ms`` have passed (at least 3, at most 100 calls),
    clearing the gradients of ``grad_to_none`` before each call as ``do_bench`` does.
    """
    if device.type == "cuda":
        import triton.testing

        return list(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none,
                                            quantiles=QUANTILES))

    def clear():
        for t in grad_to_none or []:
            t.grad = None

    for _ in range(2):
        clear()
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < 100 and (time.perf_counter() - start) * 1e3 < rep_ms):
        clear()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return [float(np.quantile(times, q)) for q in QUANTILES]


def _loss(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def mode_fn(provider_fn: Callable[..., Any], case: Case, mode: str) -> Callable[[], Any]:
    """The callable timed for ``mode`` (forward / backward / full)."""
    if mode == "forward":
        return lambda: _loss(provider_fn(**case.inputs))
    if not case.grad_tensors:
        raise ValueError(f"mode {mode!r} needs tensors that require grad")
    if mode == "backward":
        loss = _loss(provider_fn(**case.inputs))
        return lambda: loss.backward(retain_graph=True)
    if mode == "full":
        return lambda: _loss(provider_fn(**case.inputs)).backward()
    raise ValueError(f"--modes: expected some of {MODES}, got {mode!r}")


# -------------------------------------------------------------------------------------------------- providers
def resolve_providers(spec: KernelBench, device: torch.device, wanted: list[str] | None
                      ) -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """({provider: fn} that can run here, {provider: why skipped})."""
    wanted = list(wanted) if wanted else list(PROVIDERS)
    unknown = [p for p in wanted if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"--providers: expected some of {PROVIDERS}, got {unknown}")
    fns: dict[str, Callable[..., Any]] = {}
    skipped: dict[str, str] = {}
    for p in wanted:
        if p == "eager":
            fns[p] = spec.reference
        elif p == "compile":
            # the backward mode reruns one graph with retain_graph=True, which AOTAutograd's donated buffers forbid
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            fns[p] = torch.compile(spec.reference)
        elif p == "triton":
            if spec.triton is None:
                skipped[p] = "no Triton kernel"
            elif device.type != "cuda":
                skipped[p] = "needs a CUDA device (the interpreter is not benchmarked)"
            else:
                fns[p] = spec.triton
        elif p == "kornia":
            try:
                import kornia  # noqa: F401
            except ImportError:
                skipped[p] = "kornia not installed"
                continue
            fn = spec.kornia() if spec.kornia is not None else None
            if fn is None:
                skipped[p] = "no Kornia equivalent"
            else:
                fns[p] = fn
    return fns, skipped


# ---------------------------------------------------------------------------------------------------- running
def default_sizes(spec: KernelBench, device: torch.device, which: str | None) -> list[str]:
    """``None``/"default": headline + sweep on CUDA, ``cpu_sizes`` on CPU; "sweep": sweep only; else a comma list."""
    if which in (None, "", "default"):
        return spec.sizes + spec.sweep if device.type == "cuda" else list(spec.cpu_sizes)
    if which == "sweep":
        return list(spec.sweep)
    return [s.strip() for s in which.split(",") if s.strip()]


_PROVIDER_CACHE: dict[tuple[str, str, tuple[str, ...]], tuple[dict, dict]] = {}


def _providers_cached(spec: KernelBench, device: torch.device, wanted: list[str] | None):
    # one torch.compile wrapper per kernel, reused by the timing and the memory pass (no recompilation)
    key = (spec.name, device.type, tuple(wanted or PROVIDERS))
    if key not in _PROVIDER_CACHE:
        _PROVIDER_CACHE[key] = resolve_providers(spec, device, wanted)
    return _PROVIDER_CACHE[key]


def run_benchmark(spec: KernelBench, sizes: list[str], modes: list[str] | None = None,
                  providers: list[str] | None = None, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32, rep_ms: float = 100.0, memory: bool = True,
                  log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Time every provider × mode × size of ``spec``; returns the rows (dicts with :data:`CSV_FIELDS`).

    With ``memory`` the peak-memory pass (:func:`measure_memory`) follows at once; callers timing several kernels
    pass ``memory=False`` and call :func:`measure_memory` after all timings, because on CPU the memory pass pins
    glibc's mmap threshold for the rest of the process, which would slow down allocation-heavy providers in later
    timings.  A provider that fails (e.g. ``torch.compile`` without a compiler, out of memory) yields a row whose
    ``status`` holds the error instead of aborting the run.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = list(modes) if modes else list(MODES)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"--modes: expected some of {MODES}, got {bad}")
    fns, skipped = _providers_cached(spec, device, providers)
    for p, why in skipped.items():
        log(f"[{spec.name}] provider {p}: skipped ({why})")
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1) - 0.5 and torch.get_num_threads() > 1:
            log(f"[{spec.name}] warning: load average {load:.1f} on {os.cpu_count()} cores; multi-threaded torch ops "
                f"stall on busy cores, timings will be noisy (try --threads 1)")
    peak, peak_src = peak_gbps(device)
    log(f"[{spec.name}] device {device_name(device)}, {torch.get_num_threads()} torch threads; bandwidth peak "
        f"{'n/a' if peak is None else f'{peak:.1f} GB/s'} ({peak_src})")
    elem = torch.empty((), dtype=dtype).element_size()
    common = {
        "kernel": spec.name, "dtype": str(dtype).replace("torch.", ""), "device": device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "peak_gbps": None if peak is None else round(peak, 1), "torch": torch.__version__,
        "triton": triton_version(), "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    rows = []
    for size_text in sizes:
        size = parse_size(size_text)
        for provider, pfn in fns.items():
            for mode in modes:
                row = {**common, "provider": provider, "mode": mode, "size": size_text, "peak_mb": None,
                       "memory_method": "not measured"}
                nbytes = spec.bytes_moved(size, mode, elem)
                row["bytes_model_mb"] = round(nbytes / 1e6, 6)
                case = fn = None
                try:
                    case = spec.make_case(size, device, dtype)
                    fn = mode_fn(pfn, case, mode)
                    med, p20, p80 = time_ms(fn, device, case.grad_tensors, rep_ms=rep_ms)
                    gbps = nbytes / (med * 1e-3) / 1e9
                    row.update(ms_median=round(med, 4), ms_p20=round(p20, 4), ms_p80=round(p80, 4),
                               gbps=round(gbps, 4),
                               pct_of_peak=None if peak is None else round(100 * gbps / peak, 2), status="ok")
                except Exception as e:  # noqa: BLE001 - a failing provider is a figure, not a crash
                    row.update(status=_error(e))
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                finally:
                    case = fn = None  # noqa: F841 - free the inputs before the next case
                    gc.collect()
                log(format_row(row))
                rows.append(row)
    if memory:
        measure_memory(spec, rows, device, dtype, providers, log)
    return rows


def _error(e: Exception) -> str:
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    return f"error: {type(e).__name__}: {msg}"


def measure_memory(spec: KernelBench, rows: list[dict[str, Any]], device: torch.device,
                   dtype: torch.dtype = torch.float32, providers: list[str] | None = None,
                   log: Callable[[str], None] = print) -> None:
    """Fill ``peak_mb`` / ``memory_method`` of the ``ok`` rows of ``spec`` with one extra call each (after a warm-up)."""
    fns, _ = _providers_cached(spec, device, providers)
    if device.type == "cpu":
        _pin_malloc_threshold()
    for row in rows:
        if row.get("status") != "ok" or row["kernel"] != spec.name or row["provider"] not in fns:
            continue
        case = fn = None
        try:
            case = spec.make_case(parse_size(row["size"]), device, dtype)
            fn = mode_fn(fns[row["provider"]], case, row["mode"])
            fn()  # warm-up: compiled code and autotuning must not count
            for t in case.grad_tensors:
                t.grad = None
            mem, method = measure_peak_mb(fn, device)
            row.update(peak_mb=None if mem is None else round(mem, 2), memory_method=method)
        except Exception as e:  # noqa: BLE001
            row.update(memory_method=_error(e))
        finally:
            case = fn = None  # noqa: F841
            gc.collect()
        log(f"{row['kernel']:>14} {row['provider']:>8} {row['mode']:>8} {row['size']:>14}  peak "
            f"{'n/a' if row['peak_mb'] is None else format(row['peak_mb'], '.1f')} MB ({row['memory_method']})")


def format_row(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"{row['kernel']:>14} {row['provider']:>8} {row['mode']:>8} {row['size']:>14}  {row.get('status')}"
    pct = "" if row.get("pct_of_peak") is None else f" ({row['pct_of_peak']:5.1f}% of peak)"
    mem = "" if row.get("peak_mb") is None else f"  peak {row['peak_mb']:.1f} MB"
    return (f"{row['kernel']:>14} {row['provider']:>8} {row['mode']:>8} {row['size']:>14}  "
            f"{row['ms_median']:9.3f} ms [p20 {row['ms_p20']:.3f}, p80 {row['ms_p80']:.3f}]  "
            f"{row['gbps']:8.3f} GB/s{pct}{mem}")


def append_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != CSV_FIELDS:  # an older layout: keep it aside rather than mixing columns
            stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
            path.rename(path.with_name(f"{path.stem}.{stamp}.old{path.suffix}"))
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in CSV_FIELDS})


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """One PNG per kernel: median ms (p20–p80 bars) and GB/s per size, a line per provider, a column per mode."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r["mode"] == m for r in ok)]
    sizes = sorted({r["size"] for r in ok}, key=lambda s: math.prod(parse_size(s)))
    fig, axes = plt.subplots(2, len(modes), figsize=(4.5 * len(modes), 7), squeeze=False)
    for c, mode in enumerate(modes):
        for provider in PROVIDERS:
            pts = {r["size"]: r for r in ok if r["mode"] == mode and r["provider"] == provider}
            if not pts:
                continue
            xs = [i for i, s in enumerate(sizes) if s in pts]
            med = [pts[sizes[i]]["ms_median"] for i in xs]
            lo = [m - pts[sizes[i]]["ms_p20"] for m, i in zip(med, xs)]
            hi = [pts[sizes[i]]["ms_p80"] - m for m, i in zip(med, xs)]
            axes[0][c].errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=provider)
            axes[1][c].plot(xs, [pts[sizes[i]]["gbps"] for i in xs], marker="o", label=provider)
        for r_, ylabel in ((0, "time (ms), median [p20, p80]"), (1, "achieved GB/s (bytes model)")):
            ax = axes[r_][c]
            ax.set_xticks(range(len(sizes)))
            ax.set_xticklabels(sizes, rotation=30, fontsize=7)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{mode}")
            ax.grid(alpha=0.3)
            if r_ == 0:
                ax.set_yscale("log")
        axes[0][c].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Ahead-of-time compile of every Triton kernel in ``kernels/`` for an NVIDIA H100 (CUDA sm_90), without a GPU.

The CPU tests run the kernels on the Triton interpreter (``TRITON_INTERPRET=1``), which accepts code the real compiler
rejects (Python control flow on tensor values, dtype mixing, constexpr misuse, non-power-of-two ``tl.arange``, ...).
Here Triton's own compiler runs on them: ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` through
TTIR, TTGIR, LLVM IR and PTX down to a cubin assembled by the ``ptxas`` that the triton wheel ships, as
``triton/tools/compile.py`` (Triton's AOT tool) does.  No CUDA driver or device is involved.

Signatures are not written by hand: the script half of this file calls each loss's Triton entry point
(``*_consistency_triton``) forward and backward on ``meta`` tensors (shapes and dtypes, no storage) with every
``@triton.jit`` kernel replaced by a recorder, so each launch yields the argument types (``*fp32``, ``*bf16``,
``*u8``, ``i32``, ``fp32``), constexprs and ``num_warps`` exactly as the launchers pass them when compiled (their GPU
defaults: 8x64 tiles for depth->normals, 1024-pixel blocks for the warps).  The scenarios cover float32, bfloat16
(and float64 where the launcher computes in it) and the constexpr branches the losses take (masks, object motion,
which gradients are needed).  Pointers get the 16-byte alignment hint the JIT gives fresh torch allocations.

Kernels are the ``@triton.jit`` functions of the package that no other jit function calls (the rest are device
functions, compiled inside their callers); a new kernel that no scenario launches fails :func:`test_kernel_compiles`.

The pytest tests compile a covering subset (every argument type and every constexpr value each kernel is launched
with, at least once; < 60 s on 2 cores) in one subprocess: conftest.py has set ``TRITON_INTERPRET=1`` in this process,
under which ``@triton.jit`` returns interpreter stand-ins that cannot be compiled.  The Triton cache goes to a temporary
directory.  By hand, ``python tests/test_kernels_aot.py [--all] [--json]`` prints every case with its ``ptxas -v``
resources (registers per thread, spills, shared memory) and the occupancy they allow on an H100 SM.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

KERNEL_PACKAGE = "hpc_taskology.kernels"
TARGET = ("cuda", 90, 32)  # backend, compute capability (H100 = sm_90), warp size
REGS_PER_SM = 65536  # H100: 64K 32-bit registers, 2048 threads, 32 blocks and 228 KiB shared memory per SM
MAX_THREADS_PER_SM = 2048
MAX_BLOCKS_PER_SM = 32
SMEM_PER_SM = 228 * 1024
SMEM_PER_BLOCK_RESERVED = 1024
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


# ------------------------------------------------------------------------------------------------ kernel discovery
def _is_jit(obj) -> bool:
    """A ``@triton.jit`` object: a JITFunction, or the interpreter's stand-in under ``TRITON_INTERPRET=1``."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    return isinstance(obj, (JITFunction, InterpretedFunction))


def kernel_modules() -> list:
    """Every module of the kernels package, imported."""
    pkg = importlib.import_module(KERNEL_PACKAGE)
    return [importlib.import_module(f"{KERNEL_PACKAGE}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]


def _called_jit(obj) -> set[int]:
    """ids of the jit functions that ``obj``'s body calls (by plain or dotted name)."""
    out = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(obj.fn)))):
        if not isinstance(node, ast.Call):
            continue
        parts, f = [], node.func
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if not isinstance(f, ast.Name) or f.id not in obj.fn.__globals__:
            continue
        target = obj.fn.__globals__[f.id]
        for p in reversed(parts):
            target = getattr(target, p, None)
        if _is_jit(target):
            out.add(id(target))
    return out


def jit_kernels(modules=None) -> dict[str, object]:
    """``{"module.name": jit object}`` of every entry point: a ``@triton.jit`` function defined in the kernels package
    that no other jit function calls."""
    defined = {}
    for mod in modules if modules is not None else kernel_modules():
        for name, obj in vars(mod).items():
            if _is_jit(obj) and obj.fn.__module__ == mod.__name__:
                defined[f"{mod.__name__.rsplit('.', 1)[-1]}.{name}"] = obj
    called = set().union(set(), *(_called_jit(obj) for obj in defined.values()))
    return {k: v for k, v in sorted(defined.items()) if id(v) not in called}


# ---------------------------------------------------------------------------------------------- launch recording
def _arg_type(kernel: str, name: str, value) -> str:
    """Triton's signature type of a runtime argument (as the JIT's specialisation maps it)."""
    import torch
    from triton._utils import canonicalize_dtype

    if isinstance(value, torch.Tensor):
        return "*" + canonicalize_dtype(value.dtype)
    if isinstance(value, bool):
        return "u1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"{kernel}: argument {name} has a type the AOT test does not map: {type(value).__name__}")


class _Recorder:
    """Stands in for a kernel: ``rec[grid](*args, **kw)`` records the launch instead of running it."""

    def __init__(self, key: str, kernel, log: list, scenario: list):
        self.key, self.kernel, self.log, self.scenario = key, kernel, log, scenario

    def __getitem__(self, grid):
        return lambda *args, **kw: self.log.append(self._case(args, kw))

    def _case(self, args, kw) -> dict:
        params = {p.name: p for p in self.kernel.params}
        values = dict(zip(self.kernel.arg_names, args))
        values.update({k: v for k, v in kw.items() if k in params})
        options = {k: v for k, v in kw.items() if k not in params}  # num_warps, num_stages, ...
        signature, constexprs, aligned = {}, {}, []
        for i, name in enumerate(self.kernel.arg_names):
            if name not in values and params[name].default is inspect.Parameter.empty:
                raise TypeError(f"{self.key}: launched without argument {name}")
            value = values.get(name, params[name].default)
            if params[name].is_constexpr:
                signature[name], constexprs[name] = "constexpr", value
            else:
                signature[name] = _arg_type(self.key, name, value)
                if signature[name].startswith("*"):
                    aligned.append(i)
        return dict(kernel=self.key, scenario=self.scenario[0], signature=signature, constexprs=constexprs,
                    aligned=aligned, options=options)


def _scenarios() -> list[tuple[str, object]]:
    """(name, thunk): each thunk runs one loss's Triton entry point forward (+ backward) on meta tensors."""
    import torch

    from hpc_taskology.kernels.depth_normals import depth_normal_consistency_triton
    from hpc_taskology.kernels.photometric import photometric_consistency_triton
    from hpc_taskology.kernels.segmentation import segmentation_consistency_triton
    from hpc_taskology.losses.depth_normals import DEFAULT_BETA, DEFAULT_WINDOW

    b, h, w = 2, 192, 640  # a KITTI-sized frame: more pixels than one block, as in training
    f32, bf16, f64 = torch.float32, torch.bfloat16, torch.float64

    def t(*shape, dtype=f32, grad=False):
        return torch.empty(*shape, dtype=dtype, device="meta").requires_grad_(grad)

    def backward(loss, leaves):
        leaves = [x for x in leaves if x is not None and x.requires_grad]
        if leaves:
            torch.autograd.grad(loss, leaves, allow_unused=True)  # the images get no gradient

    def depth_normals(dtype, valid, grad_depth, grad_normals):
        def run():
            z, n = t(b, 1, h, w, dtype=dtype, grad=grad_depth), t(b, 3, h, w, dtype=dtype, grad=grad_normals)
            v = t(b, 1, h, w, dtype=torch.bool) if valid else None
            loss, _ = depth_normal_consistency_triton(z, n, t(b, 3, 3, dtype=dtype), DEFAULT_BETA, DEFAULT_WINDOW, v)
            backward(loss, [z, n])
        return run

    def two_frame(fn, channels, frame_dtype, geo_dtype, motion, mask, grad):
        def run():
            f = [t(b, channels, h, w, dtype=frame_dtype, grad=grad) for _ in range(2)]
            d = [t(b, 1, h, w, dtype=geo_dtype, grad=grad) for _ in range(2)]
            pose = [t(b, 3, dtype=geo_dtype, grad=grad) for _ in range(4)]
            om = [t(b, 3, h, w, dtype=geo_dtype, grad=grad) if motion else None for _ in range(2)]
            mv = [t(b, 1, h, w, dtype=torch.bool) if mask else None for _ in range(2)]
            loss, _ = fn(*f, *d, t(b, 3, 3, dtype=geo_dtype), *pose, *om, *mv)
            backward(loss, [*f, *d, *pose, *om])
        return run

    photo, seg = photometric_consistency_triton, segmentation_consistency_triton
    return [
        ("depth_normals/fp32/both-grads", depth_normals(f32, False, True, True)),
        ("depth_normals/fp32/valid-mask/both-grads", depth_normals(f32, True, True, True)),
        ("depth_normals/fp32/depth-grad-only", depth_normals(f32, False, True, False)),
        ("depth_normals/fp32/valid-mask/normals-grad-only", depth_normals(f32, True, False, True)),
        ("depth_normals/bf16/valid-mask/both-grads", depth_normals(bf16, True, True, True)),
        ("depth_normals/fp64/both-grads", depth_normals(f64, False, True, True)),
        ("photometric/fp32/static", two_frame(photo, 3, f32, f32, False, False, True)),
        ("photometric/fp32/motion+mask", two_frame(photo, 3, f32, f32, True, True, True)),
        ("photometric/fp32/motion-no-mask", two_frame(photo, 3, f32, f32, True, False, True)),
        ("photometric/fp32/forward-only", two_frame(photo, 3, f32, f32, True, True, False)),
        ("photometric/bf16-images/motion+mask", two_frame(photo, 3, bf16, f32, True, True, True)),
        ("photometric/bf16-all/motion+mask", two_frame(photo, 3, bf16, bf16, True, True, True)),
        ("segmentation/fp32/static", two_frame(seg, 19, f32, f32, False, False, True)),
        ("segmentation/fp32/motion+mask", two_frame(seg, 19, f32, f32, True, True, True)),
        ("segmentation/fp32/motion-no-mask", two_frame(seg, 19, f32, f32, True, False, True)),
        ("segmentation/bf16-logits/motion+mask", two_frame(seg, 19, bf16, f32, True, True, True)),
        ("segmentation/bf16-all/motion+mask", two_frame(seg, 19, bf16, bf16, True, True, True)),
    ]


def record_launches() -> tuple[dict, list[dict]]:
    """Run every scenario with the kernels replaced by recorders: (kernels, distinct launch cases)."""
    modules = kernel_modules()
    kernels = jit_kernels(modules)
    log, scenario, patched = [], [None], []
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            for key, k in kernels.items():
                if obj is k:
                    patched.append((mod, name, obj))
                    setattr(mod, name, _Recorder(key, k, log, scenario))
    try:
        for name, thunk in _scenarios():
            scenario[0] = name
            thunk()
    finally:
        for mod, name, obj in patched:
            setattr(mod, name, obj)
    cases, seen = [], set()
    for c in log:
        key = json.dumps([c["kernel"], c["signature"], c["constexprs"], c["options"]], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            cases.append(c)
    return kernels, cases


def _features(case: dict) -> set:
    """What a case exercises: each (argument, type) and (constexpr, value) of its kernel."""
    out = {(case["kernel"], n, ty) for n, ty in case["signature"].items() if ty != "constexpr"}
    out |= {(case["kernel"], n, repr(v)) for n, v in case["constexprs"].items()}
    out |= {(case["kernel"], o, repr(v)) for o, v in case["options"].items()}
    return out


def covering_cases(cases: list[dict]) -> list[dict]:
    """A small subset (greedy set cover) with every argument type and constexpr value of every kernel at least once."""
    left, chosen, todo = set().union(*map(_features, cases)), [], list(cases)
    while left:
        best = max(todo, key=lambda c: len(_features(c) & left))
        chosen.append(best)
        todo.remove(best)
        left -= _features(best)
    return sorted(chosen, key=cases.index)


# ------------------------------------------------------------------------------------------------------ compiling
_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def occupancy(regs: int, num_warps: int, smem: int) -> float:
    """Resident warps per H100 SM / 64, from registers (allocated per warp in units of 256), threads, blocks and
    shared memory (CUDA occupancy calculator rules for sm_90)."""
    regs_per_warp = -(-regs * 32 // 256) * 256
    blocks = min(REGS_PER_SM // (regs_per_warp * num_warps), MAX_THREADS_PER_SM // (32 * num_warps),
                 MAX_BLOCKS_PER_SM)
    if smem:
        blocks = min(blocks, SMEM_PER_SM // (smem + SMEM_PER_BLOCK_RESERVED))
    return blocks * num_warps * 32 / MAX_THREADS_PER_SM


@functools.lru_cache(maxsize=1)
def _kernels_by_name() -> dict:
    return jit_kernels()


def compile_case(case: dict) -> dict:
    """Compile one recorded launch for sm_90 down to a cubin: the case plus its resources, or the error."""
    import triton
    from triton.backends.compiler import GPUTarget

    src = triton.compiler.ASTSource(fn=_kernels_by_name()[case["kernel"]], signature=case["signature"],
                                    constexprs=case["constexprs"],
                                    attrs={(i,): [["tt.divisibility", 16]] for i in case["aligned"]})
    out, t0, log = dict(case), time.perf_counter(), io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG: the ptxas -v log is printed here
            ck = triton.compile(src, target=GPUTarget(*TARGET), options=dict(case["options"]))
    except Exception as e:  # reported, not raised: one broken kernel must not hide the others
        out.update(ok=False, error=f"{type(e).__name__}: {e}"[:6000])
        return out
    cubin, text, md = ck.asm.get("cubin", b""), log.getvalue(), ck.metadata
    used, spill = _PTXAS_USED.search(text), _PTXAS_SPILL.search(text)
    regs = int(used.group(1)) if used else None
    out.update(ok=True, seconds=round(time.perf_counter() - t0, 2), cubin_bytes=len(cubin),
               cubin_is_elf=cubin[:4] == b"\x7fELF", ptx_target=re.search(r"\.target (sm_\w+)", ck.asm["ptx"])[1],
               name=md.name, num_warps=md.num_warps, shared_bytes=md.shared, registers=regs,
               stack_bytes=int(spill[1]) if spill else None, spill_store_bytes=int(spill[2]) if spill else None,
               spill_load_bytes=int(spill[3]) if spill else None,
               occupancy=occupancy(regs, md.num_warps, md.shared) if regs else None)
    return out


def toolchain_problem() -> str | None:
    """Why sm_90 cubins cannot be built here (no NVIDIA backend, no runnable ptxas), or None."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas
    except ImportError as e:
        return f"triton's NVIDIA backend is not importable: {e}"
    try:
        path = get_ptxas(TARGET[1]).path
    except Exception as e:  # the knob raises when no binary is found
        return f"ptxas not found (triton/backends/nvidia/bin/ptxas or TRITON_PTXAS_PATH): {e}"
    try:
        subprocess.run([path, "--version"], check=True, capture_output=True, timeout=60)
    except Exception as e:
        return f"ptxas at {path} does not run: {e}"
    return None


def main(argv: list[str]) -> int:
    """Record, compile and print the cases: a covering subset, or every distinct launch with ``--all``."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("unset TRITON_INTERPRET: the interpreter's stand-ins cannot be compiled")
    as_json = "--json" in argv
    problem = toolchain_problem()
    if problem:
        print(json.dumps(dict(toolchain=problem)) if as_json else problem)
        return 0
    t0 = time.perf_counter()
    kernels, cases = record_launches()
    n_launches = len(cases)
    if "--all" not in argv:
        cases = covering_cases(cases)
    results = [compile_case(c) for c in cases]
    report = dict(toolchain=None, target=list(TARGET), kernels=sorted(kernels), distinct_launches=n_launches,
                  cases=results, seconds=round(time.perf_counter() - t0, 2))
    if as_json:
        print(json.dumps(report, default=repr))
        return 0
    print(f"{'kernel':<37} {'scenario':<46} warps regs spill(B) smem(B) occupancy  compile(s)")
    for r in results:
        if not r["ok"]:
            print(f"{r['kernel']:<37} {r['scenario']:<46} FAILED\n{textwrap.indent(r['error'], '    ')}")
            continue
        spill = (r["spill_store_bytes"] or 0) + (r["spill_load_bytes"] or 0)
        print(f"{r['kernel']:<37} {r['scenario']:<46} {r['num_warps']:>5} {r['registers']:>4} {spill:>8} "
              f"{r['shared_bytes']:>7} {r['occupancy']:>9.0%}  {r['seconds']:>10}")
    print(f"{len(results)} of {n_launches} distinct launches compiled for {TARGET[0]} sm_{TARGET[1]} "
          f"in {report['seconds']} s; occupancy = resident warps / 64 per SM")
    return 0 if all(r["ok"] for r in results) else 1


# ---------------------------------------------------------------------------------------------------------- tests
pytestmark = pytest.mark.kernels


@pytest.fixture(scope="module")
def aot_report(tmp_path_factory) -> dict:
    """The covering subset compiled in one subprocess (TRITON_INTERPRET unset, cache in a temporary directory)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton-cache"))
    proc = subprocess.run([sys.executable, str(HERE), "--json"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=REPO)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"AOT compile script exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
                    f"--- stderr ---\n{proc.stderr[-6000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["toolchain"]:
        pytest.skip(f"no sm_90 toolchain: {report['toolchain']}")
    return report


def _kernel_names() -> list[str]:
    try:
        return sorted(jit_kernels())
    except ImportError:  # pragma: no cover - triton missing: the fixture skips
        return []


def test_discovery_separates_kernels_from_device_functions():
    """Entry points are found in every kernel module; device functions (called from kernels) are not entry points."""
    pytest.importorskip("triton")
    names = _kernel_names()
    modules = {n.split(".")[0] for n in names}
    assert {"depth_normals", "photometric", "segmentation"} <= modules, names
    from hpc_taskology.kernels import warp_common

    device_fns = [n for n, o in vars(warp_common).items() if _is_jit(o)]
    assert device_fns and not any(n.startswith("warp_common.") for n in names), (device_fns, names)
    assert "depth_normals._normal_at" not in names and "depth_normals._dn_fwd_kernel" in names


def test_same_kernels_in_both_processes(aot_report):
    """The compiling subprocess saw the same kernels as this (interpreter-mode) process."""
    assert aot_report["kernels"] == _kernel_names()


@pytest.mark.parametrize("kernel", _kernel_names())
def test_kernel_compiles(aot_report, kernel):
    """Every launch configuration of the kernel in the covering subset compiles to an sm_90 cubin."""
    cases = [c for c in aot_report["cases"] if c["kernel"] == kernel]
    assert cases, f"{kernel}: no scenario in {HERE.name}::_scenarios launches it; add one that calls its launcher"
    for c in cases:
        where = f"{kernel} [{c['scenario']}] signature={c['signature']} constexprs={c['constexprs']}"
        assert c["ok"], f"{where}\n{c['error']}"
        assert c["cubin_is_elf"] and c["cubin_bytes"] > 0, f"{where}: no cubin"
        assert c["ptx_target"].startswith(f"sm_{TARGET[1]}"), f"{where}: PTX targets {c['ptx_target']}"


def test_no_register_spills(aot_report):
    """ptxas -v reports no spills in the float32/bfloat16 kernels (the fully unrolled depth->normals window and
    photometric channel loops spilled up to 4.7 KB per thread; see the kernels' comments).  Spills are slow
    local-memory traffic, not an error: a failure means a kernel change needs a look at
    ``python tests/test_kernels_aot.py --all``.  float64 (depth->normals only) is exempt: twice the registers per
    value, and ptxas spills a few bytes in its backward."""
    ok = [c for c in aot_report["cases"] if c["ok"] and "*fp64" not in c["signature"].values()]
    assert all(c["registers"] is not None for c in ok), "no 'Used N registers' line in the ptxas -v log"
    spilling = [(c["kernel"], c["scenario"], c["spill_store_bytes"], c["spill_load_bytes"]) for c in ok
                if c["spill_store_bytes"] or c["spill_load_bytes"]]
    assert not spilling, spilling


def test_toolchain_problem_names_missing_ptxas(monkeypatch, tmp_path):
    """The skip reason: a ptxas that does not exist is reported by its path."""
    pytest.importorskip("triton")
    import triton.backends.nvidia.compiler as nv

    if toolchain_problem():
        pytest.skip(f"no sm_90 toolchain: {toolchain_problem()}")
    missing = tmp_path / "ptxas"
    monkeypatch.setattr(nv, "get_ptxas", lambda arch: type("Tool", (), {"path": str(missing)})())
    problem = toolchain_problem()
    assert problem and str(missing) in problem


def test_occupancy_formula():
    """The occupancy bound used in the report, on hand-computed sm_90 cases."""
    assert occupancy(32, 8, 0) == 1.0  # 8 blocks x 256 threads = 2048
    assert occupancy(255, 8, 0) == 0.125  # 256 regs x 32 = 8192 per warp -> 1 block of 8 warps
    assert occupancy(101, 8, 0) == 0.25  # 104 x 32 = 3328 per warp -> 2 blocks
    assert occupancy(32, 4, 100 * 1024) == 2 * 4 / 64  # 2 x (100 KiB + 1 KiB) fit in 228 KiB


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="triton-aot-") as cache:
        os.environ.setdefault("TRITON_CACHE_DIR", cache)  # nothing cached in the repo or in ~/.triton
        os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"  # ptxas -v log -> registers, spills
        os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated (silences a warning)
        sys.exit(main(sys.argv[1:]))

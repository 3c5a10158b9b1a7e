"""Fused Triton depth → normals kernels against the pure-torch reference (forward, n_valid and both gradients).

On CPU they run under ``TRITON_INTERPRET=1`` (set by conftest.py before the kernels are imported): small shapes and
one tile per image keep them fast.  On CUDA the same comparison runs in fp32 and bf16 with tolerances set relative
to torch's own error in that dtype (Liger-Kernel ``test/transformers/test_jsd.py``; flash-attention
``tests/test_flash_attn.py``).
"""

from __future__ import annotations

import pytest
import torch

from hpc_taskology.losses.depth_normals import DepthNormalConsistency, depth_normal_consistency

pytestmark = pytest.mark.kernels

triton = pytest.importorskip("triton")
CUDA = torch.cuda.is_available()
if not CUDA:
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover - conftest sets it
        pytest.skip("needs CUDA or TRITON_INTERPRET=1", allow_module_level=True)

from hpc_taskology.kernels.depth_normals import depth_normal_consistency_triton  # noqa: E402


def make_inputs(B, H, W, dtype, device="cpu", seed=0, holes=True):
    """A smooth curved surface with a depth step, invalid depths (0, NaN, Inf, < 0) and a NaN predicted normal."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    z = 2.5 + 0.3 * torch.sin(xx / 4.0) + 0.2 * torch.cos(yy / 3.0)
    z = z.expand(B, 1, H, W) + 0.01 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    z = z.clone()
    z[:, :, H // 2:, W // 2:] += 0.6  # a step the β mask must cut
    if holes:
        z[0, 0, 2, 3] = 0.0
        z[-1, 0, H - 3, 1] = float("nan")
        z[0, 0, 1, W - 2] = float("inf")
        z[-1, 0, 3, W // 3] = -1.0
    n = torch.randn(B, 3, H, W, generator=g, dtype=torch.float64)
    n[:, 2] -= 1.5  # roughly facing the camera
    if holes:
        n[0, :, H - 2, W - 3] = float("nan")
        n[-1, :, H // 2, 2] = 0.0  # a zero predicted normal: n / max(|n|, 1e-6), still a valid pixel
    K = torch.tensor([[0.9 * W, 0, (W - 1) / 2 + 0.3], [0, 0.85 * W, (H - 1) / 2 - 0.2], [0, 0, 1]],
                     dtype=torch.float64).repeat(B, 1, 1)
    K[:, 0, 0] += torch.arange(B, dtype=torch.float64)  # per-image intrinsics
    return z.to(device, dtype), n.to(device, dtype), K.to(device, dtype)


def run(impl, z, n, K, window, valid=None, grad_depth=True, grad_normals=True, upstream=1.7, block=None):
    z = z.clone().requires_grad_(grad_depth)
    n = n.clone().requires_grad_(grad_normals)
    if impl == "triton":
        loss, n_valid = depth_normal_consistency_triton(z, n, K, 0.05, window, valid, block)
    else:
        loss, n_valid = depth_normal_consistency(z, n, K, beta=0.05, window=window, valid=valid, impl="reference")
    if grad_depth or grad_normals:
        loss.backward(torch.tensor(upstream, dtype=loss.dtype, device=loss.device))
    return loss.detach(), n_valid, z.grad, n.grad


TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-6)}

CASES = [  # (B, H, W, window, dtype, block, with valid mask)
    pytest.param(2, 13, 19, 3, torch.float64, None, False, id="B2-13x19-N3-f64"),
    pytest.param(1, 9, 11, 5, torch.float32, None, True, id="B1-9x11-N5-f32-mask"),
    pytest.param(1, 13, 19, 3, torch.float64, (8, 8), True, id="B1-13x19-N3-f64-tiles8x8"),
    pytest.param(3, 7, 10, 3, torch.float32, None, False, id="B3-7x10-N3-f32"),
    pytest.param(2, 16, 21, 5, torch.float64, (8, 16), True, id="B2-16x21-N5-f64-tiles8x16-mask"),
]


@pytest.mark.skipif(CUDA, reason="interpreter cases; the GPU runs test_cuda_matches_reference")
@pytest.mark.parametrize("B,H,W,window,dtype,block,masked", CASES)
def test_interpreter_matches_reference(B, H, W, window, dtype, block, masked):
    z, n, K = make_inputs(B, H, W, dtype)
    valid = None
    if masked:
        valid = torch.rand(B, 1, H, W, generator=torch.Generator().manual_seed(5)) > 0.3
    ref = run("reference", z, n, K, window, valid)
    tri = run("triton", z, n, K, window, valid, block=block)
    assert int(tri[1]) == int(ref[1]) and tri[1].dtype == torch.int64
    assert 0 < int(ref[1]) < z.numel()  # some pixels masked, some not: the comparison means something
    torch.testing.assert_close(tri[0], ref[0], **TOL[dtype])
    torch.testing.assert_close(tri[2], ref[2], **TOL[dtype])  # d depth
    torch.testing.assert_close(tri[3], ref[3], **TOL[dtype])  # d normals
    assert float(ref[2].abs().max()) > 0 and float(ref[3].abs().max()) > 0
    assert bool(torch.isfinite(tri[2]).all() and torch.isfinite(tri[3]).all())


@pytest.mark.skipif(CUDA, reason="interpreter case")
@pytest.mark.parametrize("grad_depth,grad_normals", [(True, False), (False, True)])
def test_interpreter_gradient_only_where_asked(grad_depth, grad_normals):
    z, n, K = make_inputs(1, 8, 9, torch.float64, seed=2)
    ref = run("reference", z, n, K, 3, grad_depth=grad_depth, grad_normals=grad_normals, upstream=-0.6)
    tri = run("triton", z, n, K, 3, grad_depth=grad_depth, grad_normals=grad_normals, upstream=-0.6)
    torch.testing.assert_close(tri[0], ref[0], **TOL[torch.float64])
    for r, t in zip(ref[2:], tri[2:]):
        assert (r is None) == (t is None)
        if r is not None:
            torch.testing.assert_close(t, r, **TOL[torch.float64])


@pytest.mark.skipif(CUDA, reason="interpreter case")
def test_interpreter_no_valid_pixel():
    z, n, K = make_inputs(1, 6, 7, torch.float32, holes=False)
    z = torch.full_like(z, float("nan"))
    loss, n_valid, gz, gn = run("triton", z, n, K, 3)
    assert int(n_valid) == 0 and float(loss) == 0.0
    assert float(gz.abs().max()) == 0.0 and float(gn.abs().max()) == 0.0


@pytest.mark.skipif(CUDA, reason="interpreter case")
def test_public_api_and_module_take_the_triton_path():
    z, n, K = make_inputs(1, 7, 8, torch.float64, seed=4)
    a = depth_normal_consistency(z, n, K, window=3, impl="triton")
    b = DepthNormalConsistency(window=3, impl="triton")(z, n, K)
    r = depth_normal_consistency(z, n, K, window=3, impl="reference")
    assert int(a[1]) == int(b[1]) == int(r[1])
    torch.testing.assert_close(a[0], r[0], **TOL[torch.float64])
    torch.testing.assert_close(b[0], r[0], **TOL[torch.float64])


# ---------------------------------------------------------------------------------------------------------- GPU
def _err(x, ref):
    """Relative L2 error of x against the float64 oracle."""
    return float((x.double() - ref).norm() / ref.norm().clamp(min=1e-30))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B,H,W,window", [(2, 67, 131, 5), (3, 128, 416, 5), (1, 45, 61, 3)])
def test_cuda_matches_reference(B, H, W, window, dtype):
    z, n, K = make_inputs(B, H, W, dtype, device="cuda")
    # the oracle sees exactly the low-precision inputs, upcast: masks agree, only arithmetic error remains
    oracle = run("reference", z.double(), n.double(), K.double(), window)
    torch_ = run("reference", z, n, K, window)
    tri = run("triton", z, n, K, window)
    assert int(tri[1]) == int(oracle[1])
    slack = {torch.float32: 1e-6, torch.bfloat16: 1e-3}[dtype]
    for k, name in ((0, "loss"), (2, "d depth"), (3, "d normals")):
        e_tri, e_torch = _err(tri[k], oracle[k]), _err(torch_[k], oracle[k])
        assert e_tri <= 2 * e_torch + slack, f"{name}: triton error {e_tri:.3g} vs torch {dtype} error {e_torch:.3g}"


# ------------------------------------------------------------------------------------------------------ benchmark
def test_bench_kernels_cli_writes_csv_plot_and_json(tmp_path):
    """``taskology bench kernels`` on a tiny size: figures land in the CSV/PNG/JSON with the bytes model applied."""
    import csv
    import json
    import subprocess
    import sys

    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "hpc_taskology", "bench", "kernels", "--kernels", "depth_normals,nonexistent",
           "--sizes", "2x8x12", "--providers", "eager,triton", "--modes", "forward,full", "--rep-ms", "5",
           "--threads", "1", "--device", "cpu", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the unknown kernel is an error, the rest still runs
    assert "unknown kernel 'nonexistent'" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = summary["kernels"]["depth_normals"]["rows"]
    assert {(r["provider"], r["mode"]) for r in rows} == {("eager", "forward"), ("eager", "full")}
    with open(out / "kernels.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 2 and all(r["status"] == "ok" for r in csv_rows)
    for r in csv_rows:
        channels = {"forward": 4, "full": 12}[r["mode"]]
        assert float(r["bytes_model_mb"]) == pytest.approx(channels * 2 * 8 * 12 * 4 / 1e6)
        gbps = channels * 2 * 8 * 12 * 4 / (float(r["ms_median"]) * 1e-3) / 1e9
        assert float(r["gbps"]) == pytest.approx(gbps, rel=1e-2, abs=1e-4)
        assert float(r["ms_p20"]) <= float(r["ms_median"]) <= float(r["ms_p80"])
        assert r["torch"] == torch.__version__ and r["device"].startswith("cpu")
        assert r["memory_method"] == "rss_hwm" and float(r["peak_mb"]) >= 0
    assert (out / "depth_normals.png").stat().st_size > 0

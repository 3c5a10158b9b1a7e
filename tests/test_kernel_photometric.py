"""Fused Triton photometric consistency vs the torch reference: loss, n_valid and every gradient.

CPU: the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest.py), float32, tiny shapes with big blocks.
GPU (marker ``gpu``): float32 and bf16 images, error bounded relative to torch's own error in that dtype
(flash-attention ``tests/test_flash_attn.py`` style).
"""

from __future__ import annotations

import pytest
import torch
from two_frame_cases import GRAD_KEYS, random_pair

from hpc_taskology.losses.photometric import photometric_consistency

pytest.importorskip("triton")
pytestmark = pytest.mark.kernels

UPSTREAM = 1.7  # an upstream gradient != 1


def run(inputs: dict, impl: str, dtype=None, upstream: float = UPSTREAM, **kw):
    """(loss, n_valid, {name: grad}) with fresh leaves; ``dtype`` casts the images only (geometry stays as given)."""
    leaves = {k: (v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v)
              for k, v in inputs.items()}
    img1, img2 = leaves.pop("frame1"), leaves.pop("frame2")
    if dtype is not None:
        img1, img2 = img1.to(dtype), img2.to(dtype)
    loss, n = photometric_consistency(img1, img2, **leaves, impl=impl, **kw)
    (loss * upstream).backward()
    return loss.detach(), n, {k: leaves[k].grad for k in GRAD_KEYS if leaves[k] is not None}


def assert_close_scaled(actual, expected, rtol, name):
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-12), msg=lambda m: f"{name}: {m}")


CASES = [
    pytest.param(dict(b=1, h=5, w=7, motion=False), id="1x5x7-static"),
    pytest.param(dict(b=2, h=9, w=11, motion=True, mask=True), id="2x9x11-motion-mask"),
    pytest.param(dict(b=3, h=8, w=6, motion=True, mask=False), id="3x8x6-motion-nomask"),
    pytest.param(dict(b=2, h=13, w=16, motion=True, mask=True, seed=5), id="2x13x16-motion-mask"),
]


@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference_forward_and_every_gradient(case):
    inputs = random_pair(case["b"], case["h"], case["w"], motion=case["motion"], mask=case.get("mask", False),
                         dtype=torch.float32, seed=case.get("seed", 0))
    ref_loss, ref_n, ref_grads = run(inputs, "reference")
    tri_loss, tri_n, tri_grads = run(inputs, "triton")
    assert int(tri_n) == int(ref_n) and tri_n.dtype == torch.int64
    torch.testing.assert_close(tri_loss, ref_loss, rtol=1e-5, atol=1e-7)
    assert set(tri_grads) == set(ref_grads)
    for k in ref_grads:
        assert torch.isfinite(tri_grads[k]).all(), k
        assert_close_scaled(tri_grads[k], ref_grads[k], 1e-4, k)


def test_triton_weights_and_tolerance_are_honoured():
    inputs = random_pair(2, 7, 9, dtype=torch.float32, seed=2)
    kw = dict(rgb_weight=0.3, ssim_weight=2.5, occlusion_rtol=0.05)
    ref_loss, ref_n, ref_grads = run(inputs, "reference", **kw)
    tri_loss, tri_n, tri_grads = run(inputs, "triton", **kw)
    assert int(tri_n) == int(ref_n)
    torch.testing.assert_close(tri_loss, ref_loss, rtol=1e-5, atol=1e-7)
    for k in ref_grads:
        assert_close_scaled(tri_grads[k], ref_grads[k], 1e-4, k)


def test_triton_forward_only_matches_reference():
    inputs = random_pair(2, 6, 7, dtype=torch.float32, requires_grad=False, seed=4)
    img1, img2 = inputs.pop("frame1"), inputs.pop("frame2")
    ref = photometric_consistency(img1, img2, **inputs, impl="reference")
    tri = photometric_consistency(img1, img2, **inputs, impl="triton")
    torch.testing.assert_close(tri[0], ref[0], rtol=1e-5, atol=1e-7)
    assert int(tri[1]) == int(ref[1])


def test_triton_no_valid_pixel_gives_zero_loss_and_zero_gradients():
    inputs = random_pair(1, 5, 6, dtype=torch.float32, seed=1)
    with torch.no_grad():
        inputs["depth1"].fill_(-1.0)
        inputs["depth2"].fill_(float("nan"))
    loss, n, grads = run(inputs, "triton")
    assert int(n) == 0 and float(loss) == 0.0
    for k, g in grads.items():
        assert torch.equal(g, torch.zeros_like(g)), k


def test_dispatch():
    inputs = random_pair(1, 4, 5, dtype=torch.float32, seed=0)
    img1, img2 = inputs.pop("frame1"), inputs.pop("frame2")
    auto, _ = photometric_consistency(img1, img2, **inputs)  # CPU tensors: the reference
    forced, _ = photometric_consistency(img1, img2, **inputs, impl="triton")
    assert "PhotometricConsistencyFunction" not in type(auto.grad_fn).__name__
    assert "PhotometricConsistencyFunction" in type(forced.grad_fn).__name__


# ---------------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 64, 96), (3, 37, 53)])
def test_gpu_error_bounded_by_torch_error(dtype, shape):
    """|triton(dtype) - ref(fp64)| <= 2 |torch ref(dtype) - ref(fp64)| + small atol, per output."""
    b, h, w = shape
    cpu = random_pair(b, h, w, dtype=torch.float64, seed=7)
    hi = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in cpu.items()}
    lo = {k: (v.float().cuda() if isinstance(v, torch.Tensor) and v.is_floating_point() else
              (v.cuda() if isinstance(v, torch.Tensor) else v)) for k, v in cpu.items()}
    hi_loss, hi_n, hi_grads = run(hi, "reference")
    t_loss, t_n, t_grads = run(lo, "reference", dtype=dtype)
    k_loss, k_n, k_grads = run(lo, "triton", dtype=dtype)
    # n_valid may differ by a few boundary pixels between float64 and float32 geometry
    assert abs(int(k_n) - int(t_n)) <= max(2, int(t_n) // 1000)
    for name, a, t, e in [("loss", k_loss, t_loss, hi_loss)] + [(k, k_grads[k], t_grads[k], hi_grads[k])
                                                                for k in hi_grads]:
        e = e.double()
        scale = float(e.abs().max())
        torch_err = float((t.double() - e).abs().max())
        kern_err = float((a.double() - e).abs().max())
        assert kern_err <= 2 * torch_err + 1e-5 * scale + 1e-7, (name, kern_err, torch_err, scale)


def test_triton_many_small_blocks_match_reference(monkeypatch):
    """Blocks of 32 pixels: partial sums over several programs and SSIM windows straddling block edges."""
    import hpc_taskology.kernels.photometric as kp

    monkeypatch.setattr(kp, "pixel_block", lambda hw: 32)
    inputs = random_pair(2, 9, 11, motion=True, mask=True, dtype=torch.float32, seed=9)
    ref_loss, ref_n, ref_grads = run(inputs, "reference")
    tri_loss, tri_n, tri_grads = run(inputs, "triton")
    assert int(tri_n) == int(ref_n)
    torch.testing.assert_close(tri_loss, ref_loss, rtol=1e-5, atol=1e-7)
    for k in ref_grads:
        assert_close_scaled(tri_grads[k], ref_grads[k], 1e-4, k)

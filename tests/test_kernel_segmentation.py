"""Fused Triton segmentation-logit consistency vs the torch reference: loss, n_valid and both logit gradients.

CPU: the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest.py), float32, tiny shapes with big blocks.
GPU (marker ``gpu``): float32 and bf16 logits, error bounded relative to torch's own error in that dtype.
"""

from __future__ import annotations

import pytest
import torch
from two_frame_cases import random_pair

from hpc_taskology.losses.segmentation import segmentation_consistency

pytest.importorskip("triton")
pytestmark = pytest.mark.kernels

UPSTREAM = 0.6  # an upstream gradient != 1


def run(inputs: dict, impl: str, dtype=None, upstream: float = UPSTREAM, **kw):
    """(loss, n_valid, (d logits1, d logits2)) with fresh logit leaves cast to ``dtype`` (geometry as given)."""
    geo = {k: v for k, v in inputs.items() if k not in ("frame1", "frame2")}
    l1, l2 = (inputs[k].detach().clone() for k in ("frame1", "frame2"))
    if dtype is not None:
        l1, l2 = l1.to(dtype), l2.to(dtype)
    l1.requires_grad_(True)
    l2.requires_grad_(True)
    loss, n = segmentation_consistency(l1, l2, **geo, impl=impl, **kw)
    (loss * upstream).backward()
    return loss.detach(), n, (l1.grad, l2.grad)


CASES = [
    pytest.param(dict(b=1, h=5, w=7, c=3, motion=False), id="1x3x5x7-static"),
    pytest.param(dict(b=2, h=9, w=11, c=8, motion=True, mask=True), id="2x8x9x11-motion-mask"),
    pytest.param(dict(b=3, h=8, w=6, c=1, motion=True, mask=False), id="3x1x8x6-motion-nomask"),
    pytest.param(dict(b=2, h=13, w=16, c=5, motion=True, mask=True, seed=5), id="2x5x13x16-motion-mask"),
]


@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference_forward_and_gradients(case):
    inputs = random_pair(case["b"], case["h"], case["w"], channels=case["c"], motion=case["motion"],
                         mask=case.get("mask", False), dtype=torch.float32, seed=case.get("seed", 0),
                         requires_grad=False)
    ref_loss, ref_n, ref_g = run(inputs, "reference")
    tri_loss, tri_n, tri_g = run(inputs, "triton")
    assert int(tri_n) == int(ref_n) and tri_n.dtype == torch.int64
    torch.testing.assert_close(tri_loss, ref_loss, rtol=1e-5, atol=1e-7)
    for name, a, e in zip(("logits1", "logits2"), tri_g, ref_g):
        scale = float(e.abs().max())
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


def test_triton_gradients_reach_only_the_logits():
    inputs = random_pair(2, 6, 7, channels=4, dtype=torch.float32, seed=3)
    run(inputs, "triton")
    assert all(inputs[k].grad is None for k in ("depth1", "rot_1to2", "trans_1to2", "obj_motion_1to2"))


def test_triton_no_valid_pixel_gives_zero_loss_and_zero_gradients():
    inputs = random_pair(1, 5, 6, channels=3, dtype=torch.float32, seed=1, requires_grad=False)
    inputs["depth1"].fill_(0.0)
    inputs["depth2"].fill_(float("inf"))
    loss, n, grads = run(inputs, "triton")
    assert int(n) == 0 and float(loss) == 0.0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_dispatch():
    inputs = random_pair(1, 4, 5, channels=2, dtype=torch.float32, seed=0, requires_grad=False)
    l1, l2 = inputs.pop("frame1").requires_grad_(True), inputs.pop("frame2")
    auto, _ = segmentation_consistency(l1, l2, **inputs)  # CPU tensors: the reference
    forced, _ = segmentation_consistency(l1, l2, **inputs, impl="triton")
    assert "SegmentationConsistencyFunction" not in type(auto.grad_fn).__name__
    assert "SegmentationConsistencyFunction" in type(forced.grad_fn).__name__


def test_triton_many_small_blocks_match_reference(monkeypatch):
    """Blocks of 32 pixels: partial sums over several programs, atomics from several programs into one tap."""
    import hpc_taskology.kernels.segmentation as ks

    monkeypatch.setattr(ks, "pixel_block", lambda hw: 32)
    inputs = random_pair(2, 9, 11, channels=3, dtype=torch.float32, seed=9, requires_grad=False)
    ref_loss, ref_n, ref_g = run(inputs, "reference")
    tri_loss, tri_n, tri_g = run(inputs, "triton")
    assert int(tri_n) == int(ref_n)
    torch.testing.assert_close(tri_loss, ref_loss, rtol=1e-5, atol=1e-7)
    for a, e in zip(tri_g, ref_g):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 8, 64, 96), (3, 5, 37, 53)])
def test_gpu_error_bounded_by_torch_error(dtype, shape):
    """|triton(dtype) - ref(fp64)| <= 2 |torch ref(dtype) - ref(fp64)| + small atol, per output."""
    b, c, h, w = shape
    cpu = random_pair(b, h, w, channels=c, dtype=torch.float64, seed=7, requires_grad=False)
    hi = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in cpu.items()}
    lo = {k: (v.float().cuda() if isinstance(v, torch.Tensor) and v.is_floating_point() else
              (v.cuda() if isinstance(v, torch.Tensor) else v)) for k, v in cpu.items()}
    hi_loss, _, hi_g = run(hi, "reference")
    t_loss, t_n, t_g = run(lo, "reference", dtype=dtype)
    k_loss, k_n, k_g = run(lo, "triton", dtype=dtype)
    assert abs(int(k_n) - int(t_n)) <= max(2, int(t_n) // 1000)
    for name, a, t, e in [("loss", k_loss, t_loss, hi_loss), ("logits1", k_g[0], t_g[0], hi_g[0]),
                          ("logits2", k_g[1], t_g[1], hi_g[1])]:
        e = e.double()
        scale = float(e.abs().max())
        torch_err = float((t.double() - e).abs().max())
        kern_err = float((a.double() - e).abs().max())
        assert kern_err <= 2 * torch_err + 1e-5 * scale + 1e-7, (name, kern_err, torch_err, scale)

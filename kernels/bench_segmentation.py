"""Benchmark of the segmentation-logit consistency loss (``taskology bench kernels --kernels segmentation``).

Providers (harness :mod:`hpc_taskology.kernels.bench_utils`): the fused Triton kernels, the eager torch reference
:func:`hpc_taskology.losses.segmentation.segmentation_consistency_reference` and ``torch.compile`` of it (Kornia has no
equivalent).

Sizes are ``BxHxW`` with C = 8 classes (Taskology supp. Table 4: 7 movable classes + "others"); two frames, both
directions, object motion and movable masks.  Logits are in the benchmark dtype; geometry stays float32.

Bytes model (minimal traffic, the same for every provider): forward reads both logit maps (C ch each, benchmark
dtype), both depths and object motions (1 + 3 float32 channels each) and the movable masks (1 byte each); backward
and full also write the gradients of both logit maps (C ch each, benchmark dtype).
"""

from __future__ import annotations

import torch

from hpc_taskology.kernels.bench_utils import Case, KernelBench
from hpc_taskology.losses.segmentation import segmentation_consistency_reference

CLASSES = 8
SIZES = ["8x128x416", "32x384x1280"]
SWEEP = ["8x64x208", "8x256x832", "16x384x1280"]
CPU_SIZES = ["2x64x208", "4x128x416"]


def make_case(size: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Case:
    """Random logits and a KITTI-like camera with small ego-motion and object motion on ~30 % of pixels."""
    b, h, w = size
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g) * scale + shift).to(device)

    K = torch.tensor([[0.58 * w, 0.0, 0.5 * w - 0.5], [0.0, 1.92 * h, 0.5 * h - 0.5], [0.0, 0.0, 1.0]],
                     device=device).expand(b, 3, 3).contiguous()
    logits1 = rnd(b, CLASSES, h, w, scale=8.0, shift=-4.0).to(dtype).requires_grad_(True)
    logits2 = rnd(b, CLASSES, h, w, scale=8.0, shift=-4.0).to(dtype).requires_grad_(True)
    inputs = dict(
        logits1=logits1, logits2=logits2,
        depth1=rnd(b, 1, h, w, scale=40.0, shift=5.0), depth2=rnd(b, 1, h, w, scale=40.0, shift=5.0), K=K,
        rot_1to2=rnd(b, 3, scale=0.02, shift=-0.01), trans_1to2=rnd(b, 3, scale=0.2, shift=-0.1),
        rot_2to1=rnd(b, 3, scale=0.02, shift=-0.01), trans_2to1=rnd(b, 3, scale=0.2, shift=-0.1),
        obj_motion_1to2=rnd(b, 3, h, w, scale=0.1), obj_motion_2to1=rnd(b, 3, h, w, scale=0.1),
        movable1=rnd(b, 1, h, w) < 0.3, movable2=rnd(b, 1, h, w) < 0.3,
    )
    return Case(inputs=inputs, grad_tensors=[logits1, logits2])


def bytes_moved(size: tuple[int, ...], mode: str, elem_bytes: int) -> int:
    """Minimal bytes (see the module docstring)."""
    b, h, w = size
    px = b * h * w
    read = px * (2 * CLASSES * elem_bytes + 2 * 4 * 4 + 2 * 1)
    write = px * 2 * CLASSES * elem_bytes
    return read if mode == "forward" else read + write


def _triton(**kw):
    from hpc_taskology.kernels.segmentation import segmentation_consistency_triton

    return segmentation_consistency_triton(**kw)


def get_bench() -> KernelBench:
    return KernelBench(name="segmentation", make_case=make_case, reference=segmentation_consistency_reference,
                       bytes_moved=bytes_moved, sizes=SIZES, sweep=SWEEP, cpu_sizes=CPU_SIZES,
                       size_meaning=f"BxHxW (C={CLASSES} classes, both directions, object motion)", triton=_triton)

"""Benchmark of the photometric consistency loss (``taskology bench kernels --kernels photometric``).

Providers (harness :mod:`hpc_taskology.kernels.bench_utils`): the fused Triton kernels, the eager torch reference
:func:`hpc_taskology.losses.photometric.photometric_consistency_reference` and ``torch.compile`` of it (Kornia has no
equivalent: its ``warp_frame_depth`` + ``ssim_loss`` have no validity/occlusion masks or weighted SSIM).

Sizes are ``BxHxW``: two frames, both directions, with object motion and a movable mask (the Taskology setting).
Images are in the benchmark dtype; depth, intrinsics, poses and motion stay float32 (pixel coordinates up to 1280 do
not survive bf16).

Bytes model (minimal traffic, every input read once, every output written once; the same for every provider):
forward reads ``img1, img2`` (3 ch each, benchmark dtype), ``depth1, depth2`` (1 ch float32 each), ``obj_motion``
(3 ch float32 each) and the movable masks (1 byte each); backward and full also write the gradients of the depths
and object motions (2 x 4 float32 channels).
"""

from __future__ import annotations

import torch

from hpc_taskology.kernels.bench_utils import Case, KernelBench
from hpc_taskology.losses.photometric import photometric_consistency_reference

SIZES = ["8x128x416", "32x384x1280"]
SWEEP = ["8x64x208", "8x256x832", "16x384x1280"]
CPU_SIZES = ["2x64x208", "4x128x416"]


def make_case(size: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Case:
    """A textured random pair with a KITTI-like camera, small ego-motion and object motion on ~30 % of pixels."""
    b, h, w = size
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g) * scale + shift).to(device)

    f32 = torch.float32
    K = torch.tensor([[0.58 * w, 0.0, 0.5 * w - 0.5], [0.0, 1.92 * h, 0.5 * h - 0.5], [0.0, 0.0, 1.0]],
                     device=device).expand(b, 3, 3).contiguous()
    grads = []

    def leaf(t):
        t = t.to(f32).requires_grad_(True)
        grads.append(t)
        return t

    inputs = dict(
        img1=rnd(b, 3, h, w).to(dtype), img2=rnd(b, 3, h, w).to(dtype),
        depth1=leaf(rnd(b, 1, h, w, scale=40.0, shift=5.0)), depth2=leaf(rnd(b, 1, h, w, scale=40.0, shift=5.0)),
        K=K,
        rot_1to2=leaf(rnd(b, 3, scale=0.02, shift=-0.01)), trans_1to2=leaf(rnd(b, 3, scale=0.2, shift=-0.1)),
        rot_2to1=leaf(rnd(b, 3, scale=0.02, shift=-0.01)), trans_2to1=leaf(rnd(b, 3, scale=0.2, shift=-0.1)),
        obj_motion_1to2=leaf(rnd(b, 3, h, w, scale=0.1)), obj_motion_2to1=leaf(rnd(b, 3, h, w, scale=0.1)),
        movable1=rnd(b, 1, h, w) < 0.3, movable2=rnd(b, 1, h, w) < 0.3,
    )
    return Case(inputs=inputs, grad_tensors=grads)


def bytes_moved(size: tuple[int, ...], mode: str, elem_bytes: int) -> int:
    """Minimal bytes (see the module docstring)."""
    b, h, w = size
    px = b * h * w
    read = px * (2 * 3 * elem_bytes + 2 * 1 * 4 + 2 * 3 * 4 + 2 * 1)
    write = px * 2 * 4 * 4
    return read if mode == "forward" else read + write


def _triton(**kw):
    from hpc_taskology.kernels.photometric import photometric_consistency_triton

    return photometric_consistency_triton(**kw)


def get_bench() -> KernelBench:
    return KernelBench(name="photometric", make_case=make_case, reference=photometric_consistency_reference,
                       bytes_moved=bytes_moved, sizes=SIZES, sweep=SWEEP, cpu_sizes=CPU_SIZES,
                       size_meaning="BxHxW (two RGB frames, both directions, object motion)", triton=_triton)

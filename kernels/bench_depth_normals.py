"""Benchmark of the depth → normals consistency loss (``taskology bench kernels --kernels depth_normals``).

Providers (harness :mod:`hpc_taskology.kernels.bench_utils`): the fused Triton kernels
(:mod:`hpc_taskology.kernels.depth_normals`), the eager torch reference
(:mod:`hpc_taskology.losses.depth_normals`, without the input checks that would force a host sync), ``torch.compile``
of that reference, and — only if ``import kornia`` works — Kornia's ``depth_to_normals`` followed by a cosine distance
(a rough equivalent: 3×3 Sobel tangents, no validity mask, no N×N window, its own normal orientation).

Sizes are ``BxHxW``: depth (B, 1, H, W) in metres on a smooth surface with a depth step, predicted normals
(B, 3, H, W), KITTI-like intrinsics; β = 0.05, N = 5.  Both depth and normals require grad (the loss's two users
each need one of them; benchmarking both is the upper bound).

Bytes model (minimal traffic, every input read once, every output written once; the same for every provider):
forward reads depth + normals (4 channels); backward reads them again and writes d depth + d normals (4 + 4
channels); full is the sum (12 channels × B·H·W × element size).  The Triton backward also writes and reads a
6-channel float32 scratch (see kernels/depth_normals.py), which this model does not count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hpc_taskology.kernels.bench_utils import Case, KernelBench
from hpc_taskology.losses.depth_normals import DEFAULT_BETA, DEFAULT_WINDOW, _reference

SIZES = ["8x128x416", "32x384x1280"]
SWEEP = ["1x128x416", "4x128x416", "16x128x416", "8x256x832", "16x384x1280"]
CPU_SIZES = ["1x64x208", "2x128x416", "8x128x416"]


def make_case(size: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Case:
    """Smooth depth with a 20 % step and noise, random normals facing the camera, KITTI-like K (f ≈ 0.58 W)."""
    if len(size) != 3:
        raise ValueError(f"--sizes: depth_normals expects BxHxW, got {'x'.join(map(str, size))}")
    b, h, w = size
    g = torch.Generator(device="cpu").manual_seed(0)
    yy = torch.linspace(0, 6, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 12, w).view(1, 1, 1, w)
    z = 10.0 + 2.0 * torch.sin(xx) * torch.cos(yy) + 0.01 * torch.rand(b, 1, h, w, generator=g)
    z[..., h // 2:, w // 3:] *= 1.2
    n = torch.randn(b, 3, h, w, generator=g)
    n[:, 2] -= 2.0
    K = torch.tensor([[0.58 * w, 0.0, 0.5 * w - 0.5], [0.0, 1.92 * h, 0.5 * h - 0.5], [0.0, 0.0, 1.0]])
    depth = z.to(device, dtype).requires_grad_(True)
    normals = n.to(device, dtype).requires_grad_(True)
    return Case(inputs=dict(depth=depth, normals=normals, K=K.expand(b, 3, 3).contiguous().to(device)),
                grad_tensors=[depth, normals])


def bytes_moved(size: tuple[int, ...], mode: str, elem_bytes: int) -> int:
    """Minimal bytes (see the module docstring)."""
    b, h, w = size
    px = b * h * w * elem_bytes
    return {"forward": 4 * px, "backward": 8 * px, "full": 12 * px}[mode]


def reference(depth, normals, K):
    """The reference loss without input checks (one graph for torch.compile)."""
    return _reference(depth, normals, K, DEFAULT_BETA, DEFAULT_WINDOW, None)[0]


def triton_loss(depth, normals, K):
    from hpc_taskology.kernels.depth_normals import depth_normal_consistency_triton

    return depth_normal_consistency_triton(depth, normals, K, DEFAULT_BETA, DEFAULT_WINDOW)[0]


def kornia_factory():
    """Kornia ``depth_to_normals`` + mean cosine distance, or None if Kornia lacks it."""
    try:
        from kornia.geometry.depth import depth_to_normals
    except ImportError:
        return None

    def loss(depth, normals, K):
        nd = depth_to_normals(depth, K.to(depth.dtype))
        return (1 - F.cosine_similarity(nd, normals, dim=1)).mean()

    return loss


def get_bench() -> KernelBench:
    return KernelBench(name="depth_normals", make_case=make_case, reference=reference, bytes_moved=bytes_moved,
                       sizes=SIZES, sweep=SWEEP, cpu_sizes=CPU_SIZES,
                       size_meaning="BxHxW (depth B,1,H,W + normals B,3,H,W; beta 0.05, window 5)",
                       triton=triton_loss, kornia=kornia_factory)

"""Consistency losses: where the tasks meet (Taskology §3.2).

Three layers per loss (Liger-Kernel ``transformers/functional.py``, Kornia ``losses/``):
``torch.autograd.Function`` over fused Triton kernels (``hpc_taskology.kernels``) → functional API here, which takes
the Triton path on CUDA and the pure-torch reference elsewhere → ``nn.Module`` holding only hyperparameters.
The references are the single oracle that tests and benchmarks share.
"""

from .depth_normals import (
    DepthNormalConsistency,
    depth_normal_consistency,
    depth_normal_consistency_reference,
    normals_from_depth,
)
from .photometric import PhotometricConsistency, photometric_consistency, photometric_consistency_reference
from .segmentation import SegmentationConsistency, segmentation_consistency, segmentation_consistency_reference
from .warp import axis_angle_to_matrix, bilinear_sample, warp_coords

__all__ = [
    "DepthNormalConsistency", "depth_normal_consistency", "depth_normal_consistency_reference", "normals_from_depth",
    "PhotometricConsistency", "photometric_consistency", "photometric_consistency_reference",
    "SegmentationConsistency", "segmentation_consistency", "segmentation_consistency_reference",
    "axis_angle_to_matrix", "bilinear_sample", "warp_coords",
]

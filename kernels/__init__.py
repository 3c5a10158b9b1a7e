"""Fused Triton consistency losses, installed as ``hpc_taskology.kernels``."""

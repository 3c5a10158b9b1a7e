"""Consistency losses: where the tasks meet (Taskology §3.2).

Three layers per loss (Liger-Kernel ``transformers/functional.py``, Kornia ``losses/``):
``torch.autograd.Function`` over fused Triton kernels (``hpc_taskology.kernels``) → functional API here, which takes
the Triton path on CUDA and the pure-torch reference elsewhere → ``nn.Module`` holding only hyperparameters.
The references are the single oracle that tests and benchmarks share.
"""

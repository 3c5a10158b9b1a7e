"""hpc_taskology: task networks trained collectively over MPI task groups.

Implements Taskology (Lu et al., CVPR 2021) and the cross-view consistency of Pseudo-MTL: each task group trains its
own network on its dedicated dataset and on consistency with its peers' stale predictions on a shared mediator
dataset.
"""

__version__ = "0.1.0"

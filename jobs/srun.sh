#!/usr/bin/env bash
# Cluster launcher inside a SLURM allocation (salloc or sbatch): srun places the ranks.
#
#   jobs/srun.sh -n 4 train jobs/depth_normals.toml           # = taskology train ... on 4 ranks
#
# Runs `python -m mpi4py -m hpc_taskology ARGS` so a rank that raises aborts the whole job instead of hanging it.
# Needs a venv built against the cluster's MPI: jobs/setup.sh --system-mpi --venv DIR (after `module load` of your
# MPI).  SRUN_MPI (default pmix) selects srun's --mpi plugin; set SRUN_MPI= to use the site default.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${TASKOLOGY_VENV:-$here/.venv}"
n=""
if [ "${1:-}" = "-n" ]; then n="$2"; shift 2; fi
mpi_flag=()
[ -n "${SRUN_MPI-pmix}" ] && mpi_flag=(--mpi="${SRUN_MPI-pmix}")
export OMPI_MCA_osc="${OMPI_MCA_osc:-^ucx}"
exec srun ${n:+-n "$n"} "${mpi_flag[@]}" --kill-on-bad-exit=1 "$venv/bin/python" -m mpi4py -m hpc_taskology "$@"

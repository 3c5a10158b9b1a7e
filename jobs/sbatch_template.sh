#!/usr/bin/env bash
# SLURM batch template: copy, set the #SBATCH lines and the module names for your site, then `sbatch` it.
#
# One rank per task-group member: the job file's [[tasks]].ranks must add up to --ntasks.
#SBATCH --job-name=taskology
#SBATCH --nodes=1
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"

# Your site's MPI (and compiler) modules; the venv is built against them once (--system-mpi).
# module load gcc openmpi
JOB=${JOB:-jobs/depth_normals.toml}
VENV=${TASKOLOGY_VENV:-$PWD/.venv-cluster}
TASKOLOGY_VENV=$VENV jobs/setup.sh --system-mpi --venv "$VENV"

export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
TASKOLOGY_VENV=$VENV jobs/srun.sh -n "$SLURM_NTASKS" train "$JOB" "$@"

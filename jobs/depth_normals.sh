#!/usr/bin/env bash
# The main job end to end on the shipped real data (Taskology Table 3 at small scale):
#   1. pack the real HoloLens frames (mediator 00003-00152, evaluation 00153-00202) and the TUM pairs into HDF5;
#   2. simulate labelled indoor rooms (the dedicated datasets), split over MPI ranks;
#   3. train (A) each task alone on simulated labels, then (B) both collectively with consistency on the real
#      mediator frames — each a two-group MPI job with Horovod averaging inside each group;
#   4. evaluate both on the held-out real frames and TUM, and write the comparison table.
#
#   jobs/depth_normals.sh [-n RANKS] [--steps N]      (RANKS = 4: 2 per group, the default; or 2: 1 per group)
# Steps already done (packed files, simulated data) are kept; trainings always run afresh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
n=4
steps=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --steps) steps=(--steps "$2"); shift 2 ;;
    *) echo "depth_normals.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
export PATH="$here/.venv/bin:$PATH"
shared="${TASKOLOGY_SHARED_DATA:-$here/../shared/data}"
job=jobs/depth_normals.toml
half=$((n / 2))
mpi() { jobs/mpirun.sh -n "$1" python -m mpi4py -m hpc_taskology "${@:2}"; }
t0=$(date +%s)
stamp() { echo "[depth_normals.sh $(( $(date +%s) - t0 )) s] $*"; }

mkdir -p datasets
[ -f datasets/hololens_mediator.h5 ] || mpi 2 pack hololens "$shared/hololens_rgbd_000" --frames 3:152 -o datasets/hololens_mediator.h5
[ -f datasets/hololens_eval.h5 ] || taskology pack hololens "$shared/hololens_rgbd_000" --frames 153:202 -o datasets/hololens_eval.h5
[ -f datasets/tum_eval.h5 ] || taskology pack tum "$shared/tum_rgbd_pairs" -o datasets/tum_eval.h5
stamp "real frames packed"
[ -f datasets/sim_indoor.h5 ] || mpi 2 simulate jobs/sim_indoor.toml -o datasets/sim_indoor.h5
stamp "simulated labelled rooms ready"

# The job file gives 2 ranks per group; -n 2 runs 1 per group.
set_ranks=(--set "tasks.depth.ranks=$half" --set "tasks.normals.ranks=$half")
mpi "$n" train "$job" "${set_ranks[@]}" --no-consistency --name depth_normals_alone "${steps[@]}"
stamp "(A) trained alone"
mpi "$n" train "$job" "${set_ranks[@]}" --name depth_normals "${steps[@]}"
stamp "(B) trained collectively"
for run in depth_normals_alone depth_normals; do
  taskology eval "$job" --name "$run" --data datasets/hololens_eval.h5 --data datasets/tum_eval.h5
done
taskology report runs/depth_normals_alone runs/depth_normals --label "(A) each task alone" \
  --label "(B) collectively, with consistency" -o runs/depth_normals/table.md
stamp "done: runs/depth_normals/table.md, runs/*/eval/*.png"

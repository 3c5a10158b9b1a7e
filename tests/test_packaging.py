"""Packaging: every source package is installed, and kernels/ installs as hpc_taskology.kernels (not 'kernels')."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_and_kernels_is_mapped():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "hpc_taskology").rglob("__init__.py")}
    found.add("hpc_taskology.kernels")
    assert found == listed, f"packages missing from pyproject.toml: {found - listed}; stale: {listed - found}"
    assert cfg["package-dir"]["hpc_taskology.kernels"] == "kernels"
    assert "kernels" not in listed  # a taken name on PyPI


def test_kernels_import_as_subpackage():
    import hpc_taskology.kernels as k

    assert Path(k.__file__).resolve().parent == REPO / "kernels"

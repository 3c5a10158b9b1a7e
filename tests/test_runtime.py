"""The MPI task-group runtime: real multi-rank runs with Horovod process sets and torch.distributed subgroups."""

import pytest

from conftest import run_mpi, run_mpi_cli
from hpc_taskology.sampler import GroupShardedSampler


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["horovod", "torch"])
@pytest.mark.parametrize("n", [2, 4])
def test_groups_average_only_inside_and_resume(n, backend, tmp_path):
    proc = run_mpi(n, "runtime_groups.py", backend, str(tmp_path), timeout=240)
    assert f"runtime_groups OK backend={backend} ranks={n}" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["horovod", "torch"])
def test_topology_cli_prints_one_line_per_rank(backend, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        '[job]\nname = "t"\n'
        '[[tasks]]\nname = "depth"\nranks = 3\n[tasks.model]\nkind = "unet"\n'
        '[[tasks]]\nname = "normals"\nranks = 1\n[tasks.model]\nkind = "unet"\n'
    )
    proc = run_mpi_cli(4, "topology", str(job), "--backend", backend, timeout=120)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("task=")]
    assert lines == [
        f"task=depth world_rank=0/4 group_rank=0 group_size=3 backend={backend}",
        f"task=depth world_rank=1/4 group_rank=1 group_size=3 backend={backend}",
        f"task=depth world_rank=2/4 group_rank=2 group_size=3 backend={backend}",
        f"task=normals world_rank=3/4 group_rank=0 group_size=1 backend={backend}",
    ]


@pytest.mark.mpi
def test_topology_cli_rejects_wrong_world_size(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "t"\n[[tasks]]\nname = "a"\nranks = 3\n[tasks.model]\nkind = "mlp"\n')
    proc = run_mpi_cli(2, "topology", str(job), check=False, timeout=120)
    assert proc.returncode != 0
    assert "a=3 = 3, but the MPI world has 2 rank(s)" in proc.stderr


def test_sampler_shards_are_disjoint_and_cover_an_epoch():
    n, b, size = 50, 4, 3
    samplers = [GroupShardedSampler(n, b, r, size, seed=5) for r in range(size)]
    per_epoch = samplers[0].batches_per_epoch
    assert per_epoch == 50 // 12
    seen = [i for s in samplers for step in range(per_epoch) for i in s.batch(step)]
    assert len(seen) == len(set(seen)) == per_epoch * b * size
    # the next epoch is a different permutation, and batches are a pure function of the step
    assert list(samplers[0].batch(per_epoch)) != list(samplers[0].batch(0))
    assert list(GroupShardedSampler(n, b, 1, size, seed=5).batch(7)) == list(samplers[1].batch(7))


def test_sampler_state_mismatch_is_an_error():
    s = GroupShardedSampler(100, 4, 0, 2, seed=1)
    assert s.check_state(s.state_dict(17)) == 17
    with pytest.raises(ValueError, match="batch_size=8 differs"):
        s.check_state({**s.state_dict(3), "batch_size": 8})
    with pytest.raises(ValueError, match="smaller than one global batch"):
        GroupShardedSampler(5, 4, 0, 2)


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["horovod", "torch"])
@pytest.mark.parametrize("n", [2, 4])
def test_a_slow_group_never_holds_back_another(n, backend, tmp_path):
    proc = run_mpi(n, "runtime_no_wait.py", backend, str(tmp_path), timeout=240)
    assert f"runtime_no_wait OK backend={backend} ranks={n}" in proc.stdout

"""Job-file parsing and validation: every error names the bad field."""

import pytest

from hpc_taskology.config import ConfigError, config_from_dict, load_config
from hpc_taskology.topology import TopologyError, check_world_size, task_rank_blocks


def doc(**overrides):
    d = {
        "job": {"name": "j", "backend": "horovod"},
        "tasks": [
            {"name": "depth", "ranks": 2, "model": {"kind": "unet"}},
            {"name": "normals", "ranks": 1, "model": {"kind": "unet", "out_channels": 3}},
        ],
    }
    d.update(overrides)
    return d


def test_parses_typed_fields_and_defaults():
    cfg = config_from_dict(doc())
    assert cfg.total_ranks == 3
    assert cfg.task("normals").model.out_channels == 3
    assert cfg.task("depth").optimizer.lr == 1e-3
    assert cfg.task("depth").kind == "depth"  # kind defaults to the task name
    assert cfg.board.dtype == "float16"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["tasks"][1]["optimizer"].update(lr=-1.0), "tasks[1].optimizer.lr"),
        (lambda d: d["tasks"][0].update(ranks=0), "tasks[0].ranks"),
        (lambda d: d["job"].update(backend="nccl"), "job.backend"),
        (lambda d: d["job"].update(steps="ten"), "job.steps"),
        (lambda d: d["tasks"][0]["model"].update(kind=""), "tasks[0].model.kind"),
        (lambda d: d["tasks"][0].update(colour="red"), "tasks[0]"),
        (lambda d: d["tasks"][0].pop("model"), "tasks[0].model"),
        (lambda d: d.update(board={"dtype": "int8"}), "board.dtype"),
        (lambda d: d.update(board={"max_staleness": -1}), "board.max_staleness"),
    ],
)
def test_bad_field_is_named(mutate, field):
    d = doc()
    d["tasks"][1]["optimizer"] = {}
    mutate(d)
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, source="job.toml")
    assert field in str(e.value) and "job.toml" in str(e.value)


def test_repeated_task_name():
    d = doc()
    d["tasks"][1]["name"] = "depth"
    with pytest.raises(ConfigError, match=r"tasks\[1\]\.name.*'depth' repeats tasks\[0\]"):
        config_from_dict(d)


def test_world_size_mismatch_lists_every_task():
    cfg = config_from_dict(doc(), source="job.toml")
    check_world_size(cfg, 3)
    with pytest.raises(TopologyError) as e:
        check_world_size(cfg, 4)
    msg = str(e.value)
    assert "depth=2" in msg and "normals=1" in msg and "= 3" in msg and "4 rank(s)" in msg


def test_rank_blocks_are_consecutive_in_file_order():
    assert task_rank_blocks(config_from_dict(doc())) == [[0, 1], [2]]


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[job\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_shipped_job_files_are_valid():
    from pathlib import Path

    jobs = sorted((Path(__file__).parents[1] / "jobs").glob("*.toml"))
    assert jobs, "no job files shipped"
    for path in jobs:
        if path.name.startswith("sim_"):
            continue  # simulator configs have their own schema (hpc_taskology.sim.config)
        load_config(path)


def test_overrides_reach_tasks_by_name_and_are_validated():
    from hpc_taskology.config import apply_overrides

    d = apply_overrides(doc(), ["tasks.normals.optimizer.lr=3e-4", "job.steps=7", "tasks.depth.ranks=1",
                                'job.name="renamed"'])
    cfg = config_from_dict(d)
    assert cfg.task("normals").optimizer.lr == 3e-4 and cfg.job.steps == 7 and cfg.task("depth").ranks == 1
    assert cfg.job.name == "renamed"
    with pytest.raises(ConfigError, match="no task named 'segmentation'"):
        apply_overrides(doc(), ["tasks.segmentation.ranks=1"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        apply_overrides(doc(), ["job.steps"])
    with pytest.raises(ConfigError, match=r"tasks\[0\].ranks: expected an integer"):
        config_from_dict(apply_overrides(doc(), ["tasks.depth.ranks=many"]))

"""Simulator config: TOML → typed SimConfig; every bad field is an error that names it."""

from __future__ import annotations

import pytest

from hpc_taskology.config import ConfigError
from hpc_taskology.sim.config import SimConfig, config_from_dict, load_sim_config, street_defaults


def test_defaults_and_street_defaults():
    cfg = config_from_dict({"sim": {}})
    assert (cfg.kind, cfg.height, cfg.width) == ("indoor", 120, 160)
    assert cfg.height / cfg.width == 96 / 128
    street = config_from_dict({"sim": {"kind": "street", "max_depth": 50.0}})
    assert street.max_depth == 50.0  # the file's keys win over the street defaults
    assert street.camera_speed == street_defaults()["camera_speed"]


@pytest.mark.parametrize("sim, field", [
    ({"kind": "forest"}, "sim.kind"),
    ({"height": 0}, "sim.height"),
    ({"width": 7}, "sim.width"),
    ({"frames": 0}, "sim.frames"),
    ({"sequences": -1}, "sim.sequences"),
    ({"fps": 0.0}, "sim.fps"),
    ({"hfov_deg": [70.0, 50.0]}, "sim.hfov_deg"),
    ({"hfov_deg": [50.0]}, "sim.hfov_deg"),
    ({"hfov_deg": [50.0, 200.0]}, "sim.hfov_deg"),
    ({"camera_height": [1.2, 2.9], "room_height": [2.4, 3.0]}, "sim.camera_height"),
    ({"objects": [5, 2]}, "sim.objects"),
    ({"patterns": ["marble"]}, "sim.patterns"),
    ({"patterns": []}, "sim.patterns"),
    ({"lights": [0, 2]}, "sim.lights"),
    ({"device": "tpu"}, "sim.device"),
    ({"compression": "rar"}, "sim.compression"),
    ({"roll_deg": -1.0}, "sim.roll_deg"),
    ({"scenenet_dir": "x", "hfov_deg": [50.0, 60.0]}, "sim.hfov_deg"),
    ({"scenenet_dir": "x", "hfov_deg": [60.0, 60.0], "roll_deg": 3.0}, "sim.roll_deg"),
    ({"height": 1.5}, "sim.height"),
    ({"shadows": "yes"}, "sim.shadows"),
    ({"colour": 3}, "unknown key"),
])
def test_bad_field_is_named(sim, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict({"sim": sim}, source="test.toml")


def test_dataclass_validates_directly():
    with pytest.raises(ConfigError, match=r"sim\.max_depth"):
        SimConfig(max_depth=-1.0)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_sim_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sim\nkind = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_sim_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[sim]\nheight = -3\n")
    with pytest.raises(ConfigError, match=r"wrong.toml: sim\.height"):
        load_sim_config(wrong)
    no_table = tmp_path / "job.toml"
    no_table.write_text("[job]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"job.toml: expected exactly one table \[sim\]"):
        load_sim_config(no_table)


def test_shipped_sim_configs_are_valid():
    from pathlib import Path

    paths = sorted((Path(__file__).parents[1] / "jobs").glob("sim_*.toml"))
    assert {p.name for p in paths} >= {"sim_indoor.toml", "sim_street.toml"}
    for p in paths:
        load_sim_config(p)

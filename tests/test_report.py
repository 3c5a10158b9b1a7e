"""The report's table cells: one run as is, several runs sharing a label as mean ± sample std."""

import json

from hpc_taskology.commands.report import _cell, tables


def test_cell_mean_and_sample_std():
    assert _cell([0.5], 100, 1) == "50.0"
    assert _cell([0.1, 0.3], 1, 2) == "0.20 ± 0.14"  # sample std of (0.1, 0.3) = 0.1414
    assert _cell([None, float("nan")]) == "–"


def test_runs_with_one_label_become_one_row(tmp_path):
    for i, abs_rel in enumerate((0.2, 0.4)):
        run = tmp_path / f"seed{i}"
        (run / "eval").mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(
            {"tasks": {"depth": {"steps": 5, "steps/s": 1.0 + i, "ranks": 1}}}))
        (run / "eval" / "real.json").write_text(json.dumps(
            {"frames": 3, "depth": {"raw": {"abs_rel": abs_rel}, "median_scaled": {"abs_rel": 0.1, "delta1": 0.5}}}))
    text = tables([tmp_path / "seed0", tmp_path / "seed1"], ["B", "B"])
    assert "| B (n=2) | – | – | – | – | 0.300 ± 0.141 | 0.100 ± 0.000 | 50.0 ± 0.0 |" in text
    assert "| B (n=2) | depth | 1 | 5 | 1.50 ± 0.71 |" in text

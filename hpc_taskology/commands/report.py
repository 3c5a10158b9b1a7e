"""``taskology report RUN_DIR [RUN_DIR ...] [-o TABLE.md]``: compare runs in the layout of Taskology's Table 3.

Reads each run's ``results.json`` (training: steps/s per group, exchange coverage and staleness) and
``eval/*.json`` (``taskology eval``), and prints one Markdown table per evaluation file: normals accuracy
(% within 11.25°, 22.5°, 30°; mean angle) and depth error (abs_rel without and with median scaling, δ < 1.25),
plus a table of training throughput and exchange figures.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run directories (runs/<name>)")
    p.add_argument("-o", "--output", help="also write the tables to this Markdown file")
    p.add_argument("--label", action="append", default=[],
                   help="row label per run, in order (default: the run's directory name)")


def _fmt(x, scale=1.0, nd=1) -> str:
    return "–" if x is None or x != x else f"{scale * x:.{nd}f}"  # None or NaN (no reads yet)


def tables(runs: list[Path], labels: list[str]) -> str:
    """The Markdown report for ``runs`` (``FileNotFoundError`` naming a run without results.json)."""
    results, evals = [], []
    for run in runs:
        res = run / "results.json"
        if not res.is_file():
            raise FileNotFoundError(f"{res} not found: train the run first (taskology train)")
        results.append(json.loads(res.read_text()))
        evals.append({p.stem: json.loads(p.read_text()) for p in sorted((run / "eval").glob("*.json"))})
    lines = []
    for name in sorted({k for e in evals for k in e}):
        frames = next(e[name]["frames"] for e in evals if name in e)
        lines += [f"### {name} ({frames} frames)", "",
                  "| run | normals < 11.25° (%) | < 22.5° (%) | < 30° (%) | mean angle (°) | depth abs_rel | "
                  "abs_rel, median-scaled | δ < 1.25 (%), median-scaled |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, e in zip(labels, evals):
            r = e.get(name, {})
            n, d = r.get("normals", {}), r.get("depth", {})
            raw, med = d.get("raw", {}), d.get("median_scaled", {})
            lines.append(
                f"| {label} | {_fmt(n.get('within_11.25'), 100)} | {_fmt(n.get('within_22.5'), 100)} | "
                f"{_fmt(n.get('within_30'), 100)} | {_fmt(n.get('mean_deg'))} | {_fmt(raw.get('abs_rel'), nd=3)} | "
                f"{_fmt(med.get('abs_rel'), nd=3)} | {_fmt(med.get('delta1'), 100)} |")
        base = next((e[name].get("baseline_constant_depth") for e in evals if name in e), None)
        if base:
            lines.append(f"| constant depth (reference) | – | – | – | – | – | {base['abs_rel']:.3f} | "
                         f"{100 * base['delta1']:.1f} |")
        cons = [(label, e[name]["cross_task_consistency"]) for label, e in zip(labels, evals)
                if name in e and "cross_task_consistency" in e[name]]
        if cons:
            lines += ["", "Agreement between the two networks on these frames (normals net vs normals from the depth "
                      "net; what the consistency loss optimises):", "",
                      "| run | mean angle (°) | < 11.25° (%) | < 30° (%) |", "|---|---|---|---|"]
            lines += [f"| {label} | {c['mean_deg']:.1f} | {100 * c['within_11.25']:.1f} | {100 * c['within_30']:.1f} |"
                      for label, c in cons]
        lines.append("")
    lines += ["### training", "",
              "| run | group | ranks | steps | steps/s | coverage of peer predictions | staleness p50 / p90 / max (steps) "
              "| staleness p50 (s) |", "|---|---|---|---|---|---|---|---|"]
    for label, res in zip(labels, results):
        for task, s in res["tasks"].items():
            ex = s.get("exchange", {})
            stale = (f"{_fmt(ex.get('staleness_p50(steps)'), nd=0)} / {_fmt(ex.get('staleness_p90(steps)'), nd=0)} / "
                     f"{_fmt(ex.get('staleness_max(steps)'), nd=0)}") if ex else "–"
            lines.append(f"| {label} | {task} | {s.get('ranks', '–')} | {s['steps']} | {s['steps/s']:.2f} | "
                         f"{_fmt(ex.get('coverage_mean(frac)'), 100) + ' %' if ex else '–'} | {stale} | "
                         f"{_fmt(ex.get('staleness_p50(s)'), nd=2) if ex else '–'} |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    runs = [Path(r) for r in args.runs]
    labels = args.label + [r.name for r in runs[len(args.label):]]
    text = tables(runs, labels)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0

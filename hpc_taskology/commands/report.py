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
                   help="row label per run, in order (default: the run's directory name); runs given the same label "
                        "make one row with mean ± std (e.g. several seeds)")


def _fmt(x, scale=1.0, nd=1) -> str:
    return "–" if x is None or x != x else f"{scale * x:.{nd}f}"  # None or NaN (no reads yet)


def _cell(values: list, scale=1.0, nd=1) -> str:
    """One table cell: the value, or mean ± sample standard deviation over the runs sharing a label."""
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return "–"
    if len(vals) == 1:
        return _fmt(vals[0], scale, nd)
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{scale * mean:.{nd}f} ± {scale * std:.{nd}f}"


def _get(d: dict, path: str):
    for part in path.split("/"):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


EVAL_COLUMNS = [  # (header, path in eval JSON, scale, decimals)
    ("normals < 11.25° (%)", "normals/within_11.25", 100, 1), ("< 22.5° (%)", "normals/within_22.5", 100, 1),
    ("< 30° (%)", "normals/within_30", 100, 1), ("mean angle (°)", "normals/mean_deg", 1, 1),
    ("depth abs_rel", "depth/raw/abs_rel", 1, 3), ("abs_rel, median-scaled", "depth/median_scaled/abs_rel", 1, 3),
    ("δ < 1.25 (%), median-scaled", "depth/median_scaled/delta1", 100, 1),
]


def tables(runs: list[Path], labels: list[str]) -> str:
    """The Markdown report for ``runs``; runs sharing a label are one row (mean ± std over them, e.g. seeds).

    Raises ``FileNotFoundError`` naming a run without results.json.
    """
    results, evals = [], []
    for run in runs:
        res = run / "results.json"
        if not res.is_file():
            raise FileNotFoundError(f"{res} not found: train the run first (taskology train)")
        results.append(json.loads(res.read_text()))
        evals.append({p.stem: json.loads(p.read_text()) for p in sorted((run / "eval").glob("*.json"))})
    groups = list(dict.fromkeys(labels))
    members = {g: [i for i, lab in enumerate(labels) if lab == g] for g in groups}
    counts = {g: f" (n={len(m)})" if len(m) > 1 else "" for g, m in members.items()}
    lines = []
    for name in sorted({k for e in evals for k in e}):
        frames = next(e[name]["frames"] for e in evals if name in e)
        lines += [f"### {name} ({frames} frames)", "",
                  "| run | " + " | ".join(h for h, *_ in EVAL_COLUMNS) + " |",
                  "|---|" + "---|" * len(EVAL_COLUMNS)]
        for g in groups:
            rows = [evals[i].get(name, {}) for i in members[g]]
            lines.append(f"| {g}{counts[g]} | " + " | ".join(
                _cell([_get(r, path) for r in rows], scale, nd) for _, path, scale, nd in EVAL_COLUMNS) + " |")
        base = next((e[name].get("baseline_constant_depth") for e in evals if name in e), None)
        if base:
            lines.append("| constant depth (reference) | – | – | – | – | – | "
                         f"{base['abs_rel']:.3f} | {100 * base['delta1']:.1f} |")
        if any("cross_task_consistency" in e.get(name, {}) for e in evals):
            lines += ["", "Agreement between the two networks on these frames (normals net vs normals from the depth "
                      "net; what the consistency loss optimises):", "",
                      "| run | mean angle (°) | < 11.25° (%) | < 30° (%) |", "|---|---|---|---|"]
            for g in groups:
                rows = [evals[i].get(name, {}) for i in members[g]]
                lines.append(f"| {g}{counts[g]} | " + " | ".join(
                    _cell([_get(r, f"cross_task_consistency/{k}") for r in rows], scale, 1)
                    for k, scale in (("mean_deg", 1), ("within_11.25", 100), ("within_30", 100))) + " |")
        lines.append("")
    lines += ["### training", "",
              "| run | group | ranks | steps | steps/s | coverage of peer predictions "
              "| staleness p50 / p90 / max (steps) | staleness p50 (s) |", "|---|---|---|---|---|---|---|---|"]
    for g in groups:
        tasks = list(dict.fromkeys(t for i in members[g] for t in results[i]["tasks"]))
        for task in tasks:
            ss = [results[i]["tasks"][task] for i in members[g] if task in results[i]["tasks"]]
            ex = [s.get("exchange", {}) for s in ss]
            col = lambda key, scale=1, nd=0: _cell([e.get(key) for e in ex], scale, nd)  # noqa: E731
            has_ex = any(ex)
            stale = " / ".join(col(f"staleness_{q}(steps)") for q in ("p50", "p90", "max"))
            lines.append(
                f"| {g}{counts[g]} | {task} | {ss[0].get('ranks', '–')} | {ss[0]['steps']} | "
                f"{_cell([s['steps/s'] for s in ss], nd=2)} | "
                f"{col('coverage_mean(frac)', 100, 1) + ' %' if has_ex else '–'} | "
                f"{stale if has_ex else '–'} | "
                f"{col('staleness_p50(s)', 1, 2) if has_ex else '–'} |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    runs = [Path(r) for r in args.runs]
    labels = args.label + [r.name for r in runs[len(args.label):]]
    text = tables(runs, labels)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0

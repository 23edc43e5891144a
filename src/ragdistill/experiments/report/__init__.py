"""The study's report: DIR/report.md, DIR/report.json and DIR/figures/ from the settings' run directories.

Everything is read back from disk (each row's ``reproduce.json`` marker, ``eval/`` files,
``metrics.jsonl`` and ``analysis/<signal>/`` outputs), so rerunning the command over finished
runs rebuilds the report without training anything. Table 2 and the mean ± std tables
use ``ragdistill.analysis.report``; the histograms use ``ragdistill.analysis.figures``; the
verdicts use ``ragdistill.analysis.indicators.verdict`` against the reference row of the same
reader family and signal.

Modules, in the order the data flows: ``load`` (reading run directories), ``collect`` (one record per
setting), ``tables`` (Table 1, paired differences, seeds), ``indicators`` (Table 2's intervals and
verdicts, Table 2b), ``together`` (putting it together, conclusion), ``details`` (figures, environment,
reader notes), ``format`` (shared formatting), ``render`` (report.md); ``write_report`` here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ragdistill.experiments.report.collect import PREDICT_HELP, PREDICT_NO, collect
from ragdistill.experiments.report.details import environment, figure1, histograms
from ragdistill.experiments.report.indicators import (
    FAILS,
    HOLDS,
    UNDECIDED,
    _public_intervals,
    controlled_section,
    indicator_difference,
    indicator_intervals,
    interval_status,
    threshold_difference,
    verdict_lines,
)
from ragdistill.experiments.report.render import render
from ragdistill.experiments.report.tables import (
    SEED_METRICS,
    differences_table,
    fold_seeds,
    metric_difference,
    outcome,
    paired_delta,
    seeds_table,
    table1,
)
from ragdistill.experiments.report.together import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNDECIDED_FINDING,
    conclusion,
    power_line,
    together_table,
)
from ragdistill.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def write_report(plan, results, wall_seconds: float = 0.0) -> dict[str, Any]:
    """report.md, report.json and figures/ under the plan's output directory; returns the JSON object."""
    out_dir = Path(plan.options.out)
    fig_dir = out_dir / "figures"
    rows = collect(plan, results)
    figures: dict[str, Any] = {"figure1": {}, "histograms": {}}
    for ds in [d.label for d in plan.datasets]:
        drows = [r for r in rows if r["dataset"] == ds]
        p = figure1(drows, fig_dir / f"figure1_hr5_{ds}.png", ds)
        if p:
            figures["figure1"][ds] = os.path.relpath(p, out_dir)
        try:
            figures["histograms"][ds] = histograms(drows, fig_dir, ds)
        except Exception as exc:  # noqa: BLE001 - a figure must not lose the tables
            log.warning("histograms of %s could not be drawn: %s", ds, exc)
            figures["histograms"][ds] = []
    env = environment()
    text = render(plan, rows, figures, env, wall_seconds)
    atomic_write_text(out_dir / "report.md", text)
    public = []
    for r in rows:
        pr = {
            k: v
            for k, v in r.items()
            if k
            not in (
                "analyses",
                "hits",
                "items",
                "deltas",
                "intervals",
                "analyses_controlled",
                "intervals_controlled",
                "seed_rows",
            )
        }
        pr["deltas"] = {k: (d.to_dict() if d is not None else None) for k, d in (r.get("deltas") or {}).items()}
        pr["indicator_intervals"] = _public_intervals(r.get("intervals"))
        pr["indicators"] = {sig: a["summary"] for sig, a in r["analyses"].items()}
        pr["analysis_dirs"] = {sig: a["dir"] for sig, a in r["analyses"].items()}
        ctl = r.get("analyses_controlled")
        pr["indicators_controlled"] = None if ctl is None else {sig: a["summary"] for sig, a in ctl.items()}
        pr["analysis_dirs_controlled"] = None if ctl is None else {sig: a["dir"] for sig, a in ctl.items()}
        pr["indicator_intervals_controlled"] = _public_intervals(r.get("intervals_controlled"))
        public.append(pr)
    obj = {
        "scale": plan.options.scale,
        "out": str(out_dir),
        "command": plan.options.command,
        "wall_seconds": round(wall_seconds, 1),
        "datasets": [{"label": d.label, "paths": d.paths, "notes": d.notes, "split": d.split} for d in plan.datasets],
        "analysis": {
            "n": plan.options.analysis_n,
            "seed": plan.options.analysis_seed,
            "ig_steps": plan.options.ig_steps,
            "views": ["own", "controlled"],
            "ig_tolerance": plan.options.ig_tolerance,
            "ig_max_steps": plan.options.ig_max_steps,
        },
        "seeds": getattr(plan.options, "seeds", 1),
        "settings": public,
        "figures": figures,
        "environment": env,
        "not_run": [
            {"dataset": r["dataset"], "setting": r["name"], "reason": r["reason"], "flag": r["flag"]}
            for r in rows
            if r["status"] == "not run"
        ],
        "failed": [
            {"dataset": r["dataset"], "setting": r["name"], "error": r["error"]}
            for r in rows
            if r["status"] == "failed"
        ],
    }
    atomic_write_json(out_dir / "report.json", obj)
    return obj


__all__ = [
    "FAILS",
    "HOLDS",
    "NOT_REPRODUCED",
    "PREDICT_HELP",
    "PREDICT_NO",
    "REPRODUCED",
    "SEED_METRICS",
    "UNDECIDED",
    "UNDECIDED_FINDING",
    "collect",
    "conclusion",
    "controlled_section",
    "differences_table",
    "environment",
    "figure1",
    "fold_seeds",
    "histograms",
    "indicator_difference",
    "indicator_intervals",
    "interval_status",
    "metric_difference",
    "outcome",
    "paired_delta",
    "power_line",
    "render",
    "seeds_table",
    "table1",
    "threshold_difference",
    "together_table",
    "verdict_lines",
    "write_report",
]

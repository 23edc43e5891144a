"""Table 1 (HR@k, EM, F1, ΔHR@5), the paired-difference table, and --seeds folding with its table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ragdistill.evaluation.statistics import Difference, format_difference
from ragdistill.experiments.report.format import _metric_title, _ms, _pct, _short_name


def paired_delta(a: dict[str, bool], b: dict[str, bool]) -> tuple[float | None, float | None, int]:
    """(mean(a - b), its standard error, n) over the questions both evaluations answered."""
    ids = [i for i in a if i in b]
    if not ids:
        return None, None, 0
    d = [float(a[i]) - float(b[i]) for i in ids]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, None, n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, math.sqrt(var / n), n


def outcome(delta: float | None, se: float | None) -> str:
    """'improved' / 'hurt' when |Δ| exceeds two standard errors, else 'no clear change'."""
    if delta is None:
        return "–"
    if se is None or se == 0:
        return "improved" if delta > 0 else ("hurt" if delta < 0 else "no clear change")
    if delta > 2 * se:
        return "improved"
    if delta < -2 * se:
        return "hurt"
    return "no clear change"


def metric_difference(
    items: dict[str, dict[str, float]], base: dict[str, dict[str, float]], metric: str, seed: int = 0
) -> Difference | None:
    """row − reference on one metric, paired over the questions both evaluated (exact McNemar for hit rates and
    EM, which are 0/1 per question; paired bootstrap for F1)."""
    from ragdistill.evaluation.statistics import mcnemar, paired_bootstrap

    ids = [i for i in items if metric in items[i] and metric in base.get(i, {})]
    if not ids:
        return None
    a = [items[i][metric] for i in ids]
    b = [base[i][metric] for i in ids]
    if all(x in (0.0, 1.0) for x in a + b) and metric != "f1":
        return mcnemar([x == 1.0 for x in a], [x == 1.0 for x in b])
    return paired_bootstrap(a, b, seed=seed)


SEED_METRICS = ("hr@1", "hr@5", "hr@20", "em", "f1")


def _mean_sd(xs: Sequence[float]) -> dict[str, Any] | None:
    xs = [float(x) for x in xs if x is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"mean": mean, "sd": sd, "n": len(xs)}


def fold_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """--seeds: the repeats of a training setting join its first seed's row (``seed_runs``, ``across_seeds``).

    The row itself stays the first seed's run (train.seed as configured): its per-question intervals, its
    analysis (the repeats are not analysed) and hence Table 2 and the putting-together table. ``across_seeds``
    gives mean ± sd (ddof 1) over the seeds of each metric and of ΔHR@5.
    """
    main = [r for r in rows if not r.get("seed_offset")]
    for r in main:
        repeats = [x for x in rows if x.get("seed_offset") and x["dataset"] == r["dataset"] and x["name"] == r["name"]]
        if not repeats:
            continue
        runs = [r] + sorted(repeats, key=lambda x: x["seed_offset"])
        r["seed_rows"] = runs[1:]
        r["seed_runs"] = [
            {
                "seed_offset": x["seed_offset"],
                "train_seed": x["seeds"]["train.seed"],
                "status": x["status"],
                "run_dir": x["run_dir"],
                "metrics": x["metrics"],
                "delta_hr5": x["delta_hr5"],
                "delta_ci": x["delta_ci"],
                "delta_n": x["delta_n"],
                "outcome": x["outcome"],
                "seconds": x["seconds"]["run"],
            }
            for x in runs
        ]
        done = [x for x in runs if x["status"] in ("ran", "reused")]
        r["across_seeds"] = {k: _mean_sd([x["metrics"].get(k) for x in done]) for k in SEED_METRICS}
        r["across_seeds"]["delta_hr5"] = _mean_sd([x["delta_hr5"] for x in done])
    return main


def table1(rows: Sequence[dict[str, Any]], ks: Sequence[int] | None = None) -> str:
    """Table 1: HR@k, EM, F1 (in %) per setting, with the number of test questions and ΔHR@5."""
    if ks is None:
        found = sorted({int(k[3:]) for r in rows for k in r["metrics"] if k.startswith("hr@") and k[3:].isdigit()})
        ks = found or (1, 5, 20)
    seeded = any(r.get("across_seeds") for r in rows)
    head = [
        "#",
        "setting",
        "reader",
        "what trains",
        *[f"HR@{k}" for k in ks],
        "EM",
        "F1",
        "n test",
        "ΔHR@5 [95 % CI]",
        "outcome",
        "status",
    ]
    if seeded:  # --seeds: mean ± sd over the seeds beside the first seed's per-run numbers and interval
        head += ["seeds", "HR@5 mean ± sd", "EM mean ± sd", "ΔHR@5 mean ± sd"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(ks) + 4) + ["---"] * 2 + (["---:"] * 4 if seeded else [])) + "|",
    ]
    for r in rows:
        m = r["metrics"]
        d5 = (r.get("deltas") or {}).get("hr@5")
        delta = (
            format_difference(d5)
            if d5 is not None
            else ("–" if r.get("delta_hr5") is None else f"{100 * r['delta_hr5']:+.1f}")
        )
        status = r["status"] if r["status"] != "not run" else "**not run**"
        if r["status"] == "failed":
            status = "**failed**"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["number"],
                    r["name"],
                    f"`{_short_name(r['reader'])}`",
                    r["what_trains"],
                    *[_pct(m.get(f"hr@{k}")) for k in ks],
                    _pct(m.get("em")),
                    _pct(m.get("f1")),
                    str(m.get("n", "–")),
                    delta,
                    r.get("outcome") or "–",
                    status,
                ]
                + (_seed_cells(r) if seeded else [])
            )
            + " |"
        )
    return "\n".join(lines)


def _seed_cells(r: dict[str, Any]) -> list[str]:
    a = r.get("across_seeds")
    if not a:
        return ["1", "–", "–", "–"]
    return [str(len(r["seed_runs"])), _ms(a.get("hr@5")), _ms(a.get("em")), _ms(a.get("delta_hr5"), signed=True)]


def seeds_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every seed's run of the repeated settings: HR@5, EM, ΔHR@5 with its own paired interval, and the outcome."""
    lines = [
        "| # | setting | seed offset | train.seed | HR@5 | EM | F1 | ΔHR@5 [95 % CI], n | outcome | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        for x in r.get("seed_runs") or []:
            d = (
                "–"
                if x["delta_hr5"] is None
                else (
                    f"{100 * x['delta_hr5']:+.1f} [{100 * x['delta_ci'][0]:+.1f}, {100 * x['delta_ci'][1]:+.1f}], n={x['delta_n']}"
                    if x["delta_ci"]
                    else f"{100 * x['delta_hr5']:+.1f}"
                )
            )
            m = x["metrics"] or {}
            lines.append(
                f"| {r['number']} | {r['name']} | +{x['seed_offset']} | {x['train_seed']} | {_pct(m.get('hr@5'))} | "
                f"{_pct(m.get('em'))} | {_pct(m.get('f1'))} | {d} | {x['outcome'] or '–'} | {x['status']} |"
            )
    return "\n".join(lines)


def differences_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every Δ of Table 1 against its reference row: the paired difference, 95 % interval, n, test and outcome."""
    head = [
        "#",
        "setting",
        "Δ",
        "against",
        "difference (points)",
        "95 % CI",
        "± half-width",
        "n",
        "test",
        "p",
        "outcome",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 4 + ["---"] * 3) + "|"]
    for r in rows:
        for key, d in (r.get("deltas") or {}).items():
            against = "1 offshelf_checkpoint (retriever)" if key.startswith("hr@") else f"{r['reference']} (reader)"
            if d is None:
                lines.append(
                    f"| {r['number']} | {r['name']} | Δ{_metric_title(key)} | {against} | – | – | – | 0 | – | – | "
                    "undefined: no question in common |"
                )
                continue
            p = "–" if d.p_value is None else f"{d.p_value:.3g}"
            test = d.method + (f" (discordant {d.discordant[0]}/{d.discordant[1]})" if d.discordant else "")
            lines.append(
                f"| {r['number']} | {r['name']} | Δ{_metric_title(key)} | {against} | {100 * d.estimate:+.1f} | "
                f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {100 * d.half_width:.1f} | {d.n} | {test} | {p} | "
                f"{d.outcome} |"
            )
    if len(lines) == 2:
        return "No difference to compute: no setting other than the reference rows has a per-question evaluation."
    return "\n".join(lines)

"""The report of `ragdistill validate-indicators`: report.json, report.md (a two-minute read) and figures/.

Per teacher: ΔHR@1 / ΔHR@5 of its step-2 retriever against the initial retriever (paired over the
test questions, exact McNemar, 95 % interval, outcome word), the indicator inputs (mean ± SE over
the analysed instances), the predictors, the verdict and advice against the off-the-shelf reader of
its family. Across teachers: Spearman ρ of every input with ΔHR@5 and its bootstrap interval, and the
decision rule's record. One scatter plot per input (ΔHR@5 vs input, one point per teacher).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.utils.io import atomic_write_json, atomic_write_text

INPUT_TITLES = {"mean_attention": "attention", "lift": "lift", "spearman": "Spearman"}


def input_title(name: str) -> str:
    if name == "ranking_skill":
        return "ranking skill (top-S hit − top-retrieved hit)"
    if name == "position_bias":
        return "position bias (TV distance of S shares from uniform)"
    g, k, p = name.split(".")
    return f"{INPUT_TITLES.get(k, k)} on {g}-related tokens ({p})"


def _mean_se(values) -> tuple[float | None, float | None]:
    from ragdistill.evaluation.statistics import mean_se
    from ragdistill.experiments.sweep.stats import position_share_items, reduce_input  # noqa: F401

    arr = (
        np.asarray(values, dtype=np.float64)
        if values and isinstance(values[0], list)
        else np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    )
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            return None, None
        from ragdistill.experiments.sweep.stats import tv_from_uniform

        point = tv_from_uniform(arr.mean(axis=0))
        rng = np.random.default_rng(0)
        boots = [tv_from_uniform(arr[rng.integers(0, len(arr), len(arr))].mean(axis=0)) for _ in range(200)]
        return point, float(np.std(boots, ddof=1)) if len(arr) > 1 else None
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return None, None
    m, se, _ = mean_se(arr.tolist())
    return m, se


def _f(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _diff(d) -> str:
    if d is None:
        return "–"
    return f"{100 * d.estimate:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def teacher_rows(plan, baseline: dict[str, Any], results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per finished teacher (Δs, inputs, verdict), and the question ids the Δs are paired over."""
    from ragdistill.analysis.indicators import VerdictOptions, advice, verdict
    from ragdistill.evaluation.statistics import mcnemar
    from ragdistill.experiments.sweep.runner import _hits
    from ragdistill.experiments.sweep.teachers import reference_of

    base = _hits(Path(baseline["predictions"]))
    names = set(results)
    v = plan.sweep["verdict"]
    vopts = VerdictOptions(
        corr_threshold=float(v["corr_threshold"]),
        percentile=int(v["percentile"]),
        attention_measure=v["attention_measure"],
    )
    rows = []
    qids = list(base)
    for t in plan.teachers:
        m = results.get(t.name)
        if not m:
            continue
        hits = _hits(Path(m["predictions"]))
        qids = [q for q in qids if q in hits]
        rows.append(
            {
                "teacher": t.name,
                "description": t.description,
                "signal": t.signal,
                "family": m.get("family"),
                "reader": m.get("reader"),
                "marker": m,
                "hits": hits,
            }
        )
    for r in rows:
        ref = reference_of(plan_teacher(plan, r["teacher"]), names)
        r["reference"] = ref
        ref_summary = results[ref]["summary"] if ref else None
        verd = verdict(r["marker"]["summary"], ref_summary, vopts)
        verd["advice"], verd["advice_reason"] = advice(verd)
        r["verdict"] = verd
        r["advice"] = verd["advice"]
        for k in (1, 5):
            a = [r["hits"][q][f"hr@{k}"] for q in qids]
            b = [base[q][f"hr@{k}"] for q in qids]
            d = mcnemar(a, b)
            r[f"delta_hr@{k}"] = d
        r["outcome"] = r["delta_hr@5"].outcome if r["delta_hr@5"] is not None else None
        r["inputs"] = {name: _mean_se(vals) for name, vals in r["marker"]["inputs"].items()}
    return rows, qids


def plan_teacher(plan, name: str):
    return next(t for t in plan.teachers if t.name == name)


def ig_summary(plan, name: str) -> dict[str, Any] | None:
    """How exact a perplexity teacher's integrated-gradients token gains were, from its analysed instances.

    Read from the teacher's ``analysis/instances.jsonl`` (so a report re-rendered from an older run has it too);
    None for a teacher whose analysis used no integrated gradients.
    """
    import json

    from ragdistill.analysis.run import ReaderAnalysis, ig_settings
    from ragdistill.experiments.sweep.plan import unit_dir

    path = unit_dir(plan, f"teacher:{name}") / "analysis" / "instances.jsonl"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        records = [r for r in (json.loads(line) for line in f if line.strip()) if "ig_rule" in r]
    if not records:
        return None
    a = plan.sweep["analysis"]
    out = ig_settings([ReaderAnalysis(name, [], records)], a["ig_steps"], a["ig_tolerance"], a["ig_max_steps"])
    out["n_instances"] = len(records)
    return out


def write_figures(rows: list[dict[str, Any]], corr: dict[str, Any], out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ragdistill.utils.io import atomic_file

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in corr:
        xs, ys, xe, ylo, yhi, labels = [], [], [], [], [], []
        for r in rows:
            x, se = r["inputs"].get(name, (None, None))
            d = r["delta_hr@5"]
            if x is None or d is None:
                continue
            xs.append(x)
            xe.append(1.96 * se if se else 0.0)
            ys.append(100 * d.estimate)
            ylo.append(100 * (d.estimate - d.low))
            yhi.append(100 * (d.high - d.estimate))
            labels.append(r["teacher"])
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.errorbar(xs, ys, xerr=xe, yerr=[ylo, yhi], fmt="o", capsize=3)
        for x, y, lab in zip(xs, ys, labels):
            ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        c = corr[name]
        rho = "undefined" if c["rho"] is None else f"{c['rho']:+.2f}"
        ci = "" if c["low"] is None else f" [{c['low']:+.2f}, {c['high']:+.2f}]"
        ax.set_title(f"ΔHR@5 vs {input_title(name)}\nSpearman ρ = {rho}{ci}", fontsize=9)
        ax.set_xlabel(input_title(name), fontsize=8)
        ax.set_ylabel("ΔHR@5 of step 2 (points, 95 % CI)", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"scatter_{name.replace('.', '_')}.png"
        with atomic_file(path, "wb", encoding=None) as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        files[name] = str(path)
    return files


def write_sweep_report(
    plan,
    baseline: dict[str, Any],
    results: dict[str, Any],
    failed: dict[str, str],
    sources: dict[str, Any],
    wall_seconds: float = 0.0,
) -> dict[str, Any]:
    from ragdistill.experiments.sweep.stats import decision_record, indicator_correlations

    out = plan.options.out
    rows, qids = teacher_rows(plan, baseline, results)
    bs = plan.sweep["bootstrap"]
    corr = indicator_correlations(
        {r["teacher"]: r["marker"]["inputs"] for r in rows},
        {r["teacher"]: [r["hits"][q]["hr@5"] for q in qids] for r in rows},
        [_base_hit(baseline, q) for q in qids],
        resamples=int(bs["resamples"]),
        seed=int(bs["seed"]),
    )
    record = decision_record(
        [
            {"teacher": r["teacher"], "advice": r["advice"], "outcome": r["outcome"]}
            for r in rows
            if r["reference"] is not None
        ]
    )
    figures = write_figures(rows, corr, out / "figures") if rows else {}
    report = {
        "sweep": {k: v for k, v in plan.sweep.items()},
        "dataset": plan.dataset.label,
        "baseline": baseline.get("metrics"),
        "n_questions": len(qids),
        "teachers": [
            {
                "teacher": r["teacher"],
                "description": r["description"],
                "signal": r["signal"],
                "family": r["family"],
                "reader": r["reader"],
                "reference": r["reference"],
                "delta_hr@1": r["delta_hr@1"].to_dict() if r["delta_hr@1"] else None,
                "delta_hr@5": r["delta_hr@5"].to_dict() if r["delta_hr@5"] else None,
                "outcome": r["outcome"],
                "advice": r["advice"],
                "advice_reason": r["verdict"]["advice_reason"],
                "verdict": r["verdict"],
                "final_eval": r["marker"].get("final_eval"),
                "inputs": {k: {"value": v[0], "se": v[1]} for k, v in r["inputs"].items()},
                "position_shares": np.asarray(r["marker"]["inputs"]["position_bias"]).mean(axis=0).tolist()
                if r["marker"]["inputs"].get("position_bias")
                else None,
                "seconds": r["marker"].get("seconds"),
                "ig": ig_summary(plan, r["teacher"]) if r["signal"] == "perplexity" else None,
            }
            for r in rows
        ],
        "correlations": corr,
        "decision_record": record,
        "failed": failed,
        "figures": figures,
        "sources": {
            k: {kk: vv for kk, vv in v.items() if kk in ("reader", "snapshots", "final_eval", "layers")}
            for k, v in sources.items()
        },
        "wall_seconds": round(wall_seconds, 1),
        "command": plan.options.command,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(plan, report, rows))
    return report


def _base_hit(baseline: dict[str, Any], q: str) -> bool:
    from ragdistill.experiments.sweep.runner import _hits

    cache = baseline.setdefault("_hits", None)
    if cache is None:
        cache = baseline["_hits"] = _hits(Path(baseline["predictions"]))
    return cache[q]["hr@5"]


def render_markdown(plan, report: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    corr = report["correlations"]
    rec = report["decision_record"]
    s2 = plan.configs["step2"]
    lines = [f"# Do the indicators predict a good teacher? ({report['dataset']}, {len(rows)} teachers)", ""]
    # the answer first
    ranked = sorted((c for c in corr.items() if c[1]["rho"] is not None), key=lambda c: -abs(c[1]["rho"]))
    ind = [c for c in ranked if c[0] not in ("ranking_skill", "position_bias")]
    lines.append("## The answer")
    lines.append("")
    if ind:
        name, c = ind[0]
        lines.append(
            f"- Strongest indicator input: **{input_title(name)}**, Spearman ρ with ΔHR@5 = {c['rho']:+.2f} "
            f"[{_f(c['low'], 2, True)}, {_f(c['high'], 2, True)}] across {c['n_teachers']} teachers "
            f"({'interval excludes 0' if c['low'] is not None and (c['low'] > 0 or c['high'] < 0) else 'interval includes 0: not distinguishable from no relation'})."
        )
    for p in ("ranking_skill", "position_bias"):
        if p in corr and corr[p]["rho"] is not None:
            c = corr[p]
            lines.append(
                f"- Simple predictor {input_title(p)}: ρ = {c['rho']:+.2f} [{_f(c['low'], 2, True)}, "
                f"{_f(c['high'], 2, True)}]."
            )
    if rec["n"]:
        lines.append(
            f"- Decision rule: its advice matched the observed step-2 outcome for **{rec['matched']} of "
            f"{rec['n']}** teachers compared with a reference."
        )
    if report["failed"]:
        lines.append(f"- Failed teachers (not in the numbers): {', '.join(report['failed'])}.")
    lines += [
        "",
        f"Outcome = ΔHR@5 of one identical step-2 run per teacher (retriever only; {s2.train.steps} steps, "
        f"seed {s2.train.seed}, same initial retriever {s2.retriever.name}) against the initial retriever on the "
        f"same {report['n_questions']} test questions (exact McNemar, 95 %). Indicator inputs on the same "
        f"{plan.sweep['analysis']['n']} analysed instances for every teacher.",
        "",
    ]
    lines += [
        "## Teachers",
        "",
        "| teacher | what | ΔHR@1 (pts) | ΔHR@5 (pts) | outcome | attn A p95 | ρ A p95 | attn Q p95 | ρ Q p95 | "
        "ranking skill | position bias | advice | matched |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    from ragdistill.experiments.sweep.plan import _fmt_s
    from ragdistill.experiments.sweep.stats import advice_matches

    for r in rows:
        i = r["inputs"]

        def v(k, digits=3, i=i):
            m, se = i.get(k, (None, None))
            return _f(m, digits) + (f" ± {_f(se, digits)}" if se is not None else "")

        adv = r["advice"] + ("" if r["reference"] else " (no reference: absolute rule)")
        m = advice_matches(r["advice"], r["outcome"]) if r["reference"] else None
        lines.append(
            f"| {r['teacher']} | {r['description']} | {_diff(r['delta_hr@1'])} | {_diff(r['delta_hr@5'])} | "
            f"{r['outcome'] or '–'} | {v('answer.mean_attention.p95', 4)} | {v('answer.spearman.p95', 2)} | "
            f"{v('question.mean_attention.p95', 4)} | {v('question.spearman.p95', 2)} | {v('ranking_skill', 2)} | "
            f"{v('position_bias', 2)} | {adv} | {'–' if m is None else ('yes' if m else 'no')} |"
        )
    lines += [
        "",
        "## Correlation with ΔHR@5 across teachers",
        "",
        "| input | Spearman ρ | 95 % interval | teachers | resamples with ρ defined |",
        "|---|---:|---|---:|---:|",
    ]
    for name, c in corr.items():
        ci = "–" if c["low"] is None else f"[{c['low']:+.2f}, {c['high']:+.2f}]"
        lines.append(
            f"| {input_title(name)} | {_f(c['rho'], 2, True)} | {ci} | {c['n_teachers']} | "
            f"{c['n_defined_resamples']}/{c['n_resamples']} |"
        )
    lines += [
        "",
        "## Decision record",
        "",
        "Rule: *distil from this reader* should come with *improves*; *fine-tune it first* and *expect no benefit* "
        "with *no detectable change* or *hurts* (distilling from the reader as it is does not pay).",
        "",
        "| advice \\ outcome | improves | no detectable change | hurts | matched |",
        "|---|---:|---:|---:|---:|",
    ]
    for a, row in rec["table"].items():
        per = rec["per_advice"][a]
        lines.append(
            f"| {a} | {row['improves']} | {row['no detectable change']} | {row['hurts']} | "
            f"{per['matched']}/{per['n']} |"
        )
    lines += ["", "## Time", "", "| teacher | analysis | step 2 | together |", "|---|---:|---:|---:|"]
    for t in report["teachers"]:
        sec = t.get("seconds") or {}
        a, b = sec.get("analysis"), sec.get("step2")
        both = _fmt_s(a + b) if a is not None and b is not None else "–"
        lines.append(f"| {t['teacher']} | {_fmt_s(a)} | {_fmt_s(b)} | {both} |")
    lines += [
        "",
        f"Whole command {_fmt_s(report['wall_seconds'])} (teachers, the sources they are built from, the shared "
        "index and the baseline; a unit reused from an earlier run adds next to nothing to it, while the table "
        "gives each teacher's times as recorded when it ran).",
    ]
    lines += ["", "## Figures", ""]
    for name, path in report["figures"].items():
        lines.append(f"- [{input_title(name)}]({Path(path).relative_to(plan.options.out)})")
    lines += [
        "",
        "## How this was computed",
        "",
        "- Indicator inputs per instance (METHOD §3.7), mean ± standard error over the instances where defined; "
        "the verdict reads p95 with the measure of `verdict.attention_measure` against the off-the-shelf teacher of "
        "the same family (offshelf / fid-offshelf); the references themselves use the absolute rule and are left "
        "out of the decision record.",
        "- Ranking skill: share of instances whose top-S passage contains the answer minus the share whose "
        "top-retrieved passage does. Position bias: share of S on each prompt position (S/ΣS; softmax for "
        "log-likelihood signals), averaged over instances; the number is its total-variation distance from uniform.",
        "- Correlation intervals: percentile bootstrap; each resample draws the test questions (shared by the "
        "teachers, so the Δs stay paired), the analysed instances (shared) and the teachers, with replacement.",
        "- The debiased teacher's token-level indicator inputs are those of its reader's plain attention (the "
        "indicators read one prompt order); its predictors and its step-2 signal use the averaged S.",
        "- The perplexity teacher's step 2 uses the perplexity config's tau_gold; FiD teachers use the FiD config's "
        "prompt budget and tau_gold; every other step-2 setting is the same for all teachers.",
    ]
    for t in report["teachers"]:
        ig = t.get("ig")
        if ig:
            rule = (
                f"adaptive trapezoid, tolerance {ig['ig_tolerance']:g}, at most {ig['ig_max_steps']} nodes a passage"
                if ig["ig_steps"] is None
                else f"fixed {ig['ig_rule']} rule"
            )
            lines.append(
                f"- {t['teacher']}: its token scores are integrated-gradients answer log-likelihood gains (METHOD §3.7; "
                f"{rule}): a median {ig['ig_nodes_median']:.0f} gradient evaluations an instance; completeness error "
                f"median {_f(ig['ig_completeness_error_median'], 3)}, max {_f(ig['ig_completeness_error_max'], 3)}; "
                f"within the tolerance on {100 * (ig['ig_within_tolerance_share'] or 0):.0f} % of its "
                f"{ig['n_instances']} instances."
            )
    lines += [
        "",
        f"Wall time {report['wall_seconds']:.0f} s. Command: `{report['command'] or 'ragdistill validate-indicators'}`.",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["ig_summary", "input_title", "render_markdown", "teacher_rows", "write_figures", "write_sweep_report"]

"""report.md: every section in order, per dataset, then the settings not run, run details and how to read it."""

from __future__ import annotations

import os
from typing import Any

from ragdistill.experiments.report.details import _reader_notes
from ragdistill.experiments.report.format import _minutes, _row_label, _short_name
from ragdistill.experiments.report.indicators import controlled_section, verdict_lines
from ragdistill.experiments.report.load import index_used
from ragdistill.experiments.report.tables import differences_table, seeds_table, table1
from ragdistill.experiments.report.together import conclusion, together_table


def render(plan, rows: list[dict[str, Any]], figures: dict[str, Any], env: dict[str, Any], wall: float) -> str:
    o = plan.options
    out = [f"# Reproducing the study — {o.scale} scale", ""]
    out += [
        f"Rerun with: `{o.command or 'ragdistill reproduce --scale ' + o.scale + ' --out ' + str(o.out)}` "
        "(finished settings are reused; add `--force` to redo them).",
        "",
        f"Wall time of this invocation: {_minutes(wall)} (reused settings cost nothing here; their own time is in "
        "the run details below).",
        "",
    ]
    for ds in plan.datasets:
        out.append(f"- Data `{ds.label}`: " + "; ".join(ds.notes))
        if ds.split:
            q = ds.split["questions"]
            a = ds.split["articles"]
            out.append(
                f"  - article-disjoint split: train {q['train']} questions / {len(a['train'])} articles, "
                f"dev {q['dev']} / {len(a['dev'])}, test {q['test']} / {len(a['test'])} (seed {ds.split['seed']}); "
                f"no article is in two splits (`{ds.label}` split.json lists them)"
            )
    out += [f"- {n}" for n in _reader_notes(rows)]
    out.append("")
    datasets = [ds.label for ds in plan.datasets]
    for ds in datasets:
        drows = [
            r for r in rows if r["dataset"] == ds and r["name"] != "fid_reader_fit"
        ]  # the fit: a note, Run details
        suffix = f" — {ds}" if len(datasets) > 1 or ds != "demo" else ""
        out += [
            f"## Table 1 — retrieval and answers on the test questions{suffix}",
            "",
            "HR@k: share of test questions with an answer in the top-k passages (DPR token match); EM/F1: the "
            "reader's greedy answer from the top-K passages (SQuAD normalisation), in %. ΔHR@5: against row 1's "
            "off-the-shelf retriever, in points. Rows that train no retriever keep it (Δ –).",
            "",
            table1(drows),
            "",
            "Outcome: read off the 95 % interval of the paired difference (exact McNemar for hit rates and EM, "
            "paired bootstrap with 10,000 resamples and seed 0 for F1): *improves* / *hurts* when the interval "
            "excludes 0, else *no detectable change*. Every difference against its reference row:",
            "",
            differences_table(drows),
            "",
        ]
        if all(
            d is None or d.outcome == "no detectable change" for r in drows for d in (r.get("deltas") or {}).values()
        ) and any((r.get("deltas") or {}) for r in drows):
            out += [
                "All differences of Table 1 are inside their intervals: none is distinguishable from no change "
                "at this n.",
                "",
            ]
        index_notes = [f"{r['name']}: {u}" for r in drows if (u := index_used(r.get("run_dir")))]
        if index_notes:
            out += ["Index of each row's final evaluation: " + "; ".join(index_notes) + ".", ""]
        notes = sorted({r["items_note"] for r in drows if r.get("items_note")})
        out += [f"Note: {n}." for n in notes] + ([""] if notes else [])
        f1 = figures.get("figure1", {}).get(ds)
        out += [f"## Figure 1 — held-out HR@5 over training steps{suffix}", ""]
        if f1:
            out += [f"![Figure 1]({f1})", ""]
            for r in drows:
                if r["curve"]:
                    out.append(
                        f"- {r['number']} {r['name']}: " + ", ".join(f"step {s}: {100 * v:.1f}" for s, v in r["curve"])
                    )
            out.append("")
        else:
            out += ["No training setting logged a held-out evaluation.", ""]
        analysed = [(r, sig, a) for r in drows for sig, a in r["analyses"].items()]
        views = any(r.get("analyses_controlled") is not None for r in drows)
        out += [f"## Table 2 — attention-quality indicators per setting{suffix}", ""]
        if analysed:
            from ragdistill.analysis.report import mean_std_table, table2

            readers = {_row_label(r, sig): a["summary"] for r, sig, a in analysed}
            pct = tuple(next(iter(analysed))[2]["settings"].get("percentiles", (90, 95)))
            sample = next(iter(analysed))[2]["settings"]
            if views:
                out += [
                    f"Each setting measured with its own models (the study's Tables 2–4): its final reader scores "
                    f"{sample.get('n_instances', '?')} sampled test questions (seed {sample.get('seed')}, the same "
                    f"questions for every setting), each with the top-{sample.get('k')} passages of **that setting's "
                    "own final retriever** (the initial retriever for rows that train none; step 2's row therefore "
                    "differs from step 1's). Differences against the reference are paired by question. The "
                    "controlled view (every reader on the initial retriever's passages) is Table 2b.",
                    "",
                ]
            else:
                out += [
                    f"Each setting's final reader scores the same {sample.get('n_instances', '?')} test instances "
                    f"(seed {sample.get('seed')}, top-{sample.get('k')} passages of the initial retriever)."
                ]
            out += [
                "â = the "
                "reader's token scores over passage tokens (attention; for the perplexity signal, the per-token "
                "answer log-likelihood gains), normalised; M = passage tokens whose similarity to the answer's "
                "tokens (answer-related) or the question's nouns (question-related) is at least the p-th "
                "percentile. Attn. = mean â over M; Corr. = Spearman ρ(â, sim) over M.",
                "",
                "Means over instances ± their standard errors. The verdict compares the mean attention on M (the "
                "study's measure: every reader of a family scored the same questions with the same prompt budget).",
                "",
                table2(readers, None, "attention", pct, se=True),
                "",
                "Lift (mean â over M × number of passage tokens; 1 = uniform), shown beside it:",
                "",
                table2(readers, None, "lift", pct, se=True),
                "",
                "### Answer-related tokens, mean ± std",
                "",
                mean_std_table(readers, "answer", None, pct),
                "",
                "### Question-related tokens, mean ± std",
                "",
                mean_std_table(readers, "question", None, pct),
                "",
                "### Verdicts (against the off-the-shelf reader of the same family and signal)",
                "",
            ]
            out += verdict_lines(drows)
            same = [r for r in drows if r["analysis_same_as"]]
            for r in same:
                out.append(
                    f"- {r['number']} {r['name']} reads with {r['analysis_same_as']}'s reader (frozen): "
                    "its indicators are that reader's."
                )
            for r in drows:
                if r.get("own_view") and r.get("analysis_index"):
                    out.append(
                        f"- {r['number']} {r['name']}: own-view passages from `{_short_name(r['final_retriever'])}` "
                        f"over the index `{_short_name(r['analysis_index'])}`."
                    )
            out.append("")
            hist = figures.get("histograms", {}).get(ds, [])
            if hist:
                out += ["### Histograms", ""] + [f"![{h}]({h})" for h in hist] + [""]
            if views:
                out += controlled_section(drows, pct, suffix)
        else:
            out += ["No setting was analysed.", ""]
        out += [
            f"## Putting it together{suffix}",
            "",
            "For each setting whose retriever learnt from a reader: the change in test HR@5 against the "
            "off-the-shelf retriever (paired over the same questions, with its 95 % interval and outcome), whether "
            "its teacher's Indicators 1 and 2 held against the off-the-shelf reader (point estimates; in brackets "
            "the same rule on the intervals: holds when every compared difference improves, fails when one hurts, "
            "else undecided), and whether they predicted the outcome (both hold → the retriever should improve; "
            "otherwise no gain). Row 3 trains no retriever: its reader is row 4's teacher.",
            "",
            together_table(drows),
            "",
        ]
        if any(r.get("seed_runs") for r in drows):
            n_seeds = max(len(r.get("seed_runs") or []) for r in drows)
            out += [
                f"With --seeds {n_seeds}: each row above is the **first seed's run** (train.seed as configured): its "
                "indicators were measured on that run's reader and its interval pairs that run's answers with row 1's "
                "over the same questions; pooling seeds would mix runs in one paired test. The spread over the seeds "
                "is given beside it (ΔHR@5 mean ± sd) and per seed below.",
                "",
                f"### Every seed's run{suffix}",
                "",
                seeds_table(drows),
                "",
            ]
        judged = [r for r in drows if r["agrees"] is not None]
        pending = [r for r in drows if r["agrees"] is None and r["prediction"] and r["outcome"] != "–"]
        if judged:
            ok = sum(1 for r in judged if r["agrees"])
            out.append(
                f"On this data the indicators predicted the outcome for {ok} of {len(judged)} settings"
                + (
                    f"; for {len(pending)} more the prediction cannot be checked (the interval of ΔHR@5 includes 0)"
                    if pending
                    else ""
                )
                + "."
            )
        else:
            out.append(
                "No setting has both an interval-based outcome and a defined verdict that can be compared, so "
                "whether the indicators predict the outcome cannot be judged on this run"
                + (f" ({len(pending)} predicted a gain whose ΔHR@5 interval includes 0)" if pending else "")
                + "."
            )
        out += ["", f"## Conclusion{suffix}", ""] + conclusion(drows) + [""]
    not_run = [r for r in rows if r["status"] == "not run"]
    failed = [r for r in rows if r["status"] == "failed"]
    out += ["## Settings not run", ""]
    if not_run:
        out += ["| dataset | # | setting | why | what would run it |", "|---|---|---|---|---|"]
        out += [
            f"| {r['dataset']} | {r['number']} | {r['name']} | {r['reason']} | {r['flag'] or '–'} |" for r in not_run
        ]
    else:
        out.append("Every setting ran (or was reused).")
    out.append("")
    if failed:
        out += (
            ["## Settings that failed", ""]
            + [
                f"- {r['dataset']} / {r['number']} {r['name']}: {r['error']} "
                f"(logs above; rerun the same command to retry)"
                for r in failed
            ]
            + [""]
        )
    out += [
        "## Run details",
        "",
        "| dataset | # | setting | status | run / eval time | analysis time | steps | refreshes | "
        "train.seed | config |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in [x for row in rows for x in [row, *(row.get("seed_rows") or [])]]:
        if r["status"] == "not run":
            continue
        name = r["name"] + (f" (seed +{r['seed_offset']})" if r.get("seed_offset") else "")
        out.append(
            f"| {r['dataset']} | {r['number']} | {name} | {r['status']} | {_minutes(r['seconds']['run'])} | "
            f"{_minutes(r['seconds']['analysis'])} | {r['steps'] if r['steps'] is not None else '–'} | "
            f"{r['refreshes'] if r['refreshes'] is not None else '–'} | {r['seeds']['train.seed']} | "
            f"`{os.path.relpath(r['config'], o.out)}` |"
        )
    total = sum(
        (r["seconds"]["run"] or 0) + (r["seconds"]["analysis"] or 0)
        for r in [x for row in rows for x in [row, *(row.get("seed_rows") or [])]]
        if r["status"] != "not run"
    )
    out += [
        "",
        f"Sum of the settings' run and analysis times (what a first run costs, setup excluded): {_minutes(total)}.",
    ]
    seeds = {"analysis sample": o.analysis_seed, "demo world": next((r["seeds"]["data.demo_seed"] for r in rows), 0)}
    out += [
        "",
        "Seeds: " + ", ".join(f"{k} {v}" for k, v in seeds.items()) + "; each setting's `train.seed` above "
        "(data order and dropout are functions of (seed, step)).",
        "",
        "Hardware and versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".",
        "",
    ]
    if env.get("load_average") and env.get("cpus_usable") and env["load_average"][0] > 1.5 * env["cpus_usable"]:
        out += [
            f"Note: the load average ({env['load_average'][0]}) exceeded the usable CPUs ({env['cpus_usable']}) "
            "when the report was written: other processes shared the machine and the wall times are pessimistic.",
            "",
        ]
    out += [
        "## Reading this report",
        "",
        "- **Table 1** is the outcome: did distillation move the retriever (HR@5) and what does the reader answer.",
        "- **Indicator 1** (answer-related): the reader's attention puts more weight (mean attention on M) on passage tokens similar "
        "to the answer than the off-the-shelf reader does, and follows that similarity more closely (Spearman).",
        "- **Indicator 2** (question-related): more weight than the reference on tokens similar to the question's "
        "nouns, with a mean Spearman above 0.3.",
        "- Both hold → the reader is a good teacher: distil from it. One holds → fine-tune the reader first (the "
        "study's step 1). Neither → expect no gain: the study found distillation from such a reader hurts.",
        "- Every difference carries its 95 % interval and n; *no detectable change* means the interval includes 0. "
        "The Conclusion's half-widths say how large a change must be to show on this run; demo-scale settings "
        "train for minutes on small models, not the study's days on 1B readers: run `--scale paper` on GPUs for that.",
        "",
    ]
    return "\n".join(out)

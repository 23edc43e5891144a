"""The study's report: DIR/report.md, DIR/report.json and DIR/figures/ from the settings' run directories.

Everything is read back from disk (each row's ``reproduce.json`` marker, ``eval/`` files,
``metrics.jsonl`` and ``analysis/<signal>/`` outputs), so rerunning the command over finished
runs rebuilds the report without training anything. Table 2 and the mean ± std tables
use ``ragdistill.analysis.report``; the histograms use ``ragdistill.analysis.figures``; the
verdicts use ``ragdistill.analysis.indicators.verdict`` against the reference row of the same
reader family and signal.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

from ragdistill.experiments.settings import BY_NAME, DECODER, RETRIEVER_OUTCOME
from ragdistill.utils.io import atomic_file, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

PREDICT_HELP = "helps"
PREDICT_NO = "no gain"


# --------------------------------------------------------------------------- reading runs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _hits(run_dir: Path) -> dict[str, bool]:
    """Per-question HR@K hits of a row's final evaluation (eval/predictions.jsonl), by question id."""
    out: dict[str, bool] = {}
    path = run_dir / "eval" / "predictions.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        out[str(rec.get("id"))] = bool(rec.get("hit"))
    return out


def _curve(run_dir: Path, key: str = "hr@5") -> list[tuple[int, float]]:
    """(step, value) of the held-out evaluations logged in metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    pts: list[tuple[int, float]] = []
    if not path.is_file():
        return pts
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "eval" and key in rec:
            pts.append((int(rec["step"]), float(rec[key])))
    return pts


def _analysis(dirs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{signal: {"summary": per-reader block of indicators.json, "measures": [InstanceMeasures]}}."""
    from ragdistill.analysis.quality import InstanceMeasures

    out: dict[str, dict[str, Any]] = {}
    for signal, d in (dirs or {}).items():
        ind = _read_json(Path(d) / "indicators.json")
        if not ind or not ind.get("readers"):
            continue
        name, summary = next(iter(ind["readers"].items()))
        measures = []
        inst = Path(d) / "instances.jsonl"
        if inst.is_file():
            for line in inst.read_text(encoding="utf-8").splitlines():
                try:
                    measures.append(InstanceMeasures.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue
        out[signal] = {"summary": summary, "measures": measures, "dir": d, "settings": ind.get("settings", {})}
    return out


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


# --------------------------------------------------------------------------- collecting


def collect(plan, results) -> list[dict[str, Any]]:
    """One record per (dataset, setting): status, metrics, analyses, verdicts, deltas."""
    from ragdistill.analysis.indicators import VerdictOptions, advice, verdict

    rows: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    for r in results:
        it = r.item
        m = r.marker or {}
        row: dict[str, Any] = {
            "dataset": it.dataset.label, "name": it.setting.name, "number": it.setting.number, "title": it.setting.title,
            "family": it.setting.family, "signal": it.setting.signal, "regime": it.setting.regime,
            "what_trains": it.setting.what_trains, "status": r.status, "reason": it.reason if r.status == "not run" else "",
            "flag": it.flag if r.status == "not run" else "", "error": r.error, "run_dir": str(it.run_dir),
            "config": str(it.run_dir / "config.yaml"), "config_file": str(it.config_path), "overrides": it.overrides,
            "reader": it.config.reader.name, "retriever": it.config.retriever.name,
            "final_reader": (m.get("analysis") or {}).get("reader"), "metrics": m.get("final_eval") or {},
            "seconds": {"run": m.get("seconds"), "analysis": (m.get("analysis") or {}).get("seconds")},
            "steps": m.get("steps"), "skipped_steps": m.get("skipped_steps"), "refreshes": m.get("refreshes"),
            "seeds": {"train.seed": it.config.train.seed, "data.demo_seed": it.config.data.demo_seed},
            "analysis_same_as": (m.get("analysis") or {}).get("same_as"),
            "analyses": _analysis((m.get("analysis") or {}).get("dirs", {})) if m else {},
            "curve": _curve(it.run_dir) if (m and it.setting.trains) else [],
            "hits": _hits(it.run_dir) if m else {},
        }
        if r.status == "not run" and r.error:
            row["reason"] = r.error
        rows.append(row)
        by_key[f"{row['dataset']}/{row['name']}"] = row
    opts = VerdictOptions()
    for row in rows:
        s = BY_NAME[row["name"]]
        ref = by_key.get(f"{row['dataset']}/{s.reference}") if s.reference else None
        row["reference"] = s.reference
        a = row["analyses"].get(row["signal"])
        ref_a = (ref or {}).get("analyses", {}).get(row["signal"]) if ref else None
        v = None
        if a is not None:
            v = verdict(a["summary"], ref_a["summary"] if (ref_a and s.reference) else None, opts)
            v["advice"], v["advice_reason"] = advice(v)
            if s.reference and ref_a is None:
                v["note"] = f"the reference row {s.reference} has no analysis: the comparison is undefined"
        row["verdict"] = v
        # ΔHR@5 against the off-the-shelf retriever (the decoder checkpoint row evaluates it; FiD rows share it)
        base = by_key.get(f"{row['dataset']}/offshelf_checkpoint")
        row["delta_hr5"] = row["delta_se"] = None
        row["delta_n"] = 0
        if base and base["hits"] and row["hits"] and row["name"] in RETRIEVER_OUTCOME:
            d, se, n = paired_delta(row["hits"], base["hits"])
            row["delta_hr5"], row["delta_se"], row["delta_n"] = d, se, n
            b5, r5 = base["metrics"].get("hr@5"), row["metrics"].get("hr@5")
            if b5 is not None and r5 is not None and n == base["metrics"].get("n") == row["metrics"].get("n"):
                row["delta_hr5"] = r5 - b5
        row["outcome"] = outcome(row["delta_hr5"], row["delta_se"]) if row["name"] in RETRIEVER_OUTCOME else "–"
        if v is not None and v.get("compared_to_reference") and row["name"] in RETRIEVER_OUTCOME:
            h1, h2 = v["indicator1"]["holds"], v["indicator2"]["holds"]
            if h1 is None or h2 is None:
                row["prediction"] = None
            else:
                row["prediction"] = PREDICT_HELP if (h1 and h2) else PREDICT_NO
        else:
            row["prediction"] = None
        if row["prediction"] is None or row["outcome"] == "–":
            row["agrees"] = None
        else:
            row["agrees"] = (row["prediction"] == PREDICT_HELP) == (row["outcome"] == "improved")
    return rows


# --------------------------------------------------------------------------- formatting


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def _holds(x: bool | None) -> str:
    return "undefined" if x is None else ("holds" if x else "fails")


def _row_label(row: dict[str, Any], signal: str | None = None) -> str:
    ref = " — reference" if not BY_NAME[row["name"]].reference else ""
    sig = f", {signal}" if signal else ""
    fam = "decoder" if row["family"] == DECODER else "FiD"
    return f"{row['number']} {row['name']} ({fam}{sig}){ref}"


def table1(rows: Sequence[dict[str, Any]], ks: Sequence[int] | None = None) -> str:
    """Table 1: HR@k, EM, F1 (in %) per setting, with the number of test questions and ΔHR@5."""
    if ks is None:
        found = sorted({int(k[3:]) for r in rows for k in r["metrics"] if k.startswith("hr@") and k[3:].isdigit()})
        ks = found or (1, 5, 20)
    head = ["#", "setting", "reader", "what trains", *[f"HR@{k}" for k in ks], "EM", "F1", "n test", "ΔHR@5", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(ks) + 4) + ["---"]) + "|"]
    for r in rows:
        m = r["metrics"]
        delta = "–" if r["delta_hr5"] is None else f"{100 * r['delta_hr5']:+.1f}"
        status = r["status"] if r["status"] != "not run" else "**not run**"
        if r["status"] == "failed":
            status = "**failed**"
        lines.append("| " + " | ".join([
            r["number"], r["name"], f"`{_short_name(r['reader'])}`", r["what_trains"],
            *[_pct(m.get(f"hr@{k}")) for k in ks], _pct(m.get("em")), _pct(m.get("f1")),
            str(m.get("n", "–")), delta, status]) + " |")
    return "\n".join(lines)


def _short_name(name: str | None) -> str:
    if not name:
        return "–"
    p = Path(name)
    return f"…/{p.parent.name}/{p.name}" if len(name) > 40 and p.parent.name else name


def together_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["#", "setting", "teacher (reader analysed)", "signal", "ΔHR@5 (± 2 SE)", "outcome", "Indicator 1",
            "Indicator 2", "indicators predict", "agree?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] in ("not run", "failed") or not BY_NAME[r["name"]].reference:
            continue
        v = r["verdict"] or {}
        i1 = _holds((v.get("indicator1") or {}).get("holds")) if v else "–"
        i2 = _holds((v.get("indicator2") or {}).get("holds")) if v else "–"
        teacher = r["analysis_same_as"] or r["name"]
        delta = "–" if r["delta_hr5"] is None else (
            f"{100 * r['delta_hr5']:+.1f}" + ("" if r["delta_se"] is None else f" (± {200 * r['delta_se']:.1f})"))
        agree = "–" if r["agrees"] is None else ("yes" if r["agrees"] else "**no**")
        lines.append("| " + " | ".join([r["number"], r["name"], f"{teacher}'s final reader", r["signal"], delta,
                                        r["outcome"], i1, i2, r["prediction"] or "–", agree]) + " |")
    return "\n".join(lines)


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        v = r["verdict"]
        if v is None:
            continue
        if not v.get("compared_to_reference"):
            ab = v["absolute"]
            out.append(f"- **{r['number']} {r['name']}** ({r['signal']}, reference row): comparisons undefined; "
                       f"on its own numbers — answer-related Spearman > {v['corr_threshold']}: "
                       f"{_holds(ab['answer']['spearman_above_threshold'])}, lift > 1: {_holds(ab['answer']['lift_above_uniform'])}; "
                       f"question-related Spearman > {v['corr_threshold']}: {_holds(ab['question']['spearman_above_threshold'])}, "
                       f"lift > 1: {_holds(ab['question']['lift_above_uniform'])}. Advice: *{v['advice']}*.")
            continue
        i1, i2 = v["indicator1"], v["indicator2"]
        f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        out.append(f"- **{r['number']} {r['name']}** vs {r['reference']} ({r['signal']}, p{v['percentile']}, {v['attention_measure']}): "
                   f"Indicator 1 {_holds(i1['holds'])} (lift {f(i1['attention'])} vs {f(i1['reference_attention'])}, "
                   f"Spearman {f(i1['spearman'])} vs {f(i1['reference_spearman'])}); "
                   f"Indicator 2 {_holds(i2['holds'])} (lift {f(i2['attention'])} vs {f(i2['reference_attention'])}, "
                   f"Spearman {f(i2['spearman'])} vs > {v['corr_threshold']}). Advice: *{v['advice']}* — {v['advice_reason']}.")
    return out


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure1(rows: Sequence[dict[str, Any]], path: Path, dataset: str) -> str | None:
    """HR@5 on the held-out questions over training steps, one line per training setting."""
    curves = [(r, r["curve"]) for r in rows if r["curve"]]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = "osD^v<>px*"
    for i, (r, pts) in enumerate(curves):
        xs, ys = zip(*sorted(pts))
        style = "-" if BY_NAME[r["name"]].trains_retriever else ":"
        ax.plot(xs, [100 * y for y in ys], style, marker=markers[i % len(markers)], label=f"{r['number']} {r['name']}"
                + ("" if BY_NAME[r["name"]].trains_retriever else " (retriever fixed)"))
    ax.set_xlabel("training step")
    ax.set_ylabel("HR@5 on held-out questions (%)")
    ax.set_title(f"Figure 1 — held-out HR@5 over training ({dataset})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return str(path)


def histograms(rows: Sequence[dict[str, Any]], fig_dir: Path, dataset: str) -> list[str]:
    """Per-setting histograms and per-group comparison figures (ragdistill.analysis.figures)."""
    from ragdistill.analysis.figures import write_figures

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        for signal, a in r["analyses"].items():
            if r["analysis_same_as"] or not a["measures"]:
                continue
            groups.setdefault((r["family"], signal), {})[_row_label(r, signal)] = a["measures"]
    out = []
    for (family, signal), per_reader in groups.items():
        d = fig_dir / f"{dataset}_{family}_{signal}"
        # the figures of a group are redrawn only when its analyses changed (a rerun that reuses them is quick)
        sources = sorted(str(Path(r["analyses"][signal]["dir"]) / "instances.jsonl") for r in rows
                         if signal in r["analyses"] and not r["analysis_same_as"] and r["family"] == family)
        stamp = {"labels": sorted(per_reader), "sources": {p: Path(p).stat().st_mtime_ns for p in sources if Path(p).is_file()}}
        cached = _read_json(d / "figures.json")
        if cached and cached.get("stamp") == stamp and all((fig_dir / Path(w).relative_to("figures")).is_file()
                                                             for w in cached.get("written", [])):
            out += cached["written"]
            continue
        written = [f"figures/{w}" for w in write_figures(per_reader, d)]
        atomic_write_json(d / "figures.json", {"stamp": stamp, "written": written})
        out += written
    return out


# --------------------------------------------------------------------------- environment


def environment() -> dict[str, Any]:
    """Hardware and library versions for the report."""
    import importlib.metadata as md

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    try:
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass
    try:
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    for pkg in ("ragdistill", "torch", "transformers", "faiss-cpu", "faiss-gpu", "accelerate", "sentence-transformers",
                "numpy", "scipy", "spacy", "matplotlib"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001 - the report must not fail on an odd torch
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        env["memory_gb"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return env


# --------------------------------------------------------------------------- the report


def _minutes(s: float | None) -> str:
    return "–" if s is None else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s")


def _reader_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    notes = []
    names = {r["reader"] for r in rows if r["family"] == "fid"}
    if "minilm-bert2bert" in names:
        notes.append("The FiD rows (1b, 5, 6) use the offline default `minilm-bert2bert`: a BERT-to-BERT "
                     "encoder-decoder warm-started from MiniLM-L6 whose cross-attention layers are random — it reads "
                     "nothing until fine-tuned, so its off-the-shelf EM/F1 are ~0 and its attention starts as noise. "
                     "The study used T5-large; pass `--encdec-reader google-t5/t5-large` (or a local T5 checkpoint) "
                     "to run these rows with a real encoder-decoder.")
    if any(r["reader"] == "smollm2-135m" for r in rows):
        notes.append("The decoder-only rows use the bundled SmolLM2-135M-Instruct (the study: Falcon-1B); the "
                     "retriever is MiniLM-L6 (the study: Contriever). Pass `--reader` / `--retriever` to change them.")
    return notes


def render(plan, rows: list[dict[str, Any]], figures: dict[str, Any], env: dict[str, Any], wall: float) -> str:
    o = plan.options
    out = [f"# Reproducing the study — {o.scale} scale", ""]
    out += [f"Rerun with: `{o.command or 'ragdistill reproduce --scale ' + o.scale + ' --out ' + str(o.out)}` "
            "(finished settings are reused; add `--force` to redo them).", "",
            f"Wall time of this invocation: {_minutes(wall)} (reused settings cost nothing here; their own time is in "
            "the run details below).", ""]
    for ds in plan.datasets:
        out.append(f"- Data `{ds.label}`: " + "; ".join(ds.notes))
        if ds.split:
            q = ds.split["questions"]
            a = ds.split["articles"]
            out.append(f"  - article-disjoint split: train {q['train']} questions / {len(a['train'])} articles, "
                       f"dev {q['dev']} / {len(a['dev'])}, test {q['test']} / {len(a['test'])} (seed {ds.split['seed']}); "
                       f"no article is in two splits (`{ds.label}` split.json lists them)")
    out += [f"- {n}" for n in _reader_notes(rows)]
    out.append("")
    datasets = [ds.label for ds in plan.datasets]
    for ds in datasets:
        drows = [r for r in rows if r["dataset"] == ds]
        suffix = f" — {ds}" if len(datasets) > 1 or ds != "demo" else ""
        out += [f"## Table 1 — retrieval and answers on the test questions{suffix}", "",
                "HR@k: share of test questions with an answer in the top-k passages (DPR token match); EM/F1: the "
                "reader's greedy answer from the top-K passages (SQuAD normalisation), in %. ΔHR@5: against row 1's "
                "off-the-shelf retriever, in points. Rows that train no retriever keep it (Δ –).", "",
                table1(drows), ""]
        f1 = figures.get("figure1", {}).get(ds)
        out += [f"## Figure 1 — held-out HR@5 over training steps{suffix}", ""]
        if f1:
            out += [f"![Figure 1]({f1})", ""]
            for r in drows:
                if r["curve"]:
                    out.append(f"- {r['number']} {r['name']}: " + ", ".join(f"step {s}: {100 * v:.1f}" for s, v in r["curve"]))
            out.append("")
        else:
            out += ["No training setting logged a held-out evaluation.", ""]
        analysed = [(r, sig, a) for r in drows for sig, a in r["analyses"].items()]
        out += [f"## Table 2 — attention-quality indicators per setting{suffix}", ""]
        if analysed:
            from ragdistill.analysis.report import mean_std_table, table2

            readers = {_row_label(r, sig): a["summary"] for r, sig, a in analysed}
            pct = tuple(next(iter(analysed))[2]["settings"].get("percentiles", (90, 95)))
            sample = next(iter(analysed))[2]["settings"]
            out += [f"Each setting's final reader scores the same {sample.get('n_instances', '?')} test instances "
                    f"(seed {sample.get('seed')}, top-{sample.get('k')} passages of the initial retriever). â = the "
                    "reader's token scores over passage tokens (attention; for the perplexity signal, the per-token "
                    "answer log-likelihood gains), normalised; M = passage tokens whose similarity to the answer's "
                    "tokens (answer-related) or the question's nouns (question-related) is at least the p-th "
                    "percentile. Attn. = mean â over M; Corr. = Spearman ρ(â, sim) over M.", "",
                    table2(readers, None, "attention", pct), "",
                    "Lift (mean â over M × number of passage tokens; 1 = uniform) — what the verdict compares:", "",
                    table2(readers, None, "lift", pct), "",
                    "### Answer-related tokens, mean ± std", "", mean_std_table(readers, "answer", None, pct), "",
                    "### Question-related tokens, mean ± std", "", mean_std_table(readers, "question", None, pct), "",
                    "### Verdicts (against the off-the-shelf reader of the same family and signal)", ""]
            out += verdict_lines(drows)
            same = [r for r in drows if r["analysis_same_as"]]
            for r in same:
                out.append(f"- {r['number']} {r['name']} reads with {r['analysis_same_as']}'s reader (frozen): "
                           "its indicators are that reader's.")
            out.append("")
            hist = figures.get("histograms", {}).get(ds, [])
            if hist:
                out += ["### Histograms", ""] + [f"![{h}]({h})" for h in hist] + [""]
        else:
            out += ["No setting was analysed.", ""]
        out += [f"## Putting it together{suffix}", "",
                "For each setting whose retriever learnt from a reader: the change in test HR@5 against the "
                "off-the-shelf retriever (paired over the same questions; ± two standard errors), whether its "
                "teacher's Indicators 1 and 2 held against the off-the-shelf reader, and whether they predicted the "
                "outcome (both hold → the retriever should improve; otherwise no gain). Row 3 trains no retriever: "
                "its reader is row 4's teacher.", "", together_table(drows), ""]
        judged = [r for r in drows if r["agrees"] is not None]
        if judged:
            ok = sum(1 for r in judged if r["agrees"])
            clear = [r for r in judged if r["outcome"] != "no clear change"]
            out.append(f"On this data the indicators predicted the outcome for {ok} of {len(judged)} settings"
                       + (f"; {len(judged) - len(clear)} of them changed HR@5 by less than two standard errors, so "
                          "their outcome is not distinguishable from no change" if len(clear) < len(judged) else "")
                       + ".")
        else:
            out.append("No setting has both an outcome and a defined verdict, so whether the indicators predict the "
                       "outcome cannot be judged on this run.")
        out.append("")
    not_run = [r for r in rows if r["status"] == "not run"]
    failed = [r for r in rows if r["status"] == "failed"]
    out += ["## Settings not run", ""]
    if not_run:
        out += ["| dataset | # | setting | why | what would run it |", "|---|---|---|---|---|"]
        out += [f"| {r['dataset']} | {r['number']} | {r['name']} | {r['reason']} | {r['flag'] or '–'} |" for r in not_run]
    else:
        out.append("Every setting ran (or was reused).")
    out.append("")
    if failed:
        out += ["## Settings that failed", ""] + [f"- {r['dataset']} / {r['number']} {r['name']}: {r['error']} "
                                                   f"(logs above; rerun the same command to retry)" for r in failed] + [""]
    out += ["## Run details", "", "| dataset | # | setting | status | run / eval time | analysis time | steps | refreshes | "
            "train.seed | config |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] == "not run":
            continue
        out.append(f"| {r['dataset']} | {r['number']} | {r['name']} | {r['status']} | {_minutes(r['seconds']['run'])} | "
                   f"{_minutes(r['seconds']['analysis'])} | {r['steps'] if r['steps'] is not None else '–'} | "
                   f"{r['refreshes'] if r['refreshes'] is not None else '–'} | {r['seeds']['train.seed']} | "
                   f"`{os.path.relpath(r['config'], o.out)}` |")
    total = sum((r["seconds"]["run"] or 0) + (r["seconds"]["analysis"] or 0) for r in rows if r["status"] != "not run")
    out += ["", f"Sum of the settings' run and analysis times (what a first run costs, setup excluded): {_minutes(total)}."]
    seeds = {"analysis sample": o.analysis_seed, "demo world": next((r["seeds"]["data.demo_seed"] for r in rows), 0)}
    out += ["", "Seeds: " + ", ".join(f"{k} {v}" for k, v in seeds.items()) + "; each setting's `train.seed` above "
            "(data order and dropout are functions of (seed, step)).", "",
            "Hardware and versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".", ""]
    if env.get("load_average") and env.get("cpus_usable") and env["load_average"][0] > 1.5 * env["cpus_usable"]:
        out += [f"Note: the load average ({env['load_average'][0]}) exceeded the usable CPUs ({env['cpus_usable']}) "
                "when the report was written: other processes shared the machine and the wall times are pessimistic.", ""]
    out += ["## Reading this report", "",
            "- **Table 1** is the outcome: did distillation move the retriever (HR@5) and what does the reader answer.",
            "- **Indicator 1** (answer-related): the reader's attention puts more weight (lift) on passage tokens similar "
            "to the answer than the off-the-shelf reader does, and follows that similarity more closely (Spearman).",
            "- **Indicator 2** (question-related): more weight than the reference on tokens similar to the question's "
            "nouns, with a mean Spearman above 0.3.",
            "- Both hold → the reader is a good teacher: distil from it. One holds → fine-tune the reader first (the "
            "study's step 1). Neither → expect no gain: the study found distillation from such a reader hurts.",
            "- Demo-scale numbers come from tiny runs (tens of steps, ~100 test questions): differences within two "
            "standard errors are noise. Run `--scale paper` on GPUs for the study's scale.", ""]
    return "\n".join(out)


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
        pr = {k: v for k, v in r.items() if k not in ("analyses", "hits")}
        pr["indicators"] = {sig: a["summary"] for sig, a in r["analyses"].items()}
        pr["analysis_dirs"] = {sig: a["dir"] for sig, a in r["analyses"].items()}
        public.append(pr)
    obj = {"scale": plan.options.scale, "out": str(out_dir), "command": plan.options.command,
           "wall_seconds": round(wall_seconds, 1),
           "datasets": [{"label": d.label, "paths": d.paths, "notes": d.notes, "split": d.split} for d in plan.datasets],
           "analysis": {"n": plan.options.analysis_n, "seed": plan.options.analysis_seed, "ig_steps": plan.options.ig_steps},
           "settings": public, "figures": figures, "environment": env,
           "not_run": [{"dataset": r["dataset"], "setting": r["name"], "reason": r["reason"], "flag": r["flag"]}
                       for r in rows if r["status"] == "not run"],
           "failed": [{"dataset": r["dataset"], "setting": r["name"], "error": r["error"]} for r in rows if r["status"] == "failed"]}
    atomic_write_json(out_dir / "report.json", obj)
    return obj

"""One record per (dataset, setting): status, metrics, analyses, verdicts, deltas, prediction and agreement."""

from __future__ import annotations

from typing import Any

from ragdistill.experiments.report.indicators import indicator_intervals
from ragdistill.experiments.report.load import _analysis, _curve, _eval_items, _hits
from ragdistill.experiments.report.tables import fold_seeds, metric_difference, paired_delta
from ragdistill.experiments.settings import ITEMS_BY_NAME as BY_NAME
from ragdistill.experiments.settings import RETRIEVER_OUTCOME

PREDICT_HELP = "helps"
PREDICT_NO = "no gain"


def collect(plan, results) -> list[dict[str, Any]]:
    """One record per (dataset, setting): status, metrics, analyses, verdicts, deltas."""
    from ragdistill.analysis.indicators import VerdictOptions, advice, verdict

    rows: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    texts: dict[str, str] = {}  # passage texts read for the per-question hits, shared by the rows
    for r in results:
        it = r.item
        m = r.marker or {}
        row: dict[str, Any] = {
            "dataset": it.dataset.label,
            "name": it.setting.name,
            "number": it.setting.number,
            "title": it.setting.title,
            "family": it.setting.family,
            "signal": it.setting.signal,
            "regime": it.setting.regime,
            "what_trains": it.setting.what_trains,
            "status": r.status,
            "reason": it.reason if r.status == "not run" else "",
            "flag": it.flag if r.status == "not run" else "",
            "error": r.error,
            "run_dir": str(it.run_dir),
            "config": str(it.run_dir / "config.yaml"),
            "config_file": str(it.config_path),
            "overrides": it.overrides,
            "reader": it.config.reader.name,
            "retriever": it.config.retriever.name,
            "final_reader": (m.get("analysis") or {}).get("reader"),
            "metrics": m.get("final_eval") or {},
            "seconds": {"run": m.get("seconds"), "analysis": (m.get("analysis") or {}).get("seconds")},
            "steps": m.get("steps"),
            "skipped_steps": m.get("skipped_steps"),
            "refreshes": m.get("refreshes"),
            "seeds": {"train.seed": it.config.train.seed, "data.demo_seed": it.config.data.demo_seed},
            "analysis_same_as": (m.get("analysis") or {}).get("same_as"),
            "analyses": _analysis((m.get("analysis") or {}).get("dirs", {})) if m else {},
            # the controlled view (every reader on the initial retriever's passages); None for markers made before it
            "analyses_controlled": (
                _analysis((m.get("analysis") or {}).get("controlled_dirs") or {})
                if m and "controlled_dirs" in (m.get("analysis") or {})
                else None
            ),
            "own_view": bool(
                m
                and (m.get("analysis") or {}).get("controlled_dirs") is not None
                and (m.get("analysis") or {}).get("dirs") != (m.get("analysis") or {}).get("controlled_dirs")
            ),
            "analysis_index": (m.get("analysis") or {}).get("index"),
            "final_retriever": (m.get("analysis") or {}).get("retriever"),
            "controlled_same_as": (m.get("analysis") or {}).get("controlled_same_as"),
            "reader_from": getattr(it, "reader_from", it.setting.reader_from),
            "seed_offset": getattr(it, "seed_offset", 0),
            "curve": _curve(it.run_dir) if (m and it.setting.trains) else [],
            "hits": _hits(it.run_dir) if m else {},
        }
        row["items"], row["items_note"] = _eval_items(it.run_dir, it.config, texts) if m else ({}, "")
        if r.status == "not run" and r.error:
            row["reason"] = r.error
        rows.append(row)
        by_key[f"{row['dataset']}/{row['name']}" + (f"-seed{row['seed_offset']}" if row["seed_offset"] else "")] = row
    # every reader of reproduce scores the same instances with the same prompt budget: the study's mean attention on M
    # decides (DESIGN §3); the lift is shown beside it
    opts = VerdictOptions(attention_measure="mean")
    for row in rows:
        s = BY_NAME[row["name"]]
        ref = by_key.get(f"{row['dataset']}/{s.reference}") if s.reference else None
        row["reference"] = s.reference
        a = row["analyses"].get(row["signal"])
        ref_a = (ref or {}).get("analyses", {}).get(row["signal"]) if ref else None
        v = None
        row["intervals"] = None
        # the own view: this row's passages may differ from the reference's, so its differences pair by question
        pair_by = "question" if row["own_view"] or (ref or {}).get("own_view") else "instance"
        if a is not None:
            v = verdict(a["summary"], ref_a["summary"] if (ref_a and s.reference) else None, opts)
            v["advice"], v["advice_reason"] = advice(v)
            if s.reference and ref_a is None:
                v["note"] = f"the reference row {s.reference} has no analysis: the comparison is undefined"
            if ref_a is not None and s.reference and a["measures"] and ref_a["measures"]:
                row["intervals"] = indicator_intervals(
                    a, ref_a, v["percentile"], v["attention_measure"], v["corr_threshold"], pair_by=pair_by
                )
        row["verdict"] = v
        # the controlled view's verdict: every reader on the initial retriever's passages, paired by instance
        row["verdict_controlled"], row["intervals_controlled"] = None, None
        ac = (row.get("analyses_controlled") or {}).get(row["signal"])
        ref_c = ((ref or {}).get("analyses_controlled") or {}).get(row["signal"]) if ref else None
        if ac is not None:
            vc = verdict(ac["summary"], ref_c["summary"] if (ref_c and s.reference) else None, opts)
            vc["advice"], vc["advice_reason"] = advice(vc)
            row["verdict_controlled"] = vc
            if ref_c is not None and s.reference and ac["measures"] and ref_c["measures"]:
                row["intervals_controlled"] = indicator_intervals(
                    ac, ref_c, vc["percentile"], vc["attention_measure"], vc["corr_threshold"]
                )
        # ΔHR@k against the off-the-shelf retriever (the decoder checkpoint row evaluates it; FiD rows share it);
        # ΔEM/ΔF1 against the reference row of the same family (its reader)
        base = by_key.get(f"{row['dataset']}/offshelf_checkpoint")
        row["deltas"] = {}
        if base and row["items"] and base is not row and row["name"] in RETRIEVER_OUTCOME:
            for key in sorted(
                {k for it in row["items"].values() for k in it if k.startswith("hr@")}, key=lambda x: int(x[3:])
            ):
                row["deltas"][key] = metric_difference(row["items"], base["items"], key)
        if ref and ref["items"] and row["items"]:
            for key in ("em", "f1"):
                row["deltas"][key] = metric_difference(row["items"], ref["items"], key)
        d5 = row["deltas"].get("hr@5")
        row["delta_hr5"] = None if d5 is None else d5.estimate
        row["delta_ci"] = None if d5 is None else [d5.low, d5.high]
        row["delta_n"] = 0 if d5 is None else d5.n
        row["delta_se"] = None
        if base and base["hits"] and row["hits"] and row["name"] in RETRIEVER_OUTCOME:
            row["delta_se"] = paired_delta(row["hits"], base["hits"])[1]
        row["outcome"], row["outcome_why"] = _outcome_of(row, base)
        if v is not None and v.get("compared_to_reference") and row["name"] in RETRIEVER_OUTCOME:
            h1, h2 = v["indicator1"]["holds"], v["indicator2"]["holds"]
            if h1 is None or h2 is None:
                row["prediction"] = None
                row["prediction_why"] = "a Spearman mean is undefined (no instance with a defined ρ)"
            else:
                row["prediction"] = PREDICT_HELP if (h1 and h2) else PREDICT_NO
                row["prediction_why"] = ""
        else:
            row["prediction"] = None
            row["prediction_why"] = (
                "its retriever is not trained"
                if row["name"] not in RETRIEVER_OUTCOME
                else "no analysis of its teacher"
                if v is None
                else (v.get("note") or "no reference to compare with")
            )
        row["agrees"], row["agrees_why"] = _agreement(row["prediction"], row["outcome"])
    return fold_seeds(rows)


def _outcome_of(row: dict[str, Any], base: dict[str, Any] | None) -> tuple[str, str]:
    """The interval-based outcome of ΔHR@5 ('–' with the reason when there is none)."""
    if row["name"] not in RETRIEVER_OUTCOME:
        return "–", "its retriever is not trained"
    d = row["deltas"].get("hr@5")
    if d is not None:
        return d.outcome, ""
    if base is None or base["status"] in ("not run", "failed"):
        return "–", "row 1 (the off-the-shelf retriever) has no evaluation"
    if not row["items"]:
        return "–", "no per-question evaluation (eval/predictions.jsonl)"
    return "–", "no test question in common with row 1"


def _agreement(prediction: str | None, outcome: str) -> tuple[bool | None, str]:
    """Whether the indicators' prediction matches the interval-based outcome (None with the reason when it cannot be told)."""
    if prediction is None:
        return None, "no prediction"
    if outcome == "–":
        return None, "no outcome"
    if prediction == PREDICT_HELP:
        if outcome == "improves":
            return True, ""
        if outcome == "hurts":
            return False, ""
        return None, "predicted a gain, but the interval of ΔHR@5 includes 0"
    return outcome != "improves", ""

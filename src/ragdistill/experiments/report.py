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

from ragdistill.evaluation.statistics import Difference, format_difference
# every name a plan item can carry (the study's settings and the FiD reader fit)
from ragdistill.experiments.settings import DECODER, RETRIEVER_OUTCOME
from ragdistill.experiments.settings import ITEMS_BY_NAME as BY_NAME
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


def _passage_texts(ids: set[str], config, cache: dict[str, str]) -> dict[str, str]:
    """Texts (as the retriever saw them) of the given passage ids: from the index's passage store, else the corpus."""
    want = {i for i in ids if i not in cache}
    if want:
        store_path = Path(config.index.dir) / "passages.sqlite" if getattr(config.index, "dir", None) else None
        if store_path is not None and store_path.is_file():
            from ragdistill.retrieval.store import PassageStore

            store = PassageStore.open(store_path)
            try:
                for pid in sorted(want):
                    row = store.row_of(pid)
                    if row is not None:
                        cache[pid] = store.get([row])[0].as_text()
            finally:
                store.close()
        want = {i for i in want if i not in cache}
        if want and config.data.corpus and Path(config.data.corpus).is_file():
            from ragdistill.data.corpus import iter_passages

            for psg in iter_passages(config.data.corpus, config.data.corpus_format, config.data.chunk_words):
                if psg.id in want:
                    cache[psg.id] = psg.as_text()
                    want.discard(psg.id)
                    if not want:
                        break
    return {i: cache[i] for i in ids if i in cache}


def _eval_items(run_dir: Path, config, cache: dict[str, str]) -> tuple[dict[str, dict[str, float]], str]:
    """Per-question outcomes of a row's final evaluation, by question id: {"hr@k": 0/1, "em", "f1"}, and a note.

    predictions.jsonl stores the top-k hit (``hit``, k = the reader's passages), EM, F1 and the retrieved
    passage ids; the hits at the other depths (HR@1, HR@20) are recomputed from the retrieved passages'
    texts with the evaluation's own match (``retrieval.metrics.hit_flags``) unless the file carries
    ``hit_flags``. A recomputation that disagrees with the stored hit is dropped (the note says so).
    """
    path = run_dir / "eval" / "predictions.jsonl"
    if not path.is_file():
        return {}, "no eval/predictions.jsonl"
    recs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("id") is not None:
            recs.append(rec)
    k = int(config.train.k)
    ks = sorted({int(x) for x in config.eval.ks})
    note = ""
    flags: dict[str, list[bool]] = {}
    if recs and all(isinstance(r.get("hit_flags"), list) for r in recs):
        flags = {str(r["id"]): [bool(x) for x in r["hit_flags"]] for r in recs}
    elif recs and all(isinstance(r.get("retrieved"), list) and r.get("answers") for r in recs):
        from ragdistill.retrieval.metrics import hit_flags

        try:
            texts = _passage_texts({str(i) for r in recs for i in r["retrieved"]}, config, cache)
        except Exception as exc:  # noqa: BLE001 - the report must not fail on an unreadable store
            texts, note = {}, f"passage texts unreadable ({exc})"
        for r in recs:
            ids = [str(i) for i in r["retrieved"]]
            if all(i in texts for i in ids):
                flags[str(r["id"])] = hit_flags([texts[i] for i in ids], r["answers"], config.eval.match)
    stored = {str(r["id"]): bool(r.get("hit")) for r in recs}
    bad = [i for i, f in flags.items() if stored.get(i) != any(f[:k])]
    if bad:
        note = f"recomputed hits disagree with the stored ones for {len(bad)} questions: only HR@{k} is used"
        flags = {}
    if recs and not flags and not note:
        note = f"per-question hits at depths other than {k} are not stored and could not be recomputed"
    out: dict[str, dict[str, float]] = {}
    for r in recs:
        qid = str(r["id"])
        item: dict[str, float] = {f"hr@{k}": float(bool(r.get("hit")))}
        f = flags.get(qid)
        if f is not None:
            item.update({f"hr@{kk}": float(any(f[:kk])) for kk in ks if kk <= len(f)})
        for m in ("em", "f1"):
            if r.get(m) is not None:
                item[m] = float(r[m])
        out[qid] = item
    return out, note


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
        measures, keys = [], []
        inst = Path(d) / "instances.jsonl"
        if inst.is_file():
            for line in inst.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    measures.append(InstanceMeasures.from_dict(rec))
                except (ValueError, KeyError, TypeError):
                    continue
                # the instance: the question and the passages the reader read (what pairs two readers' measures)
                qid = rec.get("question_id")
                keys.append(None if qid is None else f"{qid}|{','.join(map(str, rec.get('passage_ids') or []))}")
        out[signal] = {"summary": summary, "measures": measures, "keys": keys, "dir": d, "settings": ind.get("settings", {})}
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


# --------------------------------------------------------------------------- differences with intervals (DESIGN §7)

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"


def metric_difference(items: dict[str, dict[str, float]], base: dict[str, dict[str, float]], metric: str,
                      seed: int = 0) -> Difference | None:
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


def _instance_values(a: dict[str, Any], group: str, p: int, quantity: str) -> tuple[list[str | None], list[float | None]]:
    keys, vals = [], []
    for key, m in zip(a.get("keys") or [None] * len(a["measures"]), a["measures"]):
        g = m.groups.get(group)
        v = None
        if g is not None and not g.skipped and p in g.by_percentile:
            v = getattr(g.by_percentile[p], quantity)
        keys.append(key)
        vals.append(None if v is None else float(v))
    return keys, vals


def indicator_difference(a: dict[str, Any], ref: dict[str, Any], group: str, p: int, quantity: str,
                         seed: int = 0, pair_by: str = "instance") -> Difference | None:
    """reader − reference of a per-instance measure's mean ("mean_attention", "lift", "spearman"): paired over the
    instances both readers were analysed on (same question, same passages), otherwise an unpaired bootstrap.

    ``pair_by="question"``: paired over the questions both analysed, whatever passages each retriever gave them (the
    own-retriever view, where a trained retriever retrieves other passages for the same sampled questions).
    """
    from ragdistill.evaluation.statistics import paired_bootstrap, unpaired_bootstrap

    ka, va = _instance_values(a, group, p, quantity)
    kb, vb = _instance_values(ref, group, p, quantity)
    if pair_by == "question":
        ka = [None if k is None else k.split("|", 1)[0] for k in ka]
        kb = [None if k is None else k.split("|", 1)[0] for k in kb]
    if ka and kb and None not in ka and None not in kb and len(set(ka)) == len(ka) and len(set(kb)) == len(kb) \
            and set(ka) & set(kb):
        other = dict(zip(kb, vb))
        pairs = [(x, other[k]) for k, x in zip(ka, va) if k in other and x is not None and other[k] is not None]
        if not pairs:
            return None
        return paired_bootstrap([x for x, _ in pairs], [y for _, y in pairs], seed=seed)
    return unpaired_bootstrap([x for x in va if x is not None], [y for y in vb if y is not None], seed=seed)


def threshold_difference(a: dict[str, Any], group: str, p: int, threshold: float, seed: int = 0) -> Difference | None:
    """mean Spearman − threshold (Indicator 2's absolute rule) with a bootstrap interval over the instances."""
    from ragdistill.evaluation.statistics import paired_bootstrap

    vals = [x for x in _instance_values(a, group, p, "spearman")[1] if x is not None]
    return paired_bootstrap(vals, [threshold] * len(vals), seed=seed) if vals else None


def interval_status(parts: Sequence[Difference | None]) -> str | None:
    """An indicator by its intervals: holds when every part improves, fails when one hurts, else undecided."""
    if any(d is None for d in parts):
        return None
    outs = [d.outcome for d in parts]
    if all(o == "improves" for o in outs):
        return HOLDS
    if any(o == "hurts" for o in outs):
        return FAILS
    return UNDECIDED


def indicator_intervals(a: dict[str, Any], ref: dict[str, Any], percentile: int, measure: str,
                        corr_threshold: float, pair_by: str = "instance") -> dict[str, Any]:
    """The intervals behind a verdict: Δ mean attention, Δ lift and Δ Spearman per group, ρ_Q − threshold, statuses."""
    from ragdistill.analysis.quality import GROUPS

    quantity = {"mean": "mean_attention", "lift": "lift"}[measure]
    out: dict[str, Any] = {"percentile": percentile, "measure": measure, "paired_by": pair_by}
    for g in GROUPS:
        out[g] = {q: indicator_difference(a, ref, g, percentile, q, pair_by=pair_by)
                  for q in ("mean_attention", "lift", "spearman")}
    out["question"]["spearman_minus_threshold"] = threshold_difference(a, "question", percentile, corr_threshold)
    out["indicator1"] = interval_status([out["answer"][quantity], out["answer"]["spearman"]])
    out["indicator2"] = interval_status([out["question"][quantity], out["question"]["spearman_minus_threshold"]])
    return out


def _public_intervals(iv: dict[str, Any] | None) -> dict[str, Any] | None:
    if iv is None:
        return None
    out = {k: v for k, v in iv.items() if not isinstance(v, dict)}
    for g in ("answer", "question"):
        out[g] = {q: (d.to_dict() if d is not None else None) for q, d in iv[g].items()}
    return out


# --------------------------------------------------------------------------- collecting


def collect(plan, results) -> list[dict[str, Any]]:
    """One record per (dataset, setting): status, metrics, analyses, verdicts, deltas."""
    from ragdistill.analysis.indicators import VerdictOptions, advice, verdict

    rows: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    texts: dict[str, str] = {}   # passage texts read for the per-question hits, shared by the rows
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
            # the controlled view (every reader on the initial retriever's passages); None for markers made before it
            "analyses_controlled": (_analysis((m.get("analysis") or {}).get("controlled_dirs") or {})
                                    if m and "controlled_dirs" in (m.get("analysis") or {}) else None),
            "own_view": bool(m and (m.get("analysis") or {}).get("controlled_dirs") is not None
                             and (m.get("analysis") or {}).get("dirs") != (m.get("analysis") or {}).get("controlled_dirs")),
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
                row["intervals"] = indicator_intervals(a, ref_a, v["percentile"], v["attention_measure"],
                                                       v["corr_threshold"], pair_by=pair_by)
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
                row["intervals_controlled"] = indicator_intervals(ac, ref_c, vc["percentile"], vc["attention_measure"],
                                                                  vc["corr_threshold"])
        # ΔHR@k against the off-the-shelf retriever (the decoder checkpoint row evaluates it; FiD rows share it);
        # ΔEM/ΔF1 against the reference row of the same family (its reader)
        base = by_key.get(f"{row['dataset']}/offshelf_checkpoint")
        row["deltas"] = {}
        if base and row["items"] and base is not row and row["name"] in RETRIEVER_OUTCOME:
            for key in sorted({k for it in row["items"].values() for k in it if k.startswith("hr@")},
                              key=lambda x: int(x[3:])):
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
            row["prediction_why"] = ("its retriever is not trained" if row["name"] not in RETRIEVER_OUTCOME else
                                     "no analysis of its teacher" if v is None else
                                     (v.get("note") or "no reference to compare with"))
        row["agrees"], row["agrees_why"] = _agreement(row["prediction"], row["outcome"])
    return fold_seeds(rows)


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
        r["seed_runs"] = [{"seed_offset": x["seed_offset"], "train_seed": x["seeds"]["train.seed"], "status": x["status"],
                           "run_dir": x["run_dir"], "metrics": x["metrics"], "delta_hr5": x["delta_hr5"],
                           "delta_ci": x["delta_ci"], "delta_n": x["delta_n"], "outcome": x["outcome"],
                           "seconds": x["seconds"]["run"]} for x in runs]
        done = [x for x in runs if x["status"] in ("ran", "reused")]
        r["across_seeds"] = {k: _mean_sd([x["metrics"].get(k) for x in done]) for k in SEED_METRICS}
        r["across_seeds"]["delta_hr5"] = _mean_sd([x["delta_hr5"] for x in done])
    return main


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
    seeded = any(r.get("across_seeds") for r in rows)
    head = ["#", "setting", "reader", "what trains", *[f"HR@{k}" for k in ks], "EM", "F1", "n test",
            "ΔHR@5 [95 % CI]", "outcome", "status"]
    if seeded:  # --seeds: mean ± sd over the seeds beside the first seed's per-run numbers and interval
        head += ["seeds", "HR@5 mean ± sd", "EM mean ± sd", "ΔHR@5 mean ± sd"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(ks) + 4) + ["---"] * 2
                                                          + (["---:"] * 4 if seeded else [])) + "|"]
    for r in rows:
        m = r["metrics"]
        d5 = (r.get("deltas") or {}).get("hr@5")
        delta = format_difference(d5) if d5 is not None else (
            "–" if r.get("delta_hr5") is None else f"{100 * r['delta_hr5']:+.1f}")
        status = r["status"] if r["status"] != "not run" else "**not run**"
        if r["status"] == "failed":
            status = "**failed**"
        lines.append("| " + " | ".join([
            r["number"], r["name"], f"`{_short_name(r['reader'])}`", r["what_trains"],
            *[_pct(m.get(f"hr@{k}")) for k in ks], _pct(m.get("em")), _pct(m.get("f1")),
            str(m.get("n", "–")), delta, r.get("outcome") or "–", status]
            + (_seed_cells(r) if seeded else [])) + " |")
    return "\n".join(lines)


def _ms(x: dict[str, Any] | None, signed: bool = False) -> str:
    if not x:
        return "–"
    mean = f"{100 * x['mean']:+.1f}" if signed else f"{100 * x['mean']:.1f}"
    return mean + ("" if x["sd"] is None else f" ± {100 * x['sd']:.1f}")


def _seed_cells(r: dict[str, Any]) -> list[str]:
    a = r.get("across_seeds")
    if not a:
        return ["1", "–", "–", "–"]
    return [str(len(r["seed_runs"])), _ms(a.get("hr@5")), _ms(a.get("em")), _ms(a.get("delta_hr5"), signed=True)]


def seeds_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every seed's run of the repeated settings: HR@5, EM, ΔHR@5 with its own paired interval, and the outcome."""
    lines = ["| # | setting | seed offset | train.seed | HR@5 | EM | F1 | ΔHR@5 [95 % CI], n | outcome | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        for x in r.get("seed_runs") or []:
            d = "–" if x["delta_hr5"] is None else (
                f"{100 * x['delta_hr5']:+.1f} [{100 * x['delta_ci'][0]:+.1f}, {100 * x['delta_ci'][1]:+.1f}], n={x['delta_n']}"
                if x["delta_ci"] else f"{100 * x['delta_hr5']:+.1f}")
            m = x["metrics"] or {}
            lines.append(f"| {r['number']} | {r['name']} | +{x['seed_offset']} | {x['train_seed']} | {_pct(m.get('hr@5'))} | "
                         f"{_pct(m.get('em'))} | {_pct(m.get('f1'))} | {d} | {x['outcome'] or '–'} | {x['status']} |")
    return "\n".join(lines)


METRIC_TITLE = {"em": "EM", "f1": "F1"}


def _metric_title(key: str) -> str:
    return METRIC_TITLE.get(key, key.upper().replace("HR@", "HR@"))


def differences_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every Δ of Table 1 against its reference row: the paired difference, 95 % interval, n, test and outcome."""
    head = ["#", "setting", "Δ", "against", "difference (points)", "95 % CI", "± half-width", "n", "test", "p", "outcome"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 4 + ["---"] * 3) + "|"]
    for r in rows:
        for key, d in (r.get("deltas") or {}).items():
            against = "1 offshelf_checkpoint (retriever)" if key.startswith("hr@") else f"{r['reference']} (reader)"
            if d is None:
                lines.append(f"| {r['number']} | {r['name']} | Δ{_metric_title(key)} | {against} | – | – | – | 0 | – | – | "
                             "undefined: no question in common |")
                continue
            p = "–" if d.p_value is None else f"{d.p_value:.3g}"
            test = d.method + (f" (discordant {d.discordant[0]}/{d.discordant[1]})" if d.discordant else "")
            lines.append(f"| {r['number']} | {r['name']} | Δ{_metric_title(key)} | {against} | {100 * d.estimate:+.1f} | "
                         f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {100 * d.half_width:.1f} | {d.n} | {test} | {p} | "
                         f"{d.outcome} |")
    if len(lines) == 2:
        return "No difference to compute: no setting other than the reference rows has a per-question evaluation."
    return "\n".join(lines)


def _short_name(name: str | None) -> str:
    if not name:
        return "–"
    p = Path(name)
    return f"…/{p.parent.name}/{p.name}" if len(name) > 40 and p.parent.name else name


def _status_cell(point: bool | None, iv: str | None) -> str:
    txt = _holds(point)
    return txt if iv is None else f"{txt} (interval: {iv})"


def together_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["#", "setting", "teacher (reader analysed)", "signal", "ΔHR@5 [95 % CI], n", "outcome (interval)",
            "Indicator 1", "Indicator 2", "indicators predict", "agree?", "why undefined"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] in ("not run", "failed") or not BY_NAME[r["name"]].reference:
            continue
        v = r["verdict"] or {}
        iv = r.get("intervals") or {}
        i1 = _status_cell((v.get("indicator1") or {}).get("holds"), iv.get("indicator1")) if v else "–"
        i2 = _status_cell((v.get("indicator2") or {}).get("holds"), iv.get("indicator2")) if v else "–"
        teacher = r["analysis_same_as"] or BY_NAME[r["name"]].reader_from or r["name"]
        d5 = (r.get("deltas") or {}).get("hr@5")
        delta = "–" if d5 is None else f"{format_difference(d5)}, n={d5.n}"
        if (r.get("across_seeds") or {}).get("delta_hr5"):
            delta += f"; {len(r['seed_runs'])} seeds: {_ms(r['across_seeds']['delta_hr5'], signed=True)}"
        agree = "–" if r["agrees"] is None else ("yes" if r["agrees"] else "**no**")
        why = "; ".join(dict.fromkeys(x for x in (r.get("outcome_why"), r.get("prediction_why") if r["prediction"] is None else "",
                                    r.get("agrees_why") if r["agrees"] is None and r["prediction"] and r["outcome"] != "–"
                                    else "") if x)) or "–"
        lines.append("| " + " | ".join([r["number"], r["name"], f"{teacher}'s final reader", r["signal"], delta,
                                        r["outcome"], i1, i2, r["prediction"] or "–", agree, why]) + " |")
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
        iv = r.get("intervals") or {}
        mq = "mean_attention" if v["attention_measure"] == "mean" else "lift"
        other = "lift" if mq == "mean_attention" else "mean_attention"
        name = {"mean_attention": "mean attention", "lift": "lift"}
        head = (f"- **{r['number']} {r['name']}** vs {r['reference']} ({r['signal']}, p{v['percentile']}; decided by the "
                f"{v['decided_by']}" + (", the study's measure: every reader scored the same instances with the same "
                                         "prompt budget; the lift beside it" if v["attention_measure"] == "mean" else "")
                + "): ")
        parts = []
        for label, ind, g in (("Indicator 1", i1, "answer"), ("Indicator 2", i2, "question")):
            gi = iv.get(g) or {}
            txt = (f"{label} {_holds(ind['holds'])}" + (f" (by the intervals: {iv['indicator' + label[-1]]})"
                                                        if iv.get("indicator" + label[-1]) else "")
                   + f" — {name[mq]} {_num(ind.get(mq))} vs {_num(ind.get('reference_' + mq))}{_iv(gi.get(mq))}; "
                   f"{name[other]} {_num(ind.get(other))} vs {_num(ind.get('reference_' + other))}{_iv(gi.get(other))}; ")
            if g == "answer":
                txt += f"Spearman {_num(ind['spearman'])} vs {_num(ind['reference_spearman'])}{_iv(gi.get('spearman'))}"
            else:
                txt += (f"Spearman {_num(ind['spearman'])} vs > {v['corr_threshold']}"
                        f"{_iv(gi.get('spearman_minus_threshold'), 'ρ − threshold')}")
            parts.append(txt)
        out.append(head + "; ".join(parts) + f". Advice: *{v['advice']}* — {v['advice_reason']}.")
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


def _iv(d: Difference | None, what: str = "Δ") -> str:
    """' (Δ +0.01 [−0.00, +0.02], n=40 paired: no detectable change)' for an indicator difference."""
    if d is None:
        return ""
    f = lambda x: f"{x:+.3g}"  # noqa: E731
    n = f"n={d.n} paired" if d.method == "paired bootstrap" else f"n={d.n}/{d.n_b} unpaired"
    return f" ({what} {f(d.estimate)} [{f(d.low)}, {f(d.high)}], {n}: {d.outcome})"


REPRODUCED, NOT_REPRODUCED, UNDECIDED_FINDING = "reproduced", "did not reproduce", "could not be decided"


def _ci_text(d: Difference, scale: float = 100.0, unit: str = " points") -> str:
    return (f"{scale * d.estimate:+.1f}{unit} [95 % CI {scale * d.low:+.1f}, {scale * d.high:+.1f}], n={d.n}"
            if scale != 1 else f"{d.estimate:+.3g} [95 % CI {d.low:+.3g}, {d.high:+.3g}], n={d.n}")


def _missing(row: dict[str, Any] | None, name: str) -> str | None:
    if row is None:
        return f"setting {name} is not in this run"
    if row["status"] == "not run":
        return f"setting {row['number']} {name} did not run" + (f" ({row['reason']})" if row.get("reason") else "")
    if row["status"] == "failed":
        return f"setting {row['number']} {name} failed ({row['error']})"
    return None


def _retrieval_finding(row: dict[str, Any] | None, name: str, want: str) -> tuple[str, str]:
    miss = _missing(row, name)
    if miss:
        return UNDECIDED_FINDING, miss
    d = (row.get("deltas") or {}).get("hr@5")
    if d is None:
        return UNDECIDED_FINDING, f"no ΔHR@5: {row.get('outcome_why') or 'undefined'}"
    txt = f"ΔHR@5 {_ci_text(d)} ({d.method})"
    if d.outcome == want:
        return REPRODUCED, txt
    if d.outcome == "no detectable change":
        return UNDECIDED_FINDING, f"{txt}: the interval includes 0 at n={d.n}"
    return NOT_REPRODUCED, f"{txt}: it {d.outcome}"


def _indicator_text(row: dict[str, Any]) -> str:
    v, iv = row["verdict"], row.get("intervals") or {}
    return (f"Indicator 1 {_holds(v['indicator1']['holds'])} (intervals: {iv.get('indicator1') or 'none'}), "
            f"Indicator 2 {_holds(v['indicator2']['holds'])} (intervals: {iv.get('indicator2') or 'none'})")


def _indicator_finding(row: dict[str, Any] | None, name: str, kind: str) -> tuple[str, str]:
    """kind: 'both' (both indicators hold), 'encdec' (only Indicator 1's attention trend), 'neither'."""
    miss = _missing(row, name)
    if miss:
        return UNDECIDED_FINDING, miss
    v, iv = row.get("verdict"), row.get("intervals")
    if v is None or not v.get("compared_to_reference"):
        return UNDECIDED_FINDING, f"no verdict against the reference ({(v or {}).get('note') or 'no analysis'})"
    if not iv:
        return UNDECIDED_FINDING, "no per-instance measures to put intervals on the indicator differences"
    s1, s2 = iv.get("indicator1"), iv.get("indicator2")
    txt = _indicator_text(row)
    if kind == "both":
        if s1 == HOLDS and s2 == HOLDS:
            return REPRODUCED, txt
        if FAILS in (s1, s2):
            return NOT_REPRODUCED, txt
        return UNDECIDED_FINDING, txt + f": an interval includes 0 at n={_n_inst(iv)}"
    if kind == "neither":
        if HOLDS in (s1, s2):
            return NOT_REPRODUCED, txt
        if s1 == FAILS and s2 == FAILS:
            return REPRODUCED, txt
        return UNDECIDED_FINDING, txt + f": not clearly failing either, an interval includes 0 at n={_n_inst(iv)}"
    # encoder-decoder: the answer-related attention rises, and not both indicators hold
    quantity = "mean_attention" if iv["measure"] == "mean" else "lift"
    d = iv["answer"][quantity]
    if d is None:
        return UNDECIDED_FINDING, "the answer-related attention difference is undefined"
    txt = f"answer-related Δ {quantity.replace('_', ' ')} {_ci_text(d, 1)}: {d.outcome}; " + txt
    if d.outcome == "improves" and s2 != HOLDS:
        return REPRODUCED, txt
    if d.outcome == "hurts" or (s1 == HOLDS and s2 == HOLDS):
        return NOT_REPRODUCED, txt
    return UNDECIDED_FINDING, txt + f": an interval includes 0 at n={d.n}"


def _n_inst(iv: dict[str, Any]) -> str:
    ns = sorted({d.n for g in ("answer", "question") for d in iv[g].values() if d is not None})
    return "/".join(map(str, ns)) or "0"


def conclusion(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The study's findings, each reproduced / not reproduced / undecided on this data, from the intervals."""
    by = {r["name"]: r for r in rows}
    teacher = by.get("finetuned_step1")
    findings = [
        ("Off-the-shelf distillation hurts the retriever (row 2)",
         _retrieval_finding(by.get("offshelf_distill"), "offshelf_distill", "hurts")),
        ("Fine-tuned distillation, step 2, improves the retriever (row 4)",
         _retrieval_finding(by.get("finetuned_step2"), "finetuned_step2", "improves")),
        ("Indicators 1 and 2 hold for a good teacher (row 3's fine-tuned reader, row 4's teacher)",
         _indicator_finding(teacher, "finetuned_step1", "both")),
        ("Encoder-decoder distillation: only Indicator 1's attention trend (row 5)",
         _indicator_finding(by.get("encdec_distill"), "encdec_distill", "encdec")),
        ("Perplexity distillation: neither indicator holds (row 6)",
         _indicator_finding(by.get("perplexity_distill"), "perplexity_distill", "neither")),
    ]
    counts = {k: sum(1 for _, (st, _) in findings if st == k) for k in (REPRODUCED, NOT_REPRODUCED, UNDECIDED_FINDING)}
    out = [f"Of the study's {len(findings)} findings, {counts[REPRODUCED]} reproduced on this data, "
           f"{counts[NOT_REPRODUCED]} did not, and {counts[UNDECIDED_FINDING]} could not be decided.", ""]
    out += [f"- **{title}**: {status} — {detail}." for title, (status, detail) in findings]
    if teacher and teacher.get("status") not in ("not run", "failed"):
        em = (teacher.get("deltas") or {}).get("em")
        if em is not None:
            out.append(f"- Step 1's reader against the off-the-shelf reader: ΔEM {_ci_text(em)} ({em.outcome}) — the "
                       "study's step 2 presumes a clearly better (well-tuned) reader.")
    out += ["", power_line(rows)]
    return out


def power_line(rows: Sequence[dict[str, Any]]) -> str:
    """The 95 % half-widths of every interval: what differences this run can tell from noise."""
    parts = []
    for key in sorted({k for r in rows for k in (r.get("deltas") or {})}, key=lambda k: (0, int(k[3:]), "") if k.startswith("hr@") and k[3:].isdigit() else (1, 0, k)):
        ds = [(r, r["deltas"][key]) for r in rows if (r.get("deltas") or {}).get(key) is not None]
        if ds:
            parts.append(f"Δ{_metric_title(key)} ± " + ", ".join(f"{100 * d.half_width:.1f} (row {r['number']}, n={d.n})"
                                                              for r, d in ds) + " points")
    for r in rows:
        iv = r.get("intervals")
        if not iv:
            continue
        q = "mean_attention" if iv["measure"] == "mean" else "lift"
        bits = []
        for g, title in (("answer", "answer"), ("question", "question")):
            d, rho = iv[g][q], iv[g]["spearman"]
            if d is not None:
                bits.append(f"{title} Δ{q.replace('_', ' ')} ± {d.half_width:.3g}")
            if rho is not None:
                bits.append(f"{title} ΔSpearman ± {rho.half_width:.3f}")
        if bits:
            n = _n_inst(iv)
            parts.append(f"row {r['number']} indicators (n={n}): " + ", ".join(bits))
    if not parts:
        return "No difference had an interval (nothing to compare)."
    return ("Interval half-widths (95 %), i.e. the smallest differences this run can tell from noise: "
            + "; ".join(parts) + ".")


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
    fit = next((r for r in rows if r["name"] == "fid_reader_fit"), None)
    if fit is not None:
        ref = next((r for r in rows if r["name"] == "offshelf_checkpoint_fid" and r["dataset"] == fit["dataset"]), None)
        em = (ref or {}).get("metrics", {}).get("em")
        notes.append("The FiD rows (1b, 5, 6) read the offline `minilm-bert2bert` **fitted first** as a reader "
                     f"(`fid_reader_fit`: {fit['steps'] if fit['steps'] is not None else '?'} steps, reader only, on the "
                     "training split, retriever fixed; " + (f"{fit['status']}" if fit["status"] != "not run" else
                                                            f"not run: {fit['reason']}") + "). It stands in for the "
                     "study's pre-trained T5-large: settings 5 and 6 start from it. Its EM on the test questions before "
                     f"settings 5 and 6 start (row 1b): {_pct(em)} %" + ("" if em is None else
                     (" (the demo's target is ≥ 30 %)" if em >= 0.30 else " — **below the demo's 30 % target**: the "
                      "encoder-decoder rows' indicators say little about a reader that does not read")) + ".")
        names = set()
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


def controlled_section(drows: Sequence[dict[str, Any]], pct: Sequence[int], suffix: str = "") -> list[str]:
    """Table 2b: the controlled view — every reader on the initial retriever's passages (the same instances)."""
    from ragdistill.analysis.report import table2

    analysed = [(r, sig, a) for r in drows for sig, a in (r.get("analyses_controlled") or {}).items()]
    out = [f"## Table 2b — controlled view: every reader on the initial retriever's passages{suffix}", ""]
    if not analysed:
        return out + ["No setting has a controlled-view analysis.", ""]
    n = next(iter(analysed))[2]["settings"].get("n_instances", "?")
    readers = {_row_label(r, sig): a["summary"] for r, sig, a in analysed}
    out += [f"The same readers as Table 2, each scoring the same {n} instances: the sampled test questions with the "
            "top-K passages of the **initial** retriever, whatever retriever the setting trained — a controlled "
            "comparison of the readers alone, paired by instance. Rows whose retriever did not train show the same "
            "numbers as in Table 2 (one analysis serves both views); step 2's row is step 1's reader (frozen), "
            "analysed once. Means ± standard errors.", "",
            table2(readers, None, "attention", pct, se=True), "",
            "Lift, controlled view:", "", table2(readers, None, "lift", pct, se=True), "",
            "### Verdicts, controlled view", ""]
    view_rows = [{**r, "verdict": r.get("verdict_controlled"), "intervals": r.get("intervals_controlled")} for r in drows]
    out += verdict_lines(view_rows)
    for r in drows:
        if r.get("controlled_same_as"):
            out.append(f"- {r['number']} {r['name']}: its controlled view is {r['controlled_same_as']}'s analysis "
                       "(the same frozen reader on the same instances).")
    return out + [""]


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
        drows = [r for r in rows if r["dataset"] == ds and r["name"] != "fid_reader_fit"]  # the fit: a note, Run details
        suffix = f" — {ds}" if len(datasets) > 1 or ds != "demo" else ""
        out += [f"## Table 1 — retrieval and answers on the test questions{suffix}", "",
                "HR@k: share of test questions with an answer in the top-k passages (DPR token match); EM/F1: the "
                "reader's greedy answer from the top-K passages (SQuAD normalisation), in %. ΔHR@5: against row 1's "
                "off-the-shelf retriever, in points. Rows that train no retriever keep it (Δ –).", "",
                table1(drows), "",
                "Outcome: read off the 95 % interval of the paired difference (exact McNemar for hit rates and EM, "
                "paired bootstrap with 10,000 resamples and seed 0 for F1): *improves* / *hurts* when the interval "
                "excludes 0, else *no detectable change*. Every difference against its reference row:", "",
                differences_table(drows), ""]
        if all(d is None or d.outcome == "no detectable change" for r in drows for d in (r.get("deltas") or {}).values()) \
                and any((r.get("deltas") or {}) for r in drows):
            out += ["All differences of Table 1 are inside their intervals: none is distinguishable from no change "
                    "at this n.", ""]
        notes = sorted({r["items_note"] for r in drows if r.get("items_note")})
        out += [f"Note: {n}." for n in notes] + ([""] if notes else [])
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
        views = any(r.get("analyses_controlled") is not None for r in drows)
        out += [f"## Table 2 — attention-quality indicators per setting{suffix}", ""]
        if analysed:
            from ragdistill.analysis.report import mean_std_table, table2

            readers = {_row_label(r, sig): a["summary"] for r, sig, a in analysed}
            pct = tuple(next(iter(analysed))[2]["settings"].get("percentiles", (90, 95)))
            sample = next(iter(analysed))[2]["settings"]
            if views:
                out += [f"Each setting measured with its own models (the study's Tables 2–4): its final reader scores "
                        f"{sample.get('n_instances', '?')} sampled test questions (seed {sample.get('seed')}, the same "
                        f"questions for every setting), each with the top-{sample.get('k')} passages of **that setting's "
                        "own final retriever** (the initial retriever for rows that train none; step 2's row therefore "
                        "differs from step 1's). Differences against the reference are paired by question. The "
                        "controlled view (every reader on the initial retriever's passages) is Table 2b.", ""]
            else:
                out += [f"Each setting's final reader scores the same {sample.get('n_instances', '?')} test instances "
                        f"(seed {sample.get('seed')}, top-{sample.get('k')} passages of the initial retriever)."]
            out += ["â = the "
                    "reader's token scores over passage tokens (attention; for the perplexity signal, the per-token "
                    "answer log-likelihood gains), normalised; M = passage tokens whose similarity to the answer's "
                    "tokens (answer-related) or the question's nouns (question-related) is at least the p-th "
                    "percentile. Attn. = mean â over M; Corr. = Spearman ρ(â, sim) over M.", "",
                    "Means over instances ± their standard errors. The verdict compares the mean attention on M (the "
                    "study's measure: every reader of a family scored the same questions with the same prompt budget).", "",
                    table2(readers, None, "attention", pct, se=True), "",
                    "Lift (mean â over M × number of passage tokens; 1 = uniform), shown beside it:", "",
                    table2(readers, None, "lift", pct, se=True), "",
                    "### Answer-related tokens, mean ± std", "", mean_std_table(readers, "answer", None, pct), "",
                    "### Question-related tokens, mean ± std", "", mean_std_table(readers, "question", None, pct), "",
                    "### Verdicts (against the off-the-shelf reader of the same family and signal)", ""]
            out += verdict_lines(drows)
            same = [r for r in drows if r["analysis_same_as"]]
            for r in same:
                out.append(f"- {r['number']} {r['name']} reads with {r['analysis_same_as']}'s reader (frozen): "
                           "its indicators are that reader's.")
            for r in drows:
                if r.get("own_view") and r.get("analysis_index"):
                    out.append(f"- {r['number']} {r['name']}: own-view passages from `{_short_name(r['final_retriever'])}` "
                               f"over the index `{_short_name(r['analysis_index'])}`.")
            out.append("")
            hist = figures.get("histograms", {}).get(ds, [])
            if hist:
                out += ["### Histograms", ""] + [f"![{h}]({h})" for h in hist] + [""]
            if views:
                out += controlled_section(drows, pct, suffix)
        else:
            out += ["No setting was analysed.", ""]
        out += [f"## Putting it together{suffix}", "",
                "For each setting whose retriever learnt from a reader: the change in test HR@5 against the "
                "off-the-shelf retriever (paired over the same questions, with its 95 % interval and outcome), whether "
                "its teacher's Indicators 1 and 2 held against the off-the-shelf reader (point estimates; in brackets "
                "the same rule on the intervals: holds when every compared difference improves, fails when one hurts, "
                "else undecided), and whether they predicted the outcome (both hold → the retriever should improve; "
                "otherwise no gain). Row 3 trains no retriever: its reader is row 4's teacher.", "",
                together_table(drows), ""]
        if any(r.get("seed_runs") for r in drows):
            n_seeds = max(len(r.get("seed_runs") or []) for r in drows)
            out += [f"With --seeds {n_seeds}: each row above is the **first seed's run** (train.seed as configured): its "
                    "indicators were measured on that run's reader and its interval pairs that run's answers with row 1's "
                    "over the same questions; pooling seeds would mix runs in one paired test. The spread over the seeds "
                    "is given beside it (ΔHR@5 mean ± sd) and per seed below.", "",
                    f"### Every seed's run{suffix}", "", seeds_table(drows), ""]
        judged = [r for r in drows if r["agrees"] is not None]
        pending = [r for r in drows if r["agrees"] is None and r["prediction"] and r["outcome"] != "–"]
        if judged:
            ok = sum(1 for r in judged if r["agrees"])
            out.append(f"On this data the indicators predicted the outcome for {ok} of {len(judged)} settings"
                       + (f"; for {len(pending)} more the prediction cannot be checked (the interval of ΔHR@5 includes 0)"
                          if pending else "") + ".")
        else:
            out.append("No setting has both an interval-based outcome and a defined verdict that can be compared, so "
                       "whether the indicators predict the outcome cannot be judged on this run"
                       + (f" ({len(pending)} predicted a gain whose ΔHR@5 interval includes 0)" if pending else "") + ".")
        out += ["", f"## Conclusion{suffix}", ""] + conclusion(drows) + [""]
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
    for r in [x for row in rows for x in [row, *(row.get("seed_rows") or [])]]:
        if r["status"] == "not run":
            continue
        name = r["name"] + (f" (seed +{r['seed_offset']})" if r.get("seed_offset") else "")
        out.append(f"| {r['dataset']} | {r['number']} | {name} | {r['status']} | {_minutes(r['seconds']['run'])} | "
                   f"{_minutes(r['seconds']['analysis'])} | {r['steps'] if r['steps'] is not None else '–'} | "
                   f"{r['refreshes'] if r['refreshes'] is not None else '–'} | {r['seeds']['train.seed']} | "
                   f"`{os.path.relpath(r['config'], o.out)}` |")
    total = sum((r["seconds"]["run"] or 0) + (r["seconds"]["analysis"] or 0)
                for r in [x for row in rows for x in [row, *(row.get("seed_rows") or [])]] if r["status"] != "not run")
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
            "- **Indicator 1** (answer-related): the reader's attention puts more weight (mean attention on M) on passage tokens similar "
            "to the answer than the off-the-shelf reader does, and follows that similarity more closely (Spearman).",
            "- **Indicator 2** (question-related): more weight than the reference on tokens similar to the question's "
            "nouns, with a mean Spearman above 0.3.",
            "- Both hold → the reader is a good teacher: distil from it. One holds → fine-tune the reader first (the "
            "study's step 1). Neither → expect no gain: the study found distillation from such a reader hurts.",
            "- Every difference carries its 95 % interval and n; *no detectable change* means the interval includes 0. "
            "Demo-scale numbers come from tiny runs (tens of steps, tens of test questions): the Conclusion's "
            "half-widths say how large a change must be to show. Run `--scale paper` on GPUs for the study's scale.", ""]
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
        pr = {k: v for k, v in r.items() if k not in ("analyses", "hits", "items", "deltas", "intervals",
                                                      "analyses_controlled", "intervals_controlled", "seed_rows")}
        pr["deltas"] = {k: (d.to_dict() if d is not None else None) for k, d in (r.get("deltas") or {}).items()}
        pr["indicator_intervals"] = _public_intervals(r.get("intervals"))
        pr["indicators"] = {sig: a["summary"] for sig, a in r["analyses"].items()}
        pr["analysis_dirs"] = {sig: a["dir"] for sig, a in r["analyses"].items()}
        ctl = r.get("analyses_controlled")
        pr["indicators_controlled"] = None if ctl is None else {sig: a["summary"] for sig, a in ctl.items()}
        pr["analysis_dirs_controlled"] = None if ctl is None else {sig: a["dir"] for sig, a in ctl.items()}
        pr["indicator_intervals_controlled"] = _public_intervals(r.get("intervals_controlled"))
        public.append(pr)
    obj = {"scale": plan.options.scale, "out": str(out_dir), "command": plan.options.command,
           "wall_seconds": round(wall_seconds, 1),
           "datasets": [{"label": d.label, "paths": d.paths, "notes": d.notes, "split": d.split} for d in plan.datasets],
           "analysis": {"n": plan.options.analysis_n, "seed": plan.options.analysis_seed, "ig_steps": plan.options.ig_steps,
                        "views": ["own", "controlled"],
                        "ig_tolerance": plan.options.ig_tolerance, "ig_max_steps": plan.options.ig_max_steps},
           "seeds": getattr(plan.options, "seeds", 1),
           "settings": public, "figures": figures, "environment": env,
           "not_run": [{"dataset": r["dataset"], "setting": r["name"], "reason": r["reason"], "flag": r["flag"]}
                       for r in rows if r["status"] == "not run"],
           "failed": [{"dataset": r["dataset"], "setting": r["name"], "error": r["error"]} for r in rows if r["status"] == "failed"]}
    atomic_write_json(out_dir / "report.json", obj)
    return obj

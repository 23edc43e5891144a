"""Reading a setting's run directory back: markers' files, per-question evaluations, curves and analyses.

Everything the report shows is read from disk: ``eval/predictions.jsonl`` (per-question hits, EM, F1),
``metrics.jsonl`` (the held-out curve) and ``analysis/<signal>/`` (``indicators.json``, ``instances.jsonl``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
        out[signal] = {
            "summary": summary,
            "measures": measures,
            "keys": keys,
            "dir": d,
            "settings": ind.get("settings", {}),
        }
    return out


def index_used(run_dir: str | Path | None) -> str | None:
    """Which passage embeddings a training row's final evaluation read (its eval/eval_info.json), in words."""
    if not run_dir:
        return None
    try:
        info = json.loads((Path(run_dir) / "eval" / "eval_info.json").read_text(encoding="utf-8")).get("index")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("fresh"):
        return f"re-embedded with the final weights (step {info.get('embedded_at_step')})"
    return f"the training index, embedded at step {info.get('embedded_at_step')}"

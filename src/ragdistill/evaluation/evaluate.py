"""The evaluation pipeline: retrieve top-k for each question, let the reader answer, score.

`evaluate_questions` is used both by ``ragdistill evaluate`` and by the training loop
(held-out HR@k during training, the final test evaluation). It works in batches, can
shard the questions across data-parallel processes (each process answers its share,
the records are gathered), and returns per-question records plus the aggregate metrics
``{"n", "hr@1", "hr@5", "hr@20", "em", "f1"}`` (fractions in [0, 1]).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragdistill.data.types import Passage, Question
from ragdistill.evaluation.metrics import exact_match, f1_score
from ragdistill.utils.io import atomic_file, atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class EvalOutput:
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def _retrieve(index, retriever, texts: list[str], k: int) -> list[list[Passage]]:
    results = index.retrieve(retriever, texts, k)
    return [[r.passage for r in rs] for rs in results]


def generation_sample(n: int, size: int, seed: int = 0) -> set[int]:
    """Positions of the questions whose answers are generated: all when `size` is 0 or >= n, else a sample
    drawn with a fixed seed, so every setting evaluated on the same question list answers the same ones."""
    if size <= 0 or size >= n:
        return set(range(n))
    import numpy as np

    return {int(i) for i in np.random.default_rng(seed).choice(n, size=size, replace=False)}


def evaluate_questions(
    reader,
    retriever,
    index,
    questions: Sequence[Question],
    k: int = 5,
    ks: Sequence[int] = (1, 5, 20),
    batch_size: int = 8,
    match: str = "token",
    generate: bool = True,
    match_title: bool = False,
    progress: bool = False,
    dist=None,
    desc: str = "evaluate",
    generate_sample: int = 0,
) -> EvalOutput:
    """Retrieval + (optionally) generation over `questions`; metrics and one record per question.

    `reader` may be None when `generate` is False. `dist` (a `training.distributed.Dist`)
    shards the questions across processes; every process gets the full result.
    HR@k uses the project's one has-answer test (`retrieval.metrics.passage_hit_flags`), so it
    equals ``ragdistill retrieve``'s: the passage text only (DPR), the title too with `match_title`.
    `generate_sample` > 0 generates answers (EM/F1) for that many questions only, a seeded sample that is the
    same in every run over the same question list (`generation_sample`), so EM pairs across settings; HR@k
    always covers every question.
    """
    from ragdistill.retrieval.metrics import hits_from_flags, passage_hit_flags

    t0 = time.perf_counter()
    ks = sorted({int(x) for x in ks})
    depth = max(max(ks), k)
    order = list(range(len(questions)))
    answer_these = generation_sample(len(questions), generate_sample) if generate else set()
    if dist is not None and dist.world_size > 1:
        order = order[dist.rank :: dist.world_size]
    timings = {"retrieve": 0.0, "generate": 0.0}
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc=desc, unit="q", leave=False)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [questions[i] for i in idx]
            ta = time.perf_counter()
            ranked = _retrieve(index, retriever, [q.question for q in batch], depth)
            timings["retrieve"] += time.perf_counter() - ta
            preds: list[str | None] = [None] * len(batch)
            ask = [j for j, i in enumerate(idx) if i in answer_these]
            if ask:
                tb = time.perf_counter()
                answers = reader.generate([batch[j].question for j in ask], [ranked[j][:k] for j in ask])
                for j, pred in zip(ask, answers):
                    preds[j] = pred
                timings["generate"] += time.perf_counter() - tb
            for i, q, ps, pred in zip(idx, batch, ranked, preds):
                flags = passage_hit_flags(ps, q.answers, match, match_title=match_title)
                rec = {
                    "index": i,
                    "id": q.id,
                    "question": q.question,
                    "answers": list(q.answers),
                    "retrieved": [p.id for p in ps],
                    "hit_flags": flags,
                    "hit": bool(any(flags[:k])),
                }
                if i in answer_these:
                    rec["prediction"] = pred
                    rec["em"] = exact_match(pred or "", q.answers)
                    rec["f1"] = f1_score(pred or "", q.answers)
                records.append(rec)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    if dist is not None and dist.world_size > 1:
        records = dist.gather_objects(records)
        records.sort(key=lambda r: r["index"])
    metrics: dict[str, Any] = {"n": len(records)}
    metrics.update(hits_from_flags([r["hit_flags"] for r in records], ks))
    if generate:
        answered = [r for r in records if "em" in r]
        n = max(1, len(answered))
        metrics["em"] = sum(r["em"] for r in answered) / n
        metrics["f1"] = sum(r["f1"] for r in answered) / n
        metrics["n_generated"] = len(answered)
    for r in records:
        r["retrieved"] = r["retrieved"][:depth]
        r["hit_flags"] = r["hit_flags"][:depth]  # per rank, for paired statistics in reports
        del r["index"]
    return EvalOutput(metrics, records, time.perf_counter() - t0, timings)


def write_eval(out_dir: str | Path, output: EvalOutput, info: dict[str, Any] | None = None) -> Path:
    """metrics.json, predictions.jsonl (and eval_info.json when `info` is given), each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / "predictions.jsonl") as f:
        for rec in output.records:
            row = {
                "id": rec["id"],
                "question": rec["question"],
                "answers": rec["answers"],
                "prediction": rec.get("prediction"),
                "retrieved": rec["retrieved"],
                "hit": rec["hit"],
                "hit_flags": rec.get("hit_flags"),
                "em": rec.get("em"),
                "f1": rec.get("f1"),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_json(out_dir / "metrics.json", output.metrics)
    if info is not None:
        atomic_write_json(
            out_dir / "eval_info.json",
            {
                **info,
                "seconds": round(output.seconds, 3),
                "timings": {k: round(v, 3) for k, v in output.timings.items()},
            },
        )
    return out_dir


def format_table(metrics: dict[str, Any], title: str | None = None) -> str:
    """A Markdown table of the metrics in percent (n as a count)."""
    keys = [k for k in metrics if k != "n"]
    head = ["n"] + [k.upper() if k.startswith("hr@") else k.upper() for k in keys]
    row = [str(metrics.get("n", ""))] + [f"{100 * float(metrics[k]):.2f}" for k in keys]
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" for _ in head) + "|")
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)

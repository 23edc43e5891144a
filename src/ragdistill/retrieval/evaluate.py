"""Retrieval evaluation shared by `ragdistill retrieve`, the benchmarks and the training loop."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragdistill.data.types import Question
from ragdistill.errors import ConfigError
from ragdistill.retrieval.metrics import DEFAULT_KS, hits_from_flags, passage_hit_flags

if TYPE_CHECKING:  # pragma: no cover
    from ragdistill.retrieval.index import PassageIndex, Retrieved
    from ragdistill.retrieval.retriever import BiEncoderRetriever


def sample_questions(questions: Sequence[Question], limit: int | None, seed: int = 0) -> list[Question]:
    """A seeded sample of `limit` questions, kept in file order (all of them when limit is None or large)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    if limit <= 0:
        raise ConfigError("limit", f"--limit must be positive, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in keep]


def evaluate_retrieval(
    index: PassageIndex,
    retriever: BiEncoderRetriever,
    questions: Sequence[Question],
    ks: Sequence[int] = DEFAULT_KS,
    match: str = "token",
    batch_size: int = 64,
    progress: bool = False,
    depth: int | None = None,
    match_title: bool = False,
) -> tuple[dict[str, float], list[list[Retrieved]], list[list[bool]]]:
    """Retrieve max(ks) (or `depth`, if larger) passages per question; return (HR@k, ranked hits, hit flags).

    The answer is looked for in the passage text (not the title), as DPR does; `match_title`
    also looks in the title. Same test as `evaluation.evaluate.evaluate_questions`
    (`retrieval.metrics.passage_hit_flags`), so both report the same HR@k.
    """
    kmax = max([int(k) for k in ks] + [int(depth or 0)])
    results = index.retrieve(retriever, [q.question for q in questions], kmax, batch_size=batch_size, progress=progress)
    flags = [
        passage_hit_flags([r.passage for r in hits], q.answers, match, match_title=match_title)
        for hits, q in zip(results, questions)
    ]
    metrics = hits_from_flags(flags, ks)
    return metrics, results, flags


def retrieval_record(question: Question, hits: Sequence[Retrieved], flags: Sequence[bool], k: int) -> dict[str, Any]:
    """One JSONL record of `ragdistill retrieve` output: the top-k passages with scores and hit flags."""
    top = list(hits)[:k]
    return {
        "id": question.id,
        "question": question.question,
        "answers": list(question.answers),
        "passages": [
            {
                "id": r.passage.id,
                "title": r.passage.title,
                "score": round(r.score, 6),
                "rank": r.rank,
                "has_answer": bool(f),
            }
            for r, f in zip(top, flags)
        ],
        "hit_rank": next((r.rank for r, f in zip(hits, flags) if f), None),
    }

"""Evaluation: SQuAD-official EM/F1 (`metrics`) and the retrieval + generation pipeline (`evaluate`)."""

from __future__ import annotations

from ragdistill.evaluation.metrics import answer_metrics, exact_match, f1_score, normalize_answer

__all__ = ["normalize_answer", "exact_match", "f1_score", "answer_metrics", "evaluate_questions", "write_eval"]


def __getattr__(name: str):
    if name in ("evaluate_questions", "write_eval", "format_table", "EvalOutput"):
        from ragdistill.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(name)

"""Answer metrics exactly as SQuAD v1.1's official evaluation script computes them.

`normalize_answer` lower-cases, drops ASCII punctuation (``string.punctuation``), removes
the articles a/an/the as whole words and folds white space — character for character the
official logic, so numbers are comparable with published SQuAD/NQ/TriviaQA results.
EM and F1 take the maximum over the gold answers. Values are fractions in [0, 1]
(the official script reports them times 100).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, remove punctuation, articles and extra white space (SQuAD v1.1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_single(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_single(prediction: str, gold: str) -> float:
    """Token-level F1 between normalised prediction and one gold answer (0 when nothing overlaps)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _golds(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 if the prediction matches any gold answer after normalisation, else 0.0."""
    g = _golds(golds)
    return max((exact_match_single(prediction, x) for x in g), default=0.0)


def f1_score(prediction: str, golds: str | Iterable[str]) -> float:
    """Best token F1 over the gold answers."""
    g = _golds(golds)
    return max((f1_single(prediction, x) for x in g), default=0.0)


def answer_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 over a list of predictions (fractions in [0, 1])."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    n = len(predictions)
    if n == 0:
        return {"em": 0.0, "f1": 0.0}
    em = sum(exact_match(p, g) for p, g in zip(predictions, golds)) / n
    f1 = sum(f1_score(p, g) for p, g in zip(predictions, golds)) / n
    return {"em": em, "f1": f1}

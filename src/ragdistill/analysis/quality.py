"""Per-instance attention-quality measures (METHOD.md §3, "Attention-quality analysis").

For one instance (a question, its K retrieved passages, an answer) and one reader:

* â_t — the reader's token scores w_t over the *passage* tokens, normalised to sum to 1
  (question and template tokens are not part of the distribution);
* sim_t = max_{g ∈ G} cos(e_t, e_g) — e is the reader's input-embedding row of a token id,
  G the answer's token ids, as the reader scored them and as they occur in running text
  (answer-related), or the token ids of the question's nouns (question-related, spaCy POS NOUN
  or PROPN), both in their in-context form;
* for p ∈ {90, 95}: M = {t : sim_t ≥ percentile_p(sim)} with ``numpy.percentile``'s default
  (linear interpolation between closest ranks), so ties at the threshold are all kept and M
  can hold more than (100 − p) % of the tokens when similarities repeat (a token id that
  occurs several times always has the same similarity);
* mean_{t∈M} â_t, the lift = mean_{t∈M} â_t × (number of passage tokens) — 1 means uniform
  attention, and unlike the raw mean it does not shrink as prompts grow — and Spearman's ρ
  of (â_t, sim_t) over M with ``scipy.stats.spearmanr`` semantics (average ranks for ties).

Spearman's ρ is *undefined* when M has fewer than two tokens or when â or sim is constant
over M (scipy returns NaN there). Such an instance keeps its attention value but its ρ is
recorded as ``None`` and counted as undefined by the aggregation, never silently dropped.

All functions here are pure numpy / torch on small arrays: they are tested against
brute-force references without any model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ragdistill.readers.base import AttentionResult

PERCENTILES: tuple[int, ...] = (90, 95)
GROUPS: tuple[str, ...] = ("answer", "question")
NOUN_POS: frozenset[str] = frozenset({"NOUN", "PROPN"})

# Why an instance contributes nothing to a group (counted in indicators.json).
SKIP_NO_NOUNS = "no_nouns"
SKIP_NO_ANSWER_TOKENS = "no_answer_tokens"
SKIP_NO_PASSAGE_TOKENS = "no_passage_tokens"


@dataclass
class SelectionMeasure:
    """Mean attention, lift and Spearman's ρ over one selection M (one group, one percentile)."""

    threshold: float  # the p-th percentile of sim over the passage tokens
    n_selected: int  # |M|
    mean_attention: float  # mean_{t∈M} â_t
    lift: float  # mean_{t∈M} â_t × number of passage tokens
    spearman: float | None  # ρ(â, sim) over M; None when undefined
    undefined_reason: str | None = None  # "too_few_tokens" | "constant_attention" | "constant_similarity"


@dataclass
class GroupMeasure:
    """One group (answer- or question-related) of one instance: per percentile, or skipped."""

    skipped: str | None = None  # SKIP_* reason, or None
    n_group_tokens: int = 0  # |G| (distinct token ids)
    by_percentile: dict[int, SelectionMeasure] = field(default_factory=dict)


@dataclass
class InstanceMeasures:
    """Everything recorded for one (instance, reader) pair; one line of instances.jsonl."""

    n_passage_tokens: int
    groups: dict[str, GroupMeasure]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_passage_tokens": self.n_passage_tokens, "groups": {}}
        for name, g in self.groups.items():
            out["groups"][name] = {
                "skipped": g.skipped,
                "n_group_tokens": g.n_group_tokens,
                **{f"p{p}": asdict(m) for p, m in g.by_percentile.items()},
            }
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstanceMeasures:
        groups = {}
        for name, g in d["groups"].items():
            by_p = {int(k[1:]): SelectionMeasure(**v) for k, v in g.items() if k.startswith("p") and k[1:].isdigit()}
            groups[name] = GroupMeasure(
                skipped=g.get("skipped"), n_group_tokens=g.get("n_group_tokens", 0), by_percentile=by_p
            )
        return cls(n_passage_tokens=int(d["n_passage_tokens"]), groups=groups)


# ---------------------------------------------------------------------------------------------
# The pieces, each testable on its own
# ---------------------------------------------------------------------------------------------


def passage_positions(result: AttentionResult) -> np.ndarray:
    """Sorted positions (into ``result.input_ids``) of every passage token, each position once."""
    mask = result.passage_token_mask().numpy()
    return np.flatnonzero(mask)


def normalized_passage_scores(result: AttentionResult) -> tuple[np.ndarray, np.ndarray]:
    """(positions, â): the token scores over the passage tokens, normalised to sum to 1.

    When every passage score is 0 (a degenerate reader), â is uniform, so the measures
    still exist and read as "no preference" (lift 1) rather than NaN.
    """
    pos = passage_positions(result)
    w = result.token_scores.detach().to(torch.float64).cpu().numpy()[pos]
    if np.any(w < 0):
        raise ValueError("token scores must be non-negative to form a distribution (got a negative w_t)")
    total = float(w.sum())
    if pos.size == 0:
        return pos, w
    a_hat = w / total if total > 0 else np.full(pos.size, 1.0 / pos.size)
    return pos, a_hat


def max_cosine_similarity(
    token_ids: Sequence[int] | np.ndarray, group_ids: Sequence[int] | np.ndarray, embeddings: torch.Tensor | np.ndarray
) -> np.ndarray:
    """sim_t = max_{g ∈ G} cos(e_t, e_g) for every token id t (float64 array, same length as token_ids).

    Computed once per distinct token id, so a repeated id always gets exactly the same value
    (ties stay exact ties for the percentile and the ranks). A zero embedding row has cosine 0.
    """
    token_ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    group_ids = np.unique(np.asarray(group_ids, dtype=np.int64).reshape(-1))
    if group_ids.size == 0:
        raise ValueError("the group G of tokens is empty")
    if token_ids.size == 0:
        return np.zeros(0, dtype=np.float64)
    uniq, inverse = np.unique(token_ids, return_inverse=True)
    if isinstance(embeddings, torch.Tensor):
        e_t = embeddings.detach()[torch.as_tensor(uniq)].to(torch.float64).cpu().numpy()
        e_g = embeddings.detach()[torch.as_tensor(group_ids)].to(torch.float64).cpu().numpy()
    else:
        e_t = np.asarray(embeddings, dtype=np.float64)[uniq]
        e_g = np.asarray(embeddings, dtype=np.float64)[group_ids]

    def _unit(x: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, n, out=np.zeros_like(x), where=n > 0)

    cos = _unit(e_t) @ _unit(e_g).T
    sim_u = np.clip(cos.max(axis=1), -1.0, 1.0)
    # A token of G compared with itself: exactly 1 (avoid 0.9999999 vs 1.0000001 round-off).
    sim_u[np.isin(uniq, group_ids) & (np.linalg.norm(e_t, axis=1) > 0)] = 1.0
    return sim_u[inverse]


def percentile_selection(sim: np.ndarray, p: float) -> tuple[np.ndarray, float]:
    """(mask of M, threshold): M = {t : sim_t ≥ numpy.percentile(sim, p)} (linear interpolation)."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.size == 0:
        return np.zeros(0, dtype=bool), float("nan")
    thr = float(np.percentile(sim, p))
    return sim >= thr, thr


def spearman_or_none(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str | None]:
    """(ρ, None) with scipy.stats.spearmanr semantics, or (None, reason) when ρ is undefined."""
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return None, "too_few_tokens"
    if np.all(x == x[0]):
        return None, "constant_attention"
    if np.all(y == y[0]):
        return None, "constant_similarity"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(x, y).statistic
    rho = float(rho)
    if math.isnan(rho):  # cannot happen after the checks above, kept as a guard
        return None, "constant_similarity"
    return rho, None


def selection_measure(a_hat: np.ndarray, sim: np.ndarray, p: float) -> SelectionMeasure:
    """Mean attention, lift and Spearman over the p-th-percentile selection of one instance."""
    mask, thr = percentile_selection(sim, p)
    sel_a = a_hat[mask]
    mean_att = float(sel_a.mean()) if sel_a.size else float("nan")
    rho, why = spearman_or_none(sel_a, sim[mask])
    return SelectionMeasure(
        threshold=thr,
        n_selected=int(mask.sum()),
        mean_attention=mean_att,
        lift=mean_att * a_hat.size,
        spearman=rho,
        undefined_reason=why,
    )


def measure_group(
    token_ids: np.ndarray,
    a_hat: np.ndarray,
    group_ids: Sequence[int],
    embeddings: torch.Tensor | np.ndarray,
    percentiles: Iterable[int] = PERCENTILES,
    skip_reason: str = SKIP_NO_ANSWER_TOKENS,
) -> GroupMeasure:
    """The measures of one group G for one instance (skipped with `skip_reason` when G is empty)."""
    group = np.unique(np.asarray(list(group_ids), dtype=np.int64))
    if group.size == 0:
        return GroupMeasure(skipped=skip_reason)
    if token_ids.size == 0:
        return GroupMeasure(skipped=SKIP_NO_PASSAGE_TOKENS, n_group_tokens=int(group.size))
    sim = max_cosine_similarity(token_ids, group, embeddings)
    return GroupMeasure(
        n_group_tokens=int(group.size), by_percentile={int(p): selection_measure(a_hat, sim, p) for p in percentiles}
    )


def measure_instance(
    result: AttentionResult,
    embeddings: torch.Tensor | np.ndarray,
    answer_ids: Sequence[int] | None = None,
    noun_ids: Sequence[int] = (),
    percentiles: Iterable[int] = PERCENTILES,
) -> InstanceMeasures:
    """All measures of one instance: answer-related (G = answer tokens) and question-related (G = noun tokens).

    `answer_ids` defaults to ``result.answer_ids``; pass the ids without special tokens
    (``answer_group_ids``). `noun_ids` are the reader-tokenizer ids of the question's nouns
    (``question_noun_ids``); empty means the question has no nouns and the group is skipped.
    """
    percentiles = tuple(int(p) for p in percentiles)
    pos, a_hat = normalized_passage_scores(result)
    token_ids = result.input_ids.detach().cpu().numpy().astype(np.int64)[pos]
    if answer_ids is None:
        answer_ids = result.answer_ids.detach().cpu().tolist()
    groups = {
        "answer": measure_group(token_ids, a_hat, answer_ids, embeddings, percentiles, SKIP_NO_ANSWER_TOKENS),
        "question": measure_group(token_ids, a_hat, noun_ids, embeddings, percentiles, SKIP_NO_NOUNS),
    }
    return InstanceMeasures(n_passage_tokens=int(pos.size), groups=groups)


# ---------------------------------------------------------------------------------------------
# Token groups from text
# ---------------------------------------------------------------------------------------------


def answer_group_ids(
    answer_ids: Sequence[int] | torch.Tensor, tokenizer: Any | None = None, answer: str | None = None
) -> list[int]:
    """G of the answer-related group: the answer's token ids without special tokens, and its in-context forms.

    `answer_ids` are the ids the reader scored (a T5 answer ends with </s>, which is not the
    answer; a chat-mode decoder answer has no leading space, so SmolLM2's "Jane" is not the
    " Jane" of a passage). With the answer text and a tokenizer, G also holds the ids the answer
    takes inside running text (``answer_context_ids``), so the answer's own occurrences in the
    passages have sim = 1. Order: `answer_ids` first, then the new ids, each once.
    """
    ids = answer_ids.tolist() if isinstance(answer_ids, torch.Tensor) else list(answer_ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or []) if tokenizer is not None else set()
    out = [int(i) for i in ids if int(i) not in special]
    if answer is not None and tokenizer is not None:
        out.extend(answer_context_ids(answer, tokenizer))
    return list(dict.fromkeys(out))


#: texts the answer is placed after to read its in-context token forms: the start of a text (no
#: leading space; also what follows "(" or a newline) and after a word and a space (" Jane")
ANSWER_CONTEXTS: tuple[str, ...] = ("", "a ")


def answer_context_ids(answer: str, tokenizer: Any, contexts: Sequence[str] = ANSWER_CONTEXTS) -> list[int]:
    """The answer's token ids as the tokenizer produces them inside running text, with and without a leading space.

    The answer is tokenised after each context (with character offsets) and every token that
    overlaps the answer's non-space characters is kept — as ``question_noun_ids`` does for the
    question's nouns — so a lone word-boundary piece ("▁" or " ") never enters G. Tokenizers
    without offsets fall back to tokenising ``answer`` and ``" " + answer``.
    """
    text = answer.strip()
    if not text:
        return []
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out: list[int] = []
    for ctx in contexts:
        full = ctx + text
        lo, hi = len(ctx), len(full)
        try:
            enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
            pairs = list(zip(enc["input_ids"], enc["offset_mapping"]))
        except (NotImplementedError, TypeError, ValueError, KeyError):
            pairs = None
        if pairs is None:  # slow tokenizer
            piece = text if not ctx else " " + text
            out.extend(int(t) for t in tokenizer(piece, add_special_tokens=False)["input_ids"] if t not in special)
            continue
        for tid, (s, e) in pairs:
            if tid in special or not (s < hi and lo < e) or not full[max(s, lo) : min(e, hi)].strip():
                continue
            out.append(int(tid))
    return list(dict.fromkeys(out))


def noun_char_spans(question: str, nlp: Any) -> list[tuple[int, int]]:
    """Character spans of the question's nouns (spaCy POS NOUN or PROPN)."""
    doc = nlp(question)
    return [(tok.idx, tok.idx + len(tok.text)) for tok in doc if tok.pos_ in NOUN_POS]


def question_noun_ids(
    question: str, tokenizer: Any, nlp: Any = None, spans: Sequence[tuple[int, int]] | None = None
) -> list[int]:
    """Reader-tokenizer ids of the question's noun tokens, as they are tokenised inside the question.

    The question is tokenised whole (with character offsets) and every reader token that
    overlaps a noun's characters belongs to G; this keeps the word-initial form of BPE
    vocabularies (" Hamlet", not "Hamlet"). Tokenizers without offsets fall back to
    tokenising each noun alone, with and without a leading space. Pass `spans`
    (from ``noun_char_spans``) to tag a question once for several readers.
    """
    if spans is None:
        if nlp is None:
            raise ValueError("question_noun_ids needs a spaCy pipeline (nlp) or precomputed noun spans")
        spans = noun_char_spans(question, nlp)
    if not spans:
        return []
    try:
        enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        ids = enc["input_ids"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        offsets = None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out: list[int] = []
    if offsets is not None:
        for tid, (s, e) in zip(ids, offsets):
            if e > s and any(s < ne and ns < e for ns, ne in spans) and tid not in special:
                out.append(int(tid))
    else:  # slow tokenizer
        for ns, ne in spans:
            word = question[ns:ne]
            for text in (word, " " + word):
                out.extend(int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"] if t not in special)
    return sorted(set(out))

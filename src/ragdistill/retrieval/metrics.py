"""Retrieval metrics: does a passage contain an answer, and HR@k over a question set.

The default answer match is DPR's (``dpr/data/qa_validation.py``): both texts are
unicode-NFD normalised, split into tokens by DPR's ``SimpleTokenizer`` regular
expression (runs of letters/digits/marks, or any single other non-space character),
lower-cased, and a passage has the answer when the answer's token sequence occurs
contiguously in the passage's. This is the match that published HR@k numbers for
NQ/TriviaQA/SQuAD-open use, so results stay comparable. The option ``"substring"``
uses SQuAD's answer normalisation (lower case, no punctuation, no articles a/an/the,
folded white space) on both sides and a plain substring test.

Every HR@k in the project (``ragdistill retrieve``, ``ragdistill evaluate``, the training
loop's held-out and final evaluations, the reproduce tables, the benchmarks) decides
"does this retrieved passage have the answer" with `passage_hit_flags`: DPR's rule by
default, the passage **text** only; ``match_title=True`` also looks in the title (each
field on its own: an answer never matches across the title/text boundary).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from ragdistill.errors import ConfigError

MATCH_TYPES = ("token", "substring")
DEFAULT_KS = (1, 5, 20)

try:  # DPR's pattern needs unicode property classes; `regex` ships with transformers.
    import regex as _regex

    _TOKEN_RE = _regex.compile(
        r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
        flags=_regex.IGNORECASE | _regex.UNICODE | _regex.MULTILINE,
    )
except ImportError:  # pragma: no cover - fallback without the `regex` package
    # Letters and digits plus combining marks; any other non-space, printable char alone.
    _TOKEN_RE = re.compile(r"((?:[^\W_]|[\u0300-\u036f])+)|(\S)", flags=re.UNICODE)


def dpr_tokens(text: str) -> list[str]:
    """DPR's SimpleTokenizer words of `text`, NFD-normalised and lower-cased."""
    text = unicodedata.normalize("NFD", text)
    return [m.group().lower() for m in _TOKEN_RE.finditer(text)]


_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
_PUNCT = set(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD's official answer normalisation (lower, drop punctuation and articles, fold spaces)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _check_match(match: str) -> None:
    if match not in MATCH_TYPES:
        raise ConfigError("match", f"unknown answer match '{match}': use one of {', '.join(MATCH_TYPES)}")


def _contains_seq(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    if n == 0 or n > len(haystack):
        return False
    first = needle[0]
    for i in range(len(haystack) - n + 1):
        if haystack[i] == first and list(haystack[i : i + n]) == list(needle):
            return True
    return False


@lru_cache(maxsize=65536)
def _answer_tokens(answer: str) -> tuple[str, ...]:
    return tuple(dpr_tokens(answer))


def has_answer(text: str, answers: Sequence[str], match: str = "token") -> bool:
    """True when `text` contains one of `answers` (DPR token-sequence match, or normalised substring).

    Empty answers (after normalisation) never match: DPR would count them as found
    everywhere, which silently inflates HR@k.
    """
    _check_match(match)
    if isinstance(answers, str):
        answers = [answers]
    if match == "token":
        words = dpr_tokens(text)
        return any(_contains_seq(words, _answer_tokens(a)) for a in answers)
    norm_text = squad_normalize(text)
    for a in answers:
        na = squad_normalize(a)
        if na and na in norm_text:
            return True
    return False


def hit_flags(passage_texts: Sequence[str], answers: Sequence[str], match: str = "token") -> list[bool]:
    """`has_answer` for each passage of one question's ranked list."""
    _check_match(match)
    if match == "token":
        ans = [_answer_tokens(a) for a in ([answers] if isinstance(answers, str) else answers)]
        out = []
        for t in passage_texts:
            words = dpr_tokens(t)
            out.append(any(_contains_seq(words, a) for a in ans))
        return out
    return [has_answer(t, answers, match) for t in passage_texts]


def passage_fields(passage, match_title: bool = False) -> list[str]:
    """The texts of a passage an answer is looked for in: its text (DPR), and its title with `match_title`."""
    title = getattr(passage, "title", "") or ""
    return [passage.text, title] if match_title and title else [passage.text]


def passage_hit_flags(
    passages: Sequence, answers: Sequence[str], match: str = "token", match_title: bool = False
) -> list[bool]:
    """The project's one has-answer test: for each of one question's ranked passages, does it hold an answer.

    `passages` are `Passage` objects (anything with ``.text`` and ``.title``). Text only by
    default, as DPR's published HR@k; ``match_title=True`` counts an answer found in the title too.
    """
    _check_match(match)
    if not match_title:
        return hit_flags([p.text for p in passages], answers, match)
    fields = [passage_fields(p, True) for p in passages]
    flat = hit_flags([t for f in fields for t in f], answers, match)
    out, pos = [], 0
    for f in fields:
        out.append(any(flat[pos : pos + len(f)]))
        pos += len(f)
    return out


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks:
        raise ConfigError("ks", "give at least one k for HR@k")
    bad = [k for k in ks if k <= 0]
    if bad:
        raise ConfigError("ks", f"HR@k needs k >= 1, got {bad[0]}")
    return ks


def hits_from_flags(flags_per_q: Sequence[Sequence[bool]], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@k from per-question hit flags (ranked): share of questions with a hit in the top k.

    A question with fewer than k retrieved passages counts what it has. Values are
    fractions in [0, 1]; an empty question list gives 0.0 for every k.
    """
    ks = _check_ks(ks)
    n = len(flags_per_q)
    out: dict[str, float] = {}
    for k in ks:
        hits = sum(1 for flags in flags_per_q if any(flags[:k]))
        out[f"hr@{k}"] = hits / n if n else 0.0
    return out


def hits_at_k(
    passage_texts_per_q: Sequence[Sequence[str]],
    answers_per_q: Sequence[Sequence[str]],
    ks: Sequence[int] = DEFAULT_KS,
    match: str = "token",
) -> dict[str, float]:
    """HR@k for each k in `ks` ({"hr@1": ..., "hr@5": ...}, fractions of questions).

    `passage_texts_per_q[i]` is question i's ranked passage texts (best first);
    `answers_per_q[i]` its gold answers.
    """
    if len(passage_texts_per_q) != len(answers_per_q):
        raise ConfigError(
            "answers",
            f"{len(passage_texts_per_q)} ranked lists but {len(answers_per_q)} answer lists: they must pair up",
        )
    ks = _check_ks(ks)
    kmax = max(ks)
    flags = [
        hit_flags(list(texts)[:kmax], answers, match) for texts, answers in zip(passage_texts_per_q, answers_per_q)
    ]
    return hits_from_flags(flags, ks)


def markdown_table(metrics: dict[str, float], n_questions: int | None = None, title: str | None = None) -> str:
    """A one-row Markdown table of HR@k in percent (for CLI output and reports)."""
    keys = [k for k in metrics if k.startswith("hr@")]
    head = (["questions"] if n_questions is not None else []) + [k.upper() for k in keys]
    row = ([str(n_questions)] if n_questions is not None else []) + [f"{100 * metrics[k]:.2f}" for k in keys]
    lines = []
    if title:
        lines.append(f"**{title}**")
        lines.append("")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" for _ in head) + "|")
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)

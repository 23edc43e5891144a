"""Question sets: NQ-open, TriviaQA, DPR question/answers (JSONL/TSV), SQuAD v1.1, DPR bi-encoder, FlashRAG, generic JSONL.

The JSONL layouts are also read from Parquet files and `datasets` save_to_disk folders (formats.py).

Every loader yields `Question(id, question, answers)` with at least one non-empty
answer string. Bad records raise `InputError` naming the file and the 1-based line
(JSONL/TSV) or the record path inside a whole-file JSON ("data[3].paragraphs[1].qas[0]").
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragdistill.data.formats import (
    QUESTIONS,
    Where,
    file_stem,
    iter_lines,
    iter_records,
    load_json,
    resolve_format,
    split_tsv,
)
from ragdistill.data.types import Question
from ragdistill.errors import InputError

log = logging.getLogger(__name__)


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def check_question(value: Any, file: Path, where: Where, field: str = "question") -> str:
    """The question text, stripped; `InputError` if missing, not a string or empty."""
    if value is None:
        raise where.error(file, f"missing field '{field}'")
    if not isinstance(value, str):
        raise where.error(file, f"'{field}' must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise where.error(file, f"empty question ('{field}')")
    return text


def check_answers(value: Any, file: Path, where: Where, field: str = "answers") -> list[str]:
    """A non-empty list of non-empty answer strings (stripped, duplicates dropped, order kept)."""
    if value is None:
        raise where.error(file, f"missing field '{field}'")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise where.error(file, f"'{field}' must be a list of strings, got {type(value).__name__}")
    if not value:
        raise where.error(file, f"empty answer list ('{field}'): every question needs at least one answer")
    out = []
    for i, a in enumerate(value):
        if not isinstance(a, str):
            raise where.error(file, f"answer {i + 1} in '{field}' is not a string ({a!r})")
        if not a.strip():
            raise where.error(file, f"answer {i + 1} in '{field}' is empty")
        out.append(a.strip())
    return _dedupe(out)


def _record_id(rec: dict, default: str) -> str:
    rid = rec.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        return default
    return str(rid)


# --------------------------------------------------------------------------- per format


def _iter_jsonl(path: Path, answer_field: str) -> Iterator[tuple[Where, Question]]:
    stem = file_stem(path)
    for where, rec in iter_records(path):
        q = check_question(rec.get("question"), path, where)
        answers = check_answers(rec.get(answer_field), path, where, answer_field)
        default = f"{stem}-{where.ordinal}"
        yield where, Question(_record_id(rec, default), q, answers)


def _iter_nq_open(path: Path) -> Iterator[tuple[Where, Question]]:
    return _iter_jsonl(path, "answer")


def _iter_flashrag_qa(path: Path) -> Iterator[tuple[Where, Question]]:
    return _iter_jsonl(path, "golden_answers")  # "metadata" is FlashRAG's own: not needed here


def _iter_qa_jsonl(path: Path) -> Iterator[tuple[Where, Question]]:
    return _iter_jsonl(path, "answers")


def _iter_dpr_biencoder(path: Path) -> Iterator[tuple[Where, Question]]:
    return _iter_jsonl(path, "answers")


def _iter_qa_tsv(path: Path) -> Iterator[tuple[Where, Question]]:
    stem = file_stem(path)
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        where = Where(line=lineno)
        fields = split_tsv(line)
        if lineno == 1 and [f.strip().lower() for f in fields[:2]] == ["question", "answers"]:
            continue  # header
        if len(fields) < 2:
            raise where.error(path, "expected question<TAB>answers (a Python list such as ['a', 'b']), found no tab")
        q = check_question(fields[0], path, where)
        raw = fields[1].strip()
        try:
            value = ast.literal_eval(raw)  # literals only: never executes code
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise where.error(
                path, f"answers column {raw[:60]!r} is not a list literal such as ['a', 'b'] ({type(exc).__name__})"
            ) from exc
        if isinstance(value, str):
            raise where.error(path, f"answers column {raw[:60]!r} must be a list such as ['a', 'b']")
        answers = check_answers(value, path, where)
        yield where, Question(f"{stem}-{lineno}", q, answers)


def _iter_triviaqa(path: Path) -> Iterator[tuple[Where, Question]]:
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("Data"), list):
        raise InputError("expected TriviaQA's official layout with a top-level 'Data' list", path)
    stem = file_stem(path)
    for i, rec in enumerate(doc["Data"]):
        where = Where(path=f"Data[{i}]")
        if not isinstance(rec, dict):
            raise where.error(path, f"expected an object, got {type(rec).__name__}")
        q = check_question(rec.get("Question"), path, where, "Question")
        ans = rec.get("Answer")
        if not isinstance(ans, dict):
            raise where.error(path, "missing field 'Answer' (TriviaQA test files carry no answers)")
        aliases: list[Any] = []
        # The canonical value first: it becomes the training target (the first answer).
        if ans.get("Value") is not None:
            aliases.append(ans["Value"])
        for key in ("Aliases", "NormalizedAliases"):
            v = ans.get(key, [])
            if not isinstance(v, list):
                raise where.error(path, f"'Answer.{key}' must be a list of strings")
            aliases.extend(v)
        answers = check_answers(aliases, path, where, "Answer.Aliases")
        yield where, Question(str(rec.get("QuestionId") or f"{stem}-{i}"), q, answers)


def _iter_squad(path: Path) -> Iterator[tuple[Where, Question]]:
    doc = load_json(path)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise InputError("expected SQuAD's layout with a top-level 'data' list", path)
    stem = file_stem(path)
    skipped = 0
    for ai, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise Where(path=f"data[{ai}]").error(path, "missing list 'paragraphs'")
        for pi, para in enumerate(paragraphs):
            qas = para.get("qas", []) if isinstance(para, dict) else None
            if not isinstance(qas, list):
                raise Where(path=f"data[{ai}].paragraphs[{pi}]").error(path, "'qas' must be a list")
            for qi, qa in enumerate(qas):
                where = Where(path=f"data[{ai}].paragraphs[{pi}].qas[{qi}]")
                if not isinstance(qa, dict):
                    raise where.error(path, f"expected an object, got {type(qa).__name__}")
                if qa.get("is_impossible"):
                    skipped += 1  # SQuAD 2.0 unanswerable: nothing to retrieve or to match
                    continue
                q = check_question(qa.get("question"), path, where)
                raw = qa.get("answers")
                if not isinstance(raw, list):
                    raise where.error(path, "missing list 'answers'")
                texts = []
                for k, a in enumerate(raw):
                    if not isinstance(a, dict) or "text" not in a:
                        raise where.error(path, f"answers[{k}] must be an object with a 'text' field")
                    texts.append(a["text"])
                answers = check_answers(texts, path, where, "answers[].text")
                yield where, Question(str(qa.get("id") or f"{stem}-{ai}-{pi}-{qi}"), q, answers)
    if skipped:
        log.info("%s: skipped %d unanswerable (SQuAD 2.0 is_impossible) questions", path, skipped)


_READERS: dict[str, Callable[[Path], Iterator[tuple[Where, Question]]]] = {
    "nq-open": _iter_nq_open,
    "flashrag-qa": _iter_flashrag_qa,
    "qa-jsonl": _iter_qa_jsonl,
    "qa-tsv": _iter_qa_tsv,
    "triviaqa": _iter_triviaqa,
    "squad": _iter_squad,
    "dpr-biencoder": _iter_dpr_biencoder,
}


# --------------------------------------------------------------------------- public API


def iter_questions_with_location(path: str | Path, format: str | None = None) -> Iterator[tuple[Where, Question]]:
    """Like `iter_questions`, with each question's `Where` (line or record path)."""
    path = Path(path)
    fmt = resolve_format(path, format, QUESTIONS)  # eager: a wrong format fails at the call
    return _READERS[fmt.name](path)


def iter_questions(path: str | Path, format: str | None = None) -> Iterator[Question]:
    """Stream the questions of a file; the format is detected unless given.

    JSONL and TSV files are read line by line; whole-file JSON (SQuAD, TriviaQA) is loaded.
    """
    it = iter_questions_with_location(path, format)
    return (q for _, q in it)


def load_questions(path: str | Path, format: str | None = None) -> list[Question]:
    """All questions of a file, checked to be non-empty and to have unique ids."""
    path = Path(path)
    out: list[Question] = []
    first_seen: dict[str, Where] = {}
    for where, q in iter_questions_with_location(path, format):
        if q.id in first_seen:
            raise where.error(path, f"duplicate question id '{q.id}' (first at {first_seen[q.id]})")
        first_seen[q.id] = where
        out.append(q)
    if not out:
        raise InputError("holds no questions", path)
    return out

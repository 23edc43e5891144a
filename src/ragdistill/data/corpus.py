"""Corpora: DPR psgs_w100 TSV, passages JSONL, FlashRAG JSONL, SQuAD paragraphs, DPR bi-encoder ctxs.

`iter_passages` is a generator: line-based formats (TSV, JSONL) are read one line at
a time, so a 21M-passage Wikipedia split can be embedded in batches
(`iter_passage_batches`) without ever holding it as Python objects. Whole-file JSON
formats (SQuAD, DPR bi-encoder JSON arrays) are loaded, as their own tools do. The JSONL
layouts are also read from Parquet files and `datasets` save_to_disk folders, in record batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from ragdistill.data.formats import PASSAGES, Where, iter_lines, iter_records, load_json, resolve_format, split_tsv
from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError

DEFAULT_CHUNK_WORDS = 100  # DPR's passage length


def _text_field(rec: dict, key: str, file: Path, where: Where, required: bool = True) -> str:
    value = rec.get(key)
    if value is None:
        if required:
            raise where.error(file, f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise where.error(file, f"'{key}' must be a string, got {type(value).__name__}")
    return value.strip()


def _id_field(rec: dict, key: str, file: Path, where: Where) -> str:
    value = rec.get(key)
    if value is None:
        raise where.error(file, f"missing field '{key}'")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise where.error(file, f"'{key}' must be a string or an integer, got {type(value).__name__}")
    value = str(value).strip()
    if not value:
        raise where.error(file, f"empty '{key}'")
    return value


def _nonempty_text(text: str, file: Path, where: Where, field: str = "text") -> str:
    if not text:
        raise where.error(file, f"empty passage ('{field}')")
    return text


# --------------------------------------------------------------------------- per format


def _iter_dpr_tsv(path: Path) -> Iterator[tuple[Where, Passage]]:
    cols = {"id": 0, "text": 1, "title": 2}  # DPR's order when there is no header
    first = True
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        fields = split_tsv(line)
        where = Where(line=lineno)
        if first:
            first = False
            names = [f.strip().lower() for f in fields]
            if "id" in names and "text" in names:  # header: columns by name
                cols = {k: names.index(k) for k in ("id", "text", "title") if k in names}
                continue
        if len(fields) < max(cols.values()) + 1:
            raise where.error(path, f"expected tab-separated fields id, text, title; found {len(fields)} field(s)")
        pid = fields[cols["id"]].strip()
        if not pid:
            raise where.error(path, "empty passage id")
        text = _nonempty_text(fields[cols["text"]].strip(), path, where)
        title = fields[cols["title"]].strip() if "title" in cols else ""
        yield where, Passage(pid, title, text)


def _iter_passages_jsonl(path: Path) -> Iterator[tuple[Where, Passage]]:
    for where, rec in iter_records(path):
        pid = _id_field(rec, "id", path, where)
        text = _nonempty_text(_text_field(rec, "text", path, where), path, where)
        yield where, Passage(pid, _text_field(rec, "title", path, where, required=False), text)


def split_flashrag_contents(contents: str) -> tuple[str, str]:
    """FlashRAG's `"Title"\\ntext` -> (Title, text); without a newline the title is empty."""
    if "\n" not in contents:
        return "", contents.strip()
    title, text = contents.split("\n", 1)
    title = title.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1].strip()
    return title, text.strip()


def _iter_flashrag(path: Path) -> Iterator[tuple[Where, Passage]]:
    for where, rec in iter_records(path):
        pid = _id_field(rec, "id", path, where)
        contents = rec.get("contents")
        if contents is None:
            raise where.error(path, "missing field 'contents'")
        if not isinstance(contents, str):
            raise where.error(path, f"'contents' must be a string, got {type(contents).__name__}")
        title, text = split_flashrag_contents(contents)
        yield where, Passage(pid, title, _nonempty_text(text, path, where, "contents"))


def _iter_squad(path: Path) -> Iterator[tuple[Where, Passage]]:
    doc = load_json(path)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise InputError("expected SQuAD's layout with a top-level 'data' list", path)
    for ai, article in enumerate(data):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise Where(path=f"data[{ai}]").error(path, "missing list 'paragraphs'")
        title = article.get("title", "")
        if not isinstance(title, str):
            raise Where(path=f"data[{ai}]").error(path, "'title' must be a string")
        title = title.replace("_", " ").strip()
        for pi, para in enumerate(article["paragraphs"]):
            where = Where(path=f"data[{ai}].paragraphs[{pi}]")
            if not isinstance(para, dict):
                raise where.error(path, f"expected an object, got {type(para).__name__}")
            text = _nonempty_text(_text_field(para, "context", path, where), path, where, "context")
            yield where, Passage(f"{ai}-{pi}", title, text)


CTX_FIELDS = ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")


def _iter_dpr_biencoder(path: Path) -> Iterator[tuple[Where, Passage]]:
    seen: set[str] = set()
    for where, rec in iter_records(path):
        for field in CTX_FIELDS:
            ctxs = rec.get(field, [])
            if not isinstance(ctxs, list):
                raise where.error(path, f"'{field}' must be a list of passages")
            for k, ctx in enumerate(ctxs):
                cw = Where(line=where.line, row=where.row, path=f"{where.path + '.' if where.path else ''}{field}[{k}]")
                if not isinstance(ctx, dict):
                    raise cw.error(path, f"expected an object, got {type(ctx).__name__}")
                text = _nonempty_text(_text_field(ctx, "text", path, cw), path, cw)
                title = _text_field(ctx, "title", path, cw, required=False)
                if ctx.get("passage_id") is not None:
                    pid = _id_field(ctx, "passage_id", path, cw)
                elif ctx.get("id") is not None:
                    pid = _id_field(ctx, "id", path, cw)
                else:  # no id: a content hash keeps duplicates together
                    pid = "sha1-" + hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]
                if pid in seen:
                    continue
                seen.add(pid)
                yield cw, Passage(pid, title, text)


_READERS: dict[str, Callable[[Path], Iterator[tuple[Where, Passage]]]] = {  # (where, passage) pairs
    "dpr-tsv": _iter_dpr_tsv,
    "passages-jsonl": _iter_passages_jsonl,
    "flashrag": _iter_flashrag,
    "squad": _iter_squad,
    "dpr-biencoder": _iter_dpr_biencoder,
}


# --------------------------------------------------------------------------- chunking


def chunk_passage(passage: Passage, words: int = DEFAULT_CHUNK_WORDS) -> list[Passage]:
    """Split a passage into consecutive `words`-word passages, each keeping the title.

    A passage of at most `words` words comes back unchanged; otherwise chunk k gets the
    id "<id>#<k>" (k from 0), so chunk ids stay unique and point back to the document.
    """
    if words < 1:
        raise ConfigError("chunk_words", f"must be a positive number of words, got {words}")
    tokens = passage.text.split()
    if len(tokens) <= words:
        return [passage]
    return [
        Passage(f"{passage.id}#{k}", passage.title, " ".join(tokens[start : start + words]))
        for k, start in enumerate(range(0, len(tokens), words))
    ]


# --------------------------------------------------------------------------- public API


def iter_passages(path: str | Path, format: str | None = None, chunk_words: int | None = None) -> Iterator[Passage]:
    """Stream the passages of a corpus file; the format is detected unless given.

    `chunk_words` splits longer documents into passages of that many words (DPR uses 100).
    The format is checked at the call (a question-only file raises at once); records are
    read lazily as the iterator advances.
    """
    return PassageStream(path, format, chunk_words)


class PassageStream:
    """The passages of one corpus file, streamed; can say which line the n-th passage came from.

    An iterator like any generator; `locate` lets a consumer that finds a problem late (the
    index store meeting a duplicate id) name the file and line instead of a position.
    """

    def __init__(self, path: str | Path, format: str | None = None, chunk_words: int | None = None):
        self.path, self.format, self.chunk_words = Path(path), format, chunk_words
        self._it = (p for _, p in _iter_located(path, format, chunk_words))  # checks the format now

    def __iter__(self) -> PassageStream:
        return self

    def __next__(self) -> Passage:
        return next(self._it)

    def locate(self, position: int) -> Where | None:
        """Where the passage at 0-based `position` of the stream sits in the file (reads the file again)."""
        for i, (where, _) in enumerate(_iter_located(self.path, self.format, self.chunk_words)):
            if i == position:
                return where
        return None


def _iter_located(path: str | Path, format: str | None, chunk_words: int | None) -> Iterator[tuple[Where, Passage]]:
    """`iter_passages` with where each passage comes from (for errors that name the line)."""
    path = Path(path)
    fmt = resolve_format(path, format, PASSAGES)
    if chunk_words is not None and (
        isinstance(chunk_words, bool) or not isinstance(chunk_words, int) or chunk_words < 1
    ):
        raise ConfigError("chunk_words", f"must be a positive number of words, got {chunk_words!r}")
    it = _READERS[fmt.name](path)
    if chunk_words is None:
        return it
    return ((w, c) for w, p in it for c in chunk_passage(p, chunk_words))


def iter_passage_batches(
    path: str | Path, batch_size: int = 10_000, format: str | None = None, chunk_words: int | None = None
) -> Iterator[list[Passage]]:
    """Lists of at most `batch_size` passages, for indexing corpora that do not fit in memory."""
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be positive, got {batch_size}")
    return batched(iter_passages(path, format, chunk_words), batch_size)


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """Consecutive lists of `n` items (the last one shorter)."""
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def load_passages(path: str | Path, format: str | None = None, chunk_words: int | None = None) -> list[Passage]:
    """All passages of a corpus, checked to be non-empty and to have unique ids."""
    path = Path(path)
    out: list[Passage] = []
    first_seen: dict[str, Where] = {}
    for where, p in _iter_located(path, format, chunk_words):
        if p.id in first_seen:
            raise where.error(path, f"duplicate passage id '{p.id}' (first at {first_seen[p.id]})")
        first_seen[p.id] = where
        out.append(p)
    if not out:
        raise InputError("holds no passages", path)
    return out


def count_passages(path: str | Path, format: str | None = None, chunk_words: int | None = None) -> int:
    """Number of passages (after chunking), counted while streaming: nothing is kept."""
    return sum(1 for _ in iter_passages(path, format, chunk_words))

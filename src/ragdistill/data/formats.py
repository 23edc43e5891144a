"""File formats of question sets and corpora, recognised from their content.

Detection reads at most the first megabyte of a file, so it is instant even on a
13 GB ``psgs_w100.tsv``. Every loader validates as it reads, so a wrong guess (or
a wrong ``--format``) still ends in an `InputError` that names the file and line.

Shared low-level readers live here too: `open_text` (UTF-8 with or without BOM,
Windows line ends, transparent gzip), `iter_lines`, `iter_records` (JSONL lines, the
elements of a top-level JSON array, or the rows of a table) and `split_tsv` (DPR's
quoted TSV fields).

Tables: a Parquet file (recognised by its ``PAR1`` magic) or a folder written by
`datasets`' ``save_to_disk`` holds the same records as the JSONL layouts, one row per
record with the same column names (``question``/``answers``, ``id``/``title``/``text``, ...).
A ``DatasetDict`` folder needs a split: ``PATH::SPLIT`` (e.g. ``nq_hf::validation``); one
with a single split uses it. Errors name the row (1-based: row 1 is the first row).
Reading tables needs the optional extra ``pip install 'ragdistill[data]'`` (pyarrow, datasets).
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ragdistill.errors import ConfigError, InputError

QUESTIONS = "questions"
PASSAGES = "passages"
_HEAD_BYTES = 1 << 20  # how much of a file detection may read


@dataclass(frozen=True)
class Format:
    """A supported file layout and which record kinds it holds."""

    name: str
    description: str
    questions: bool
    passages: bool

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, ok in ((QUESTIONS, self.questions), (PASSAGES, self.passages)) if ok)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("nq-open", 'NQ-open JSONL: {"question", "answer": [..]}', True, False),
        Format(
            "flashrag-qa",
            'FlashRAG question JSONL: {"id", "question", "golden_answers": [..], "metadata"?}',
            True,
            False,
        ),
        Format(
            "qa-jsonl",
            'question/answers JSONL (DPR, TriviaQA as used by DPR, generic): {"id"?, "question", "answers": [..]}',
            True,
            False,
        ),
        Format("qa-tsv", "DPR question/answers TSV: question<TAB>['a', 'b']", True, False),
        Format(
            "triviaqa",
            'TriviaQA official JSON: {"Data": [{"Question", "Answer": {"Aliases", "NormalizedAliases"}}]}',
            True,
            False,
        ),
        Format(
            "squad",
            'SQuAD v1.1 JSON: {"data": [{"title", "paragraphs": [{"context", "qas"}]}]} (questions and paragraphs)',
            True,
            True,
        ),
        Format(
            "dpr-biencoder",
            'DPR bi-encoder training JSON/JSONL: {"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}',
            True,
            True,
        ),
        Format("dpr-tsv", "DPR passages TSV (psgs_w100.tsv): id<TAB>text<TAB>title, with a header", False, True),
        Format("passages-jsonl", 'passages JSONL: {"id", "title", "text"}', False, True),
        Format("flashrag", 'FlashRAG corpus JSONL: {"id", "contents": "\\"Title\\"\\ntext"}', False, True),
    ]
}

ALIASES = {
    "nq": "nq-open",
    "nq_open": "nq-open",
    "dpr-qa": "qa-jsonl",
    "generic": "qa-jsonl",
    "jsonl-qa": "qa-jsonl",
    "dpr-qa-tsv": "qa-tsv",
    "trivia": "triviaqa",
    "squad1": "squad",
    "squad-v1.1": "squad",
    "biencoder": "dpr-biencoder",
    "psgs_w100": "dpr-tsv",
    "psgs-tsv": "dpr-tsv",
    "tsv": "dpr-tsv",
    "jsonl": "passages-jsonl",
    "corpus-jsonl": "passages-jsonl",
    "flashrag-jsonl": "flashrag",
    "flashrag-questions": "flashrag-qa",
    "flashrag-question": "flashrag-qa",
}

# Formats whose records can be the rows of a table (Parquet, `datasets` folders): one flat record each.
ROW_FORMATS = ("nq-open", "flashrag-qa", "qa-jsonl", "dpr-biencoder", "passages-jsonl", "flashrag")
SPLIT_SEP = "::"
DATA_EXTRA = "pip install 'ragdistill[data]'  (or: pip install pyarrow==26.0.1 datasets==5.2.0)"


def format_names(kind: str | None = None) -> list[str]:
    """Names of the formats holding `kind` ('questions', 'passages' or None for all)."""
    return [n for n, f in FORMATS.items() if kind is None or kind in f.kinds]


def get_format(name: str) -> Format:
    """A `Format` by name or alias; an unknown name is a `ConfigError` on 'format'."""
    key = name.strip().lower().replace("_", "-") if name else ""
    key = ALIASES.get(name.strip().lower(), ALIASES.get(key, key)) if name else ""
    if key not in FORMATS:
        raise ConfigError("format", f"unknown format '{name}'; choose one of: {', '.join(FORMATS)}")
    return FORMATS[key]


# --------------------------------------------------------------------------- reading


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path)
    if not path.is_file():
        raise InputError(
            "is not a file (pass a question set or corpus file, or a folder written by datasets' save_to_disk)", path
        )


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Table:
    """A tabular source: a Parquet file, or a `datasets` save_to_disk folder (with its split)."""

    kind: str  # "parquet" or "dataset"
    path: Path
    split: str | None = None

    @property
    def description(self) -> str:
        return "Parquet file" if self.kind == "parquet" else "datasets folder (save_to_disk)"


def _is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def table_source(path: str | Path) -> Table | None:
    """The `Table` behind `path` (``PATH::SPLIT`` selects a DatasetDict split), or None for text files."""
    text = str(path)
    p = Path(text)
    if p.is_file():
        with open(p, "rb") as f:
            return Table("parquet", p) if f.read(4) == b"PAR1" else None
    if _is_dataset_dir(p):
        return Table("dataset", p)
    if SPLIT_SEP in text and not p.exists():
        base, split = text.rsplit(SPLIT_SEP, 1)
        if _is_dataset_dir(Path(base)) and split:
            return Table("dataset", Path(base), split)
    return None


def _need(module: str, path: str | Path, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"is a {what}; reading it needs the optional package '{module.split('.')[0]}': {DATA_EXTRA}", path
        ) from None


def _open_dataset(table: Table, path: str | Path):
    datasets = _need("datasets", path, table.description)
    try:
        ds = datasets.load_from_disk(str(table.path))
    except Exception as exc:  # noqa: BLE001 - any failure of a damaged folder is the user's file
        raise InputError(f"cannot be read as a datasets folder ({type(exc).__name__}: {exc})", path) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if table.split is None:
            if len(splits) == 1:
                return ds[splits[0]]
            raise InputError(
                f"is a DatasetDict with splits {', '.join(splits)}: choose one as "
                f"{table.path}{SPLIT_SEP}SPLIT (e.g. {table.path}{SPLIT_SEP}{splits[0]})",
                path,
            )
        if table.split not in ds:
            raise InputError(f"has no split '{table.split}' (splits: {', '.join(splits)})", path)
        return ds[table.split]
    if table.split is not None:
        raise InputError(f"is a single Dataset, not a DatasetDict: drop '{SPLIT_SEP}{table.split}'", path)
    return ds


def table_columns(table: Table, path: str | Path) -> tuple[list[str], int]:
    """(column names, number of rows) of a table, without reading its rows."""
    if table.kind == "parquet":
        pq = _need("pyarrow.parquet", path, table.description)
        try:
            meta = pq.ParquetFile(str(table.path))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot be read as Parquet ({type(exc).__name__}: {exc})", path) from None
        return list(meta.schema_arrow.names), meta.metadata.num_rows
    ds = _open_dataset(table, path)
    return list(ds.column_names), len(ds)


def iter_table_rows(table: Table, path: str | Path, batch_size: int = 1024) -> Iterator[dict]:
    """The rows of a table as dicts (streamed in record batches)."""
    if table.kind == "parquet":
        pq = _need("pyarrow.parquet", path, table.description)
        try:
            batches = pq.ParquetFile(str(table.path)).iter_batches(batch_size=batch_size)
            for batch in batches:
                yield from batch.to_pylist()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot be read as Parquet ({type(exc).__name__}: {exc})", path) from None
        return
    ds = _open_dataset(table, path)
    for batch in ds.with_format("arrow").iter(batch_size=batch_size):
        yield from batch.to_pylist()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def open_text(path: str | Path) -> IO[str]:
    """Open a text file as UTF-8, dropping a BOM, folding CRLF, decompressing gzip."""
    path = Path(path)
    _check_file(path)
    if _is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline=None)
    return open(path, encoding="utf-8-sig", newline=None)


def _utf8_error_line(path: Path) -> tuple[int, int] | None:
    """(1-based line, 1-based byte in that line) of the first line that is not valid UTF-8, or None.

    Text decoding fails a whole block at a time, so this rescans the bytes line by line to
    tell the user which line to fix (only ever run on the error path).
    """
    try:
        with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return lineno, exc.start + 1
    except (OSError, EOFError):
        return None
    return None


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> InputError:
    loc = _utf8_error_line(path)
    where = f", byte {loc[1]} of the line" if loc else ""
    return InputError(
        f"is not UTF-8 text ({exc.reason}{where}); re-encode the file as UTF-8", path, loc[0] if loc else None
    )


def read_head(path: str | Path, n_chars: int = _HEAD_BYTES) -> str:
    """The first `n_chars` characters of a file (decoded), for format detection."""
    path = Path(path)
    try:
        with open_text(path) as f:
            return f.read(n_chars)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot be read: {exc}", path) from exc


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end), streamed."""
    path = Path(path)
    lineno = 0
    try:
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 - lineno used in the handler
                yield lineno, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot be read: {exc}", path, lineno + 1 if lineno else None) from exc


def json_error(path: str | Path, exc: json.JSONDecodeError) -> InputError:
    """A JSON syntax error naming its line; a document cut short names its last line with content."""
    end = len(exc.doc.rstrip())
    if exc.pos >= end:  # not the blank line after it
        line = exc.doc.count("\n", 0, end) + 1
        return InputError(
            f"is not valid JSON: it ends before the document is complete (truncated?; {exc.msg})", path, line
        )
    return InputError(f"is not valid JSON ({exc.msg}, column {exc.colno})", path, exc.lineno)


def load_json(path: str | Path) -> Any:
    """A whole JSON document; a syntax error names the line."""
    path = Path(path)
    try:
        with open_text(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise json_error(path, exc) from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot be read: {exc}", path) from exc


@dataclass(frozen=True)
class Where:
    """Where a record sits: a JSONL line, an index path inside a whole-file JSON, or a table row (1-based)."""

    line: int | None = None
    path: str | None = None
    row: int | None = None

    def error(self, file: str | Path, problem: str) -> InputError:
        if self.path is not None:
            problem = f"{self.path}: {problem}"
        if self.row is not None:  # "file.parquet, row 17: problem"
            err = InputError(problem, file)
            err.row = self.row
            err.args = (f"{file}, row {self.row}: {problem}",)
            return err
        return InputError(problem, file, self.line)

    def __str__(self) -> str:
        if self.row is not None:
            return f"row {self.row}" + (f" {self.path}" if self.path is not None else "")
        return self.path if self.path is not None else f"line {self.line}"

    @property
    def ordinal(self) -> str:
        """A short position for generated ids: the line, the row, or the array index."""
        if self.line is not None:
            return str(self.line)
        if self.row is not None:
            return str(self.row)
        return (self.path or "").strip("[]")


def iter_records(path: str | Path) -> Iterator[tuple[Where, dict]]:
    """JSON objects of a JSONL file (streamed) or of a top-level JSON array (loaded).

    Blank lines are skipped; a line that is not a JSON object is an `InputError` with its number.
    A Parquet file or `datasets` folder yields its rows (``Where(row=n)``, 1-based).
    """
    table = table_source(path)
    if table is not None:
        for i, rec in enumerate(iter_table_rows(table, path), 1):
            yield Where(row=i), rec
        return
    path = Path(path)
    head = read_head(path, 4096).lstrip()
    if head.startswith("["):
        data = load_json(path)
        if not isinstance(data, list):
            raise InputError("expected a JSON array of records", path)
        for i, rec in enumerate(data):
            where = Where(path=f"[{i}]")
            if not isinstance(rec, dict):
                raise where.error(path, f"expected a JSON object, got {type(rec).__name__}")
            yield where, rec
        return
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON line ({exc.msg}, column {exc.colno})", path, lineno) from exc
        if not isinstance(rec, dict):
            raise InputError(f"expected a JSON object per line, got {type(rec).__name__}", path, lineno)
        yield Where(line=lineno), rec


def _unquote(field: str) -> str:
    """A CSV-quoted field as DPR writes it (quotes around, inner quotes doubled), else the field as is."""
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def split_tsv(line: str) -> list[str]:
    """Tab-separated fields, with DPR/csv-style quoted fields unquoted."""
    fields = line.split("\t")
    if any(f.startswith('"') and not (len(f) >= 2 and f.endswith('"')) for f in fields):
        # a quoted field holding a tab: let the csv module join it back
        import csv

        try:
            fields = next(csv.reader([line], delimiter="\t"))
        except (csv.Error, StopIteration):
            pass
        return fields
    return [_unquote(f) for f in fields]


def file_stem(path: str | Path) -> str:
    """File name without data suffixes, for generated ids ("NQ-open.dev.jsonl" -> "NQ-open.dev")."""
    name = Path(path).name
    name = name.split(SPLIT_SEP)[0] if SPLIT_SEP in name and not Path(path).exists() else name
    for suffix in (".gz", ".jsonl", ".json", ".tsv", ".txt", ".csv", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "q"


# --------------------------------------------------------------------------- detection


def record_format(rec: dict) -> str | None:
    """The format a single JSON record (JSONL line or array element) belongs to, if any."""
    if "positive_ctxs" in rec or "hard_negative_ctxs" in rec or "negative_ctxs" in rec:
        return "dpr-biencoder"
    if "question" in rec:
        if "golden_answers" in rec:
            return "flashrag-qa"
        if "answer" in rec and "answers" not in rec:
            return "nq-open"
        return "qa-jsonl"
    if "contents" in rec:
        return "flashrag"
    if "text" in rec:
        return "passages-jsonl"
    return None


def _container_format(obj: dict) -> str | None:
    if isinstance(obj.get("data"), list):
        return "squad"
    if "Data" in obj:
        return "triviaqa"
    return None


_UNKNOWN_HINT = (
    "expected one of: "
    + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
    + ". Pass --format to choose one."
)


def _first_array_element(path: Path, head: str) -> Any:
    """Decode the first element of a top-level JSON array, reading more text only as needed."""
    decoder = json.JSONDecoder()
    text = head
    limit = len(head)
    while True:
        start = text.index("[") + 1
        while start < len(text) and text[start].isspace():
            start += 1
        if start < len(text) and text[start] == "]":
            raise InputError("is an empty JSON array: no records", path)
        try:
            obj, _ = decoder.raw_decode(text, start)
            return obj
        except json.JSONDecodeError as exc:
            if len(text) < limit or limit >= (64 << 20):
                # whole file read (or 64 MB of one record): report the real error
                raise json_error(path, exc) from exc
        limit *= 4
        text = read_head(path, limit)


def detect_format(path: str | Path) -> str:
    """Recognise a file's format from its content (see `FORMATS`); `InputError` if unrecognised.

    A table (Parquet, `datasets` folder) is recognised from its column names.
    """
    table = table_source(path)
    if table is not None:
        columns, rows = table_columns(table, path)
        fmt = record_format(dict.fromkeys(columns))
        if fmt is None or fmt not in ROW_FORMATS:
            raise InputError(
                f"is a {table.description} whose columns {columns} match no known layout; expected the "
                "columns of one of: "
                + "; ".join(f"{n} ({FORMATS[n].description})" for n in ROW_FORMATS)
                + ". Rename the columns (or pass --format).",
                path,
            )
        if rows == 0:
            raise InputError(f"is an empty {table.description}: no records", path)
        return fmt
    path = Path(path)
    head = read_head(path)
    stripped = head.lstrip()
    if not stripped:
        raise InputError("is empty: no records", path)

    if stripped[0] == "[":
        first = _first_array_element(path, head)
        fmt = record_format(first) if isinstance(first, dict) else None
        if fmt is None:
            keys = sorted(first) if isinstance(first, dict) else type(first).__name__
            raise InputError(
                f"is a JSON array whose first element ({keys}) matches no known format; {_UNKNOWN_HINT}", path
            )
        return fmt

    if stripped[0] == "{":
        lines = [ln for ln in head.split("\n") if ln.strip()]  # not splitlines: U+2028 etc. may sit in a JSON string
        complete_first_line = "\n" in head or len(head) < _HEAD_BYTES
        first_line = lines[0] if lines else ""
        if complete_first_line:
            try:
                obj = json.loads(first_line)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                fmt = _container_format(obj) or record_format(obj)
                if fmt is None:
                    raise InputError(
                        f"a JSON object with fields {sorted(obj)}, which match no known format; {_UNKNOWN_HINT}",
                        path,
                        1,
                    )
                return fmt
        # A pretty-printed (or very long single-line) whole-file JSON document.
        if re.search(r'"Data"\s*:\s*\[', head):
            return "triviaqa"
        if re.search(r'"paragraphs"\s*:\s*\[', head) or re.match(r'\s*\{\s*"data"\s*:\s*\[', head):
            return "squad"
        # JSONL whose first line is broken? Then a later line is a JSON object.
        for _i, line in enumerate(head.split("\n")[1:20], 2):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and (fmt := record_format(obj)):
                try:
                    json.loads(first_line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"malformed JSON line ({exc.msg}, column {exc.colno}); the file looks like {fmt}", path, 1
                    ) from exc
        obj = load_json(path)  # raises with the line of the syntax error
        if isinstance(obj, dict):
            fmt = _container_format(obj) or record_format(obj)
            if fmt:
                return fmt
            raise InputError(
                f"is a JSON object with fields {sorted(obj)[:10]}, which match no known format; {_UNKNOWN_HINT}", path
            )
        raise InputError(f"matches no known format; {_UNKNOWN_HINT}", path)

    # Tab-separated text.
    first_line = next((ln for ln in head.split("\n") if ln.strip()), "")
    fields = [f.strip().lower() for f in split_tsv(first_line)]
    if "id" in fields and "text" in fields:
        return "dpr-tsv"
    if fields[:2] == ["question", "answers"]:
        return "qa-tsv"
    if len(fields) == 2 and fields[1].startswith(("[", "(")):
        return "qa-tsv"
    if len(fields) == 3 and fields[0] and fields[1]:
        return "dpr-tsv"  # DPR passages without a header
    raise InputError(
        f"line 1 has {len(fields)} tab-separated field(s) and is not JSON, so it matches no known format; {_UNKNOWN_HINT}",
        path,
        1,
    )


def resolve_format(path: str | Path, format: str | None, kind: str) -> Format:
    """The format to read `path` with (given or detected), checked to hold `kind` records."""
    fmt = get_format(format) if format else FORMATS[detect_format(path)]
    table = table_source(path) if format else None
    if table is not None and fmt.name not in ROW_FORMATS:
        raise InputError(
            f"is a {table.description}: its rows can hold the layouts {', '.join(ROW_FORMATS)}, "
            f"not '{fmt.name}' ({fmt.description})",
            path,
        )
    if kind not in fmt.kinds:
        expected = "a question set" if kind == QUESTIONS else "a corpus (passages)"
        names = ", ".join(format_names(kind))
        what = "a corpus" if fmt.passages else "a question set"
        how = "was given as" if format else "looks like"
        raise InputError(
            f"expected {expected} ({names}), but this file {how} {what} in format '{fmt.name}' ({fmt.description})",
            path,
        )
    return fmt

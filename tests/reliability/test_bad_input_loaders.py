"""Property-based bad input for every loader: a correct parse, or an InputError naming the file and line.

Each generated file ends in exactly one of two ways:

* a parse whose records satisfy the loader's contract (non-empty strings, unique ids, the
  values that were written), or
* a `RagdistillError` whose message names the file and, for line-based formats and
  record-level problems, the exact line of the bad record.

Any other exception (a KeyError, a UnicodeDecodeError, a json error...) fails the test:
that is what a user would see as a traceback. Files are built from valid records and then
damaged one way at a time: truncation, wrong types, missing fields, empty strings, very
long lines, mixed encodings, BOMs, Windows line ends, duplicate ids, non-string answers,
or plain random bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ragdistill.data import detect_format, load_passages, load_questions
from ragdistill.errors import ConfigError, InputError, RagdistillError
from tests.reliability.conftest import count

BOM = b"\xef\xbb\xbf"

# Text that survives a round trip through every format: printable, no tabs or line breaks, not blank.
# It does include U+2028/U+0085 (line separators to str.splitlines, not to JSONL) and non-ASCII letters.
_alphabet = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\t\n\r\x0b\x0c") | st.sampled_from(
    ["\u2028", "\u2029", "\x85", "é", "中", "😀", "'", '"', "\\"]
)
words = st.text(_alphabet, min_size=1, max_size=20).filter(lambda s: s.strip() and s == s.strip())


def _write(content: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="rel-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return Path(name)


def _lines_bytes(lines: list[str], *, bom: bool, crlf: bool, latin1_line: int | None = None) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    parts = []
    for i, line in enumerate(lines):
        if i == latin1_line:
            parts.append(line.encode("latin-1", errors="replace"))
        else:
            parts.append(line.encode("utf-8"))
    return (BOM if bom else b"") + end.join(parts) + end


def outcome(load, path: Path, expect_line: int | None = None):
    """ "error", or ("ok", result); an error must name the file (and `expect_line` when given)."""
    count("bad-input cases generated")
    try:
        result = load(path)
    except RagdistillError as exc:
        msg = str(exc)
        assert msg.strip(), "empty error message"
        if isinstance(exc, InputError):
            assert str(path) in msg, f"error does not name the file: {msg}"
            if exc.line is not None:
                assert f"line {exc.line}" in msg
            if expect_line is not None:
                assert exc.line == expect_line, f"expected line {expect_line}: {msg}"
        else:
            assert isinstance(exc, ConfigError)
        return "error"
    return ("ok", result)  # type: ignore[return-value]


def check_questions(qs) -> None:
    assert qs and len({q.id for q in qs}) == len(qs)
    for q in qs:
        assert isinstance(q.question, str) and q.question.strip() == q.question and q.question
        assert q.answers and all(isinstance(a, str) and a.strip() for a in q.answers)


def check_passages(ps) -> None:
    assert ps and len({p.id for p in ps}) == len(ps)
    for p in ps:
        assert isinstance(p.id, str) and p.id and isinstance(p.text, str) and p.text and isinstance(p.title, str)


# --------------------------------------------------------------------------- question sets, JSONL

QA_MUTATIONS = [
    "none",
    "truncate",
    "drop_question",
    "drop_answers",
    "question_type",
    "answers_type",
    "answer_item_type",
    "empty_question",
    "empty_answers",
    "empty_answer_item",
    "duplicate_id",
    "not_object",
    "long_line",
    "latin1",
    "bom_inside",
    "answers_string",
    "blank_line",
]
_bad_values = st.sampled_from([None, 0, 1.5, True, [], {}, ["x"], {"a": 1}])
_bad_items = st.sampled_from([None, 0, 2.5, False, [], {}, ["nested"], {"text": "x"}])


@st.composite
def qa_jsonl_case(draw):
    n = draw(st.integers(1, 5))
    fmt = draw(st.sampled_from(["qa-jsonl", "nq-open"]))
    afield = "answers" if fmt == "qa-jsonl" else "answer"
    recs = [
        {"id": f"q{i}", "question": draw(words), afield: draw(st.lists(words, min_size=1, max_size=3))}
        for i in range(n)
    ]
    if fmt == "nq-open":
        for r in recs:
            r.pop("id")
    mutation = draw(st.sampled_from(QA_MUTATIONS))
    i = draw(st.integers(0, n - 1))
    bad_line = i + 1
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in recs]
    latin1 = None
    r = recs[i]
    if mutation == "truncate":
        cut = draw(st.integers(1, len(lines[i]) - 1))
        lines[i] = lines[i][:cut]
        if i == n - 1 and draw(st.booleans()):  # a file cut mid-way: no final newline either
            lines = lines[: i + 1]
    elif mutation == "drop_question":
        r.pop("question")
    elif mutation == "drop_answers":
        r.pop(afield)
    elif mutation == "question_type":
        r["question"] = draw(_bad_values)
    elif mutation == "answers_type":
        r[afield] = draw(st.sampled_from([None, 0, 1.5, True, {}, {"a": 1}, []]))
    elif mutation == "answer_item_type":
        r[afield] = [*r[afield], draw(_bad_items)]
    elif mutation == "empty_question":
        r["question"] = draw(st.sampled_from(["", " ", "\t", "\u3000 "]))
    elif mutation == "empty_answers":
        r[afield] = []
    elif mutation == "empty_answer_item":
        r[afield] = [*r[afield], draw(st.sampled_from(["", "  "]))]
    elif mutation == "duplicate_id":
        if fmt == "nq-open" or n < 2 or i == 0:
            mutation = "none"
        else:
            r["id"] = recs[draw(st.integers(0, i - 1))]["id"]
    elif mutation == "not_object":
        lines[i] = draw(st.sampled_from(["[1, 2]", '"text"', "42", "null", "true"]))
    elif mutation == "long_line":
        r["question"] = "x" * draw(st.integers(70_000, 200_000))
    elif mutation == "latin1":
        r["question"] = r["question"] + " café"
        latin1 = i
    elif mutation == "bom_inside":
        if i == 0:
            mutation = "none"
        else:
            lines[i] = "\ufeff" + lines[i]
    elif mutation == "answers_string":
        r[afield] = draw(words)  # a single string is accepted as one answer
    elif mutation == "blank_line":
        lines.insert(i, draw(st.sampled_from(["", "   ", "\t"])))
    if mutation in (
        "drop_question",
        "drop_answers",
        "question_type",
        "answers_type",
        "answer_item_type",
        "empty_question",
        "empty_answers",
        "empty_answer_item",
        "duplicate_id",
        "long_line",
        "latin1",
        "answers_string",
        "blank_line",
    ):
        if mutation != "blank_line":
            lines[i] = json.dumps(r, ensure_ascii=(mutation != "latin1"))
    return recs, lines, mutation, bad_line, latin1, fmt, afield


@given(case=qa_jsonl_case(), bom=st.booleans(), crlf=st.booleans(), give_format=st.booleans())
def test_question_jsonl(case, bom, crlf, give_format):
    recs, lines, mutation, bad_line, latin1, fmt, afield = case
    path = _write(_lines_bytes(lines, bom=bom, crlf=crlf, latin1_line=latin1), ".jsonl")
    try:
        res = outcome(
            lambda p: load_questions(p, format=fmt if give_format else None),
            path,
            expect_line=None if mutation in ("none", "answers_string", "blank_line", "long_line") else bad_line,
        )
        if mutation in ("none", "answers_string", "blank_line", "long_line"):
            assert res != "error", f"valid file refused ({mutation})"
            qs = res[1]
            check_questions(qs)
            assert [q.question for q in qs] == [r["question"] for r in recs]
            for q, r in zip(qs, recs):
                want = r[afield] if isinstance(r[afield], list) else [r[afield]]
                assert q.answers == list(dict.fromkeys(want))
        elif mutation in (
            "question_type",
            "answers_type",
            "answer_item_type",
            "empty_question",
            "empty_answers",
            "empty_answer_item",
            "duplicate_id",
            "not_object",
            "drop_question",
            "drop_answers",
            "latin1",
            "bom_inside",
        ):
            # nq-open + dropped "answer" looks like qa-jsonl with no answers: still an error on that line
            assert res == "error", f"bad record accepted ({mutation})"
        else:  # truncate
            assert res == "error"
    finally:
        path.unlink()


# --------------------------------------------------------------------------- question sets, TSV


@st.composite
def qa_tsv_case(draw):
    n = draw(st.integers(1, 5))
    header = draw(st.booleans())
    qs = [draw(words.filter(lambda w: not w.startswith('"'))) for _ in range(n)]
    ans = [draw(st.lists(words, min_size=1, max_size=3)) for _ in range(n)]
    lines = [f"{q}\t{a!r}" for q, a in zip(qs, ans)]
    mutation = draw(
        st.sampled_from(
            [
                "none",
                "no_tab",
                "bad_literal",
                "string_literal",
                "non_string_item",
                "empty_list",
                "code",
                "empty_question",
                "truncate",
                "latin1",
                "extra_column",
            ]
        )
    )
    i = draw(st.integers(0, n - 1))
    latin1 = None
    if mutation == "no_tab":
        lines[i] = qs[i]
    elif mutation == "bad_literal":
        lines[i] = f"{qs[i]}\t['unclosed"
    elif mutation == "string_literal":
        lines[i] = f"{qs[i]}\t'just a string'"
    elif mutation == "non_string_item":
        lines[i] = f"{qs[i]}\t{[*ans[i], draw(st.sampled_from([1, None, 2.0, ('t',)]))]!r}"
    elif mutation == "empty_list":
        lines[i] = f"{qs[i]}\t[]"
    elif mutation == "code":
        lines[i] = f"{qs[i]}\t__import__('os').system('echo pwned')"
    elif mutation == "empty_question":
        lines[i] = f" \t{ans[i]!r}"
    elif mutation == "truncate":
        lines[i] = lines[i][: len(qs[i]) + 1 + draw(st.integers(1, len(repr(ans[i])) - 1))]
    elif mutation == "latin1":
        lines[i] = f"{qs[i]} café\t{ans[i]!r}"
        latin1 = i
    elif mutation == "extra_column":
        lines[i] = lines[i] + "\textra"
    if header:
        lines.insert(0, "question\tanswers")
    return qs, ans, lines, mutation, i + 1 + int(header), latin1 + int(header) if latin1 is not None else None


@given(case=qa_tsv_case(), bom=st.booleans(), crlf=st.booleans())
def test_question_tsv(case, bom, crlf):
    qs, ans, lines, mutation, bad_line, latin1 = case
    path = _write(_lines_bytes(lines, bom=bom, crlf=crlf, latin1_line=latin1), ".tsv")
    try:
        res = outcome(
            lambda p: load_questions(p, format="qa-tsv"),
            path,
            expect_line=None if mutation in ("none", "extra_column") else bad_line,
        )
        if mutation in ("none", "extra_column"):
            assert res != "error"
            check_questions(res[1])
            assert [q.question for q in res[1]] == qs
            assert [q.answers for q in res[1]] == [list(dict.fromkeys(a)) for a in ans]
        else:
            assert res == "error", f"bad record accepted ({mutation})"
    finally:
        path.unlink()


# --------------------------------------------------------------------------- corpora


@st.composite
def corpus_case(draw):
    n = draw(st.integers(1, 5))
    fmt = draw(st.sampled_from(["passages-jsonl", "flashrag", "dpr-tsv"]))
    ps = [
        {
            "id": f"p{i}",
            "title": draw(words.filter(lambda w: not w.startswith('"'))),
            "text": draw(words.filter(lambda w: not w.startswith('"'))),
        }
        for i in range(n)
    ]
    mutation = draw(
        st.sampled_from(
            [
                "none",
                "drop_id",
                "drop_text",
                "id_type",
                "text_type",
                "empty_text",
                "duplicate_id",
                "truncate",
                "latin1",
                "long_line",
                "int_id",
            ]
        )
    )
    i = draw(st.integers(0, n - 1))
    if mutation == "duplicate_id" and i == 0:
        mutation = "none"
    if fmt == "dpr-tsv" and mutation in ("id_type", "text_type", "int_id"):
        mutation = "none"
    latin1 = None
    p = ps[i]
    if mutation == "drop_id":
        p.pop("id")
    elif mutation == "drop_text":
        p.pop("text")
    elif mutation == "id_type":
        p["id"] = draw(st.sampled_from([None, [], {}, 1.5, True]))
    elif mutation == "text_type":
        p["text"] = draw(st.sampled_from([1, [], {"t": 1}, False]))
    elif mutation == "empty_text":
        p["text"] = draw(st.sampled_from(["", "  "]))
    elif mutation == "duplicate_id":
        p["id"] = ps[draw(st.integers(0, i - 1))]["id"]
    elif mutation == "long_line":
        p["text"] = "word " * draw(st.integers(20_000, 40_000)) + "end"
    elif mutation == "int_id":
        p["id"] = 1000 + i
    elif mutation == "latin1":
        p["text"] = p["text"] + " café"
        latin1 = i

    def line(rec):
        if fmt == "passages-jsonl":
            return json.dumps(rec, ensure_ascii=False)
        if fmt == "flashrag":
            out = {k: v for k, v in rec.items() if k == "id"}
            if "text" in rec:
                out["contents"] = (
                    f'"{rec.get("title", "")}"\n{rec["text"]}' if isinstance(rec["text"], str) else rec["text"]
                )
            return json.dumps(out, ensure_ascii=False)
        return (
            "\t".join(str(rec.get(k, "")) for k in ("id", "text", "title"))
            if "id" in rec and "text" in rec
            else "\t".join(str(rec[k]) for k in ("id", "text", "title") if k in rec)
        )

    lines = [line(r) for r in ps]
    if mutation == "truncate":
        full = lines[i]
        lines[i] = full[: draw(st.integers(1, len(full) - 1))]
        if fmt == "dpr-tsv" and lines[i].count("\t") == 2 and lines[i].split("\t")[1].strip():
            mutation = "tsv_short_title"  # a TSV line cut inside its title is still a valid passage
    header = fmt == "dpr-tsv"
    if header:
        lines.insert(0, "id\ttext\ttitle")
    return ps, lines, mutation, i + 1 + int(header), (latin1 + int(header)) if latin1 is not None else None, fmt


@given(case=corpus_case(), bom=st.booleans(), crlf=st.booleans(), give_format=st.booleans())
def test_corpus(case, bom, crlf, give_format):
    ps, lines, mutation, bad_line, latin1, fmt = case
    path = _write(_lines_bytes(lines, bom=bom, crlf=crlf, latin1_line=latin1), ".tsv" if fmt == "dpr-tsv" else ".jsonl")
    ok = ("none", "long_line", "int_id", "tsv_short_title")
    try:
        res = outcome(
            lambda p: load_passages(p, format=fmt if give_format else None),
            path,
            expect_line=None if mutation in ok else bad_line,
        )
        if mutation in ok:
            assert res != "error", f"valid corpus refused ({mutation})"
            check_passages(res[1])
            assert [x.id for x in res[1]] == [str(p["id"]) for p in ps]
            if mutation != "tsv_short_title":
                assert [x.text for x in res[1]] == [p["text"].strip() for p in ps]
        elif mutation == "truncate" and fmt == "dpr-tsv":
            # a TSV line cut short: an error on that line, or (cut in the text) a shorter passage
            if res != "error":
                check_passages(res[1])
        else:
            assert res == "error", f"bad passage accepted ({mutation}, {fmt})"
    finally:
        path.unlink()


# --------------------------------------------------------------------------- whole-file JSON formats


@st.composite
def json_doc_case(draw):
    """SQuAD, TriviaQA and DPR bi-encoder documents, valid or with one field damaged."""
    fmt = draw(st.sampled_from(["squad", "triviaqa", "dpr-biencoder"]))
    q, a, t = draw(words), draw(words), draw(words)
    if fmt == "squad":
        doc = {
            "data": [
                {
                    "title": t,
                    "paragraphs": [
                        {
                            "context": f"{t} {a}",
                            "qas": [{"id": "x1", "question": q, "answers": [{"text": a, "answer_start": 0}]}],
                        }
                    ],
                }
            ]
        }
        targets = [
            ("data",),
            ("data", 0, "paragraphs"),
            ("data", 0, "paragraphs", 0, "context"),
            ("data", 0, "paragraphs", 0, "qas"),
            ("data", 0, "paragraphs", 0, "qas", 0, "question"),
            ("data", 0, "paragraphs", 0, "qas", 0, "answers"),
            ("data", 0, "paragraphs", 0, "qas", 0, "answers", 0),
        ]
    elif fmt == "triviaqa":
        doc = {
            "Data": [
                {"QuestionId": "t1", "Question": q, "Answer": {"Value": a, "Aliases": [a], "NormalizedAliases": [a]}}
            ]
        }
        targets = [
            ("Data",),
            ("Data", 0),
            ("Data", 0, "Question"),
            ("Data", 0, "Answer"),
            ("Data", 0, "Answer", "Aliases"),
            ("Data", 0, "Answer", "Value"),
        ]
    else:
        doc = [
            {
                "question": q,
                "answers": [a],
                "positive_ctxs": [{"title": t, "text": a, "passage_id": "1"}],
                "negative_ctxs": [],
                "hard_negative_ctxs": [{"title": t, "text": q, "passage_id": "2"}],
            }
        ]
        targets = [
            (0, "question"),
            (0, "answers"),
            (0, "positive_ctxs"),
            (0, "positive_ctxs", 0),
            (0, "positive_ctxs", 0, "text"),
            (0, "hard_negative_ctxs", 0, "passage_id"),
        ]
    damage = draw(st.booleans())
    if damage:
        path = draw(st.sampled_from(targets))
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = draw(st.sampled_from([None, 7, "", [], {}, [None], True]))
    return fmt, doc, damage


@given(
    case=json_doc_case(),
    indent=st.sampled_from([None, 2]),
    bom=st.booleans(),
    crlf=st.booleans(),
    cut=st.none() | st.floats(0.05, 0.95),
)
def test_whole_file_json(case, indent, bom, crlf, cut):
    fmt, doc, damage = case
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (BOM if bom else b"") + text.encode("utf-8")
    if cut is not None:
        data = data[: max(1, int(len(data) * cut))]
    path = _write(data, ".json")
    try:
        kinds = {
            "squad": (load_questions, load_passages),
            "triviaqa": (load_questions,),
            "dpr-biencoder": (load_questions, load_passages),
        }[fmt]
        for load in kinds:
            res = outcome(load, path)
            if res != "error":
                (check_questions if load is load_questions else check_passages)(res[1])
            elif cut is None and not damage:
                raise AssertionError(f"valid {fmt} document refused by {load.__name__}")
    finally:
        path.unlink()


# --------------------------------------------------------------------------- anything at all


@given(
    data=st.binary(max_size=600)
    | st.sampled_from(
        [
            b"",
            BOM,
            b"\n\n",
            b"\x1f\x8b\x08\x00",
            b"[",
            b"{",
            b"[]",
            b"{}",
            b'{"question": "q"}',
            b"id\ttext\n1\t",
            b"\xff\xfe{\x00",
        ]
    ),
    prefix=st.sampled_from([b"", BOM, b'{"question": "q", "answers": ["a"]}\n', b"id\ttext\ttitle\n"]),
    suffix=st.sampled_from([".jsonl", ".json", ".tsv", ".gz", ""]),
)
def test_random_bytes_never_crash(data, prefix, suffix):
    """Random bytes (after an optional valid start) through detection and both loaders."""
    path = _write(prefix + data, suffix)
    try:
        for load in (detect_format, load_questions, load_passages):
            res = outcome(load, path)
            if res != "error" and load is load_questions:
                check_questions(res[1])
            if res != "error" and load is load_passages:
                check_passages(res[1])
    finally:
        path.unlink()


def test_valid_gzip_and_missing_or_directory_paths(tmp_path):
    import gzip

    p = tmp_path / "q.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write('{"question": "q1", "answers": ["a"]}\n{"question": "q2", "answers": ["b"]}\n')
    assert [q.question for q in load_questions(p)] == ["q1", "q2"]
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(p.read_bytes()[:-12])  # a gzip stream cut short
    assert outcome(load_questions, bad) == "error"
    for load in (load_questions, load_passages):
        assert outcome(load, tmp_path / "absent.jsonl") == "error"
        assert outcome(load, tmp_path) == "error"


def test_regressions_found_by_this_suite(tmp_path):
    """Each of these failed before the fix in ragdistill.data (see the report of issue 8)."""
    # 1. a raw U+2028 inside a JSON string (ensure_ascii=False writers) made detection refuse a valid file
    p = tmp_path / "u2028.jsonl"
    p.write_text(
        json.dumps({"question": "who\u2028is x", "answers": ["a"]}, ensure_ascii=False)
        + "\n"
        + json.dumps({"question": "q2", "answers": ["b"]})
        + "\n",
        encoding="utf-8",
    )
    assert [q.question for q in load_questions(p)] == ["who\u2028is x", "q2"]
    # 2. a Latin-1 line in a UTF-8 file: the error named no line (only a byte offset in a block)
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(
        b'{"question":"q1","answers":["a"]}\n{"question":"q2","answers":["b"]}\n{"question":"caf\xe9","answers":["b"]}\n'
    )
    try:
        load_questions(p)
    except InputError as exc:
        assert exc.line == 3 and "line 3" in str(exc) and "UTF-8" in str(exc)
    else:
        raise AssertionError("latin-1 line accepted")
    # 3. a duplicate passage id: the error named no line
    p = tmp_path / "dup.jsonl"
    p.write_text('{"id":"1","text":"a"}\n{"id":"2","text":"b"}\n{"id":"1","text":"c"}\n')
    try:
        load_passages(p)
    except InputError as exc:
        assert exc.line == 3 and "first at line 1" in str(exc)
    else:
        raise AssertionError("duplicate passage id accepted")

"""Format detection from content, and the low-level readers (BOM, CRLF, gzip, quoted TSV)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ragdistill.data.formats import FORMATS, detect_format, get_format, resolve_format, split_tsv
from ragdistill.errors import ConfigError, InputError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


SQUAD = {"version": "1.1", "data": [{"title": "A_B", "paragraphs": [{"context": "c", "qas": []}]}]}
TRIVIA = {
    "Data": [{"Question": "q?", "QuestionId": "t1", "Answer": {"Aliases": ["x"], "NormalizedAliases": ["x"]}}],
    "Version": 1.0,
}
BIENC = {
    "question": "q",
    "answers": ["a"],
    "positive_ctxs": [{"title": "t", "text": "x a", "passage_id": "1"}],
    "negative_ctxs": [],
    "hard_negative_ctxs": [],
}

CASES = {
    "nq-open": ('{"question": "q", "answer": ["a"]}\n', "x.jsonl"),
    "qa-jsonl": ('{"question": "q", "answers": ["a"]}\n', "x.jsonl"),
    "qa-tsv": ("who is it?\t['a', 'b']\n", "x.tsv"),
    "triviaqa": (json.dumps(TRIVIA, indent=2), "x.json"),
    "squad": (json.dumps(SQUAD), "x.json"),
    "dpr-biencoder": (json.dumps([BIENC], indent=2), "x.json"),
    "dpr-tsv": ('id\ttext\ttitle\n1\t"Aaron ""A"" is"\tAaron\n', "psgs.tsv"),
    "passages-jsonl": ('{"id": "1", "title": "T", "text": "x"}\n', "c.jsonl"),
    "flashrag": ('{"id": "0", "contents": "\\"T\\"\\nx"}\n', "c.jsonl"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_detects_every_format(tmp_path, name):
    text, fname = CASES[name]
    assert detect_format(write(tmp_path / fname, text)) == name


@pytest.mark.parametrize("name", sorted(CASES))
def test_detection_accepts_bom_crlf_and_gzip(tmp_path, name):
    text, fname = CASES[name]
    crlf = text.replace("\n", "\r\n")
    assert detect_format(write(tmp_path / fname, "\ufeff" + crlf)) == name
    gz = tmp_path / (fname + ".gz")
    gz.write_bytes(gzip.compress(crlf.encode()))
    assert detect_format(gz) == name


def test_pretty_printed_squad_and_jsonl_bienc(tmp_path):
    assert detect_format(write(tmp_path / "s.json", json.dumps(SQUAD, indent=2))) == "squad"
    assert (
        detect_format(write(tmp_path / "b.jsonl", json.dumps(BIENC) + "\n" + json.dumps(BIENC) + "\n"))
        == "dpr-biencoder"
    )


def test_headerless_dpr_tsv_and_qa_tsv_header(tmp_path):
    assert detect_format(write(tmp_path / "p.tsv", "1\tsome text\tTitle\n")) == "dpr-tsv"
    assert detect_format(write(tmp_path / "q.tsv", "question\tanswers\nq\t['a']\n")) == "qa-tsv"


def test_unknown_and_empty_files_name_what_is_expected(tmp_path):
    with pytest.raises(InputError, match="match no known format.*nq-open"):
        detect_format(write(tmp_path / "u.jsonl", '{"foo": 1}\n'))
    with pytest.raises(InputError, match="empty"):
        detect_format(write(tmp_path / "e.jsonl", "\n\n"))
    with pytest.raises(InputError, match="line 1.*matches no known format"):
        detect_format(write(tmp_path / "u.txt", "just some prose\n"))
    with pytest.raises(InputError, match="not found"):
        detect_format(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="not a file"):
        detect_format(tmp_path)


def test_broken_first_jsonl_line_is_reported_with_its_line(tmp_path):
    path = write(tmp_path / "q.jsonl", '{"question": "q", "answers": [\n{"question": "q", "answers": ["a"]}\n')
    with pytest.raises(InputError, match=r"q\.jsonl, line 1: malformed JSON"):
        detect_format(path)


def test_invalid_whole_json_names_the_line(tmp_path):
    path = write(tmp_path / "s.json", '{\n  "data": [\n    {"title": "x",,}\n  ]\n}\n')
    with pytest.raises(InputError) as err:
        # detected as squad from its keys; the loader then fails on the syntax error
        from ragdistill.data.questions import load_questions

        load_questions(path)
    assert "s.json, line 3" in str(err.value)


def test_not_utf8_is_an_input_error(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"question": "caf\u00e9", "answers": ["a"]}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        detect_format(path)


def test_get_format_aliases_and_unknown():
    assert get_format("psgs_w100").name == "dpr-tsv"
    assert get_format("NQ-Open").name == "nq-open"
    assert get_format("generic").name == "qa-jsonl"
    with pytest.raises(ConfigError, match="format.*unknown format 'nope'"):
        get_format("nope")
    assert set(FORMATS["squad"].kinds) == {"questions", "passages"}


def test_resolve_format_names_what_was_expected(tmp_path):
    corpus = write(tmp_path / "c.jsonl", CASES["passages-jsonl"][0])
    with pytest.raises(
        InputError, match="expected a question set .*nq-open.*looks like a corpus in format 'passages-jsonl'"
    ):
        resolve_format(corpus, None, "questions")
    qs = write(tmp_path / "q.jsonl", CASES["nq-open"][0])
    with pytest.raises(InputError, match="expected a corpus .*was given as a question set"):
        resolve_format(qs, "qa-jsonl", "passages")


def test_split_tsv_unquotes_like_dpr():
    assert split_tsv('1\t"Aaron ( or ; ""Ahärôn"") is"\tAaron') == ["1", 'Aaron ( or ; "Ahärôn") is', "Aaron"]
    assert split_tsv('2\t"has\ta tab"\tT') == ["2", "has\ta tab", "T"]
    assert split_tsv("q\t['a', \"b\"]") == ["q", "['a', \"b\"]"]


@pytest.mark.parametrize("content,line", [(b"{", 1), (b"{\n", 1), (b"{\r\n\r\n\n", 1), (b'[{"a": 1},\n  {"b":\n\n', 2)])
def test_truncated_json_names_its_last_line_with_content(tmp_path, content, line):
    """A document cut short is reported at the line where it stops, not at the blank line after it."""
    from ragdistill.data.formats import load_json

    path = tmp_path / "cut.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"line {line}: .*truncated") as info:
        load_json(path)
    assert info.value.line == line and str(path) in str(info.value)

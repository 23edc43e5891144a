"""Corpus loaders: every format, chunking, streaming in batches, and bad input."""

from __future__ import annotations

import collections.abc
import json
from pathlib import Path

import pytest

from ragdistill.data.corpus import (
    chunk_passage,
    count_passages,
    iter_passage_batches,
    iter_passages,
    load_passages,
    split_flashrag_contents,
)
from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_dpr_tsv_with_header_and_quoted_text(tmp_path):
    p = write(
        tmp_path / "psgs_w100.tsv",
        'id\ttext\ttitle\n1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n2\tplain text\t"Quoted, Title"\n',
    )
    assert load_passages(p) == [
        Passage("1", "Aaron", 'Aaron Aaron ( or ; "Ahärôn") is a prophet'),
        Passage("2", "Quoted, Title", "plain text"),
    ]


def test_dpr_tsv_columns_by_header_name_and_crlf_bom(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_bytes(b"\xef\xbb\xbfid\ttitle\ttext\r\nx1\tT\tsome text\r\n")
    assert load_passages(p) == [Passage("x1", "T", "some text")]


def test_passages_jsonl_and_int_ids(tmp_path):
    p = write(tmp_path / "c.jsonl", '{"id": 3, "title": "T", "text": " x "}\n{"id": "b", "text": "y"}\n')
    assert load_passages(p) == [Passage("3", "T", "x"), Passage("b", "", "y")]


def test_flashrag_title_is_first_line_without_quotes(tmp_path):
    recs = [
        {"id": "0", "contents": '"Aaron"\nAaron is a prophet.\nSecond line.'},
        {"id": "1", "contents": "no title line"},
    ]
    p = write(tmp_path / "wiki.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    assert load_passages(p) == [
        Passage("0", "Aaron", "Aaron is a prophet.\nSecond line."),
        Passage("1", "", "no title line"),
    ]
    assert split_flashrag_contents('"A "quoted" title"\nbody') == ('A "quoted" title', "body")


def test_squad_paragraphs_titles_and_ids(tmp_path):
    doc = {
        "data": [
            {"title": "Super_Bowl_50", "paragraphs": [{"context": "c0", "qas": []}, {"context": "c1", "qas": []}]},
            {"title": "Warsaw", "paragraphs": [{"context": "w0", "qas": []}]},
        ]
    }
    p = write(tmp_path / "s.json", json.dumps(doc))
    assert load_passages(p) == [
        Passage("0-0", "Super Bowl 50", "c0"),
        Passage("0-1", "Super Bowl 50", "c1"),
        Passage("1-0", "Warsaw", "w0"),
    ]


def test_dpr_biencoder_ctxs_deduplicated_by_passage_id(tmp_path):
    def ctx(i, t="t"):
        return {"title": t, "text": f"text {i}", "passage_id": str(i)}

    recs = [
        {
            "question": "q1",
            "answers": ["a"],
            "positive_ctxs": [ctx(1)],
            "negative_ctxs": [ctx(2), ctx(3)],
            "hard_negative_ctxs": [ctx(1)],
        },
        {
            "question": "q2",
            "answers": ["b"],
            "positive_ctxs": [ctx(3)],
            "negative_ctxs": [],
            "hard_negative_ctxs": [ctx(4), {"title": "n", "text": "no id"}],
        },
    ]
    for p in (
        write(tmp_path / "b.jsonl", "".join(json.dumps(r) + "\n" for r in recs)),
        write(tmp_path / "b.json", json.dumps(recs, indent=2)),
    ):
        ids = [x.id for x in load_passages(p)]
        assert ids[:4] == ["1", "2", "3", "4"] and ids[4].startswith("sha1-") and len(ids) == 5


def test_chunking_keeps_title_and_makes_unique_ids(tmp_path):
    p = Passage("d", "Title", " ".join(f"w{i}" for i in range(250)))
    chunks = chunk_passage(p, 100)
    assert [c.id for c in chunks] == ["d#0", "d#1", "d#2"]
    assert all(c.title == "Title" for c in chunks)
    assert [len(c.text.split()) for c in chunks] == [100, 100, 50]
    assert " ".join(c.text for c in chunks) == p.text
    assert chunk_passage(Passage("s", "T", "short text"), 100) == [Passage("s", "T", "short text")]
    f = write(tmp_path / "c.jsonl", json.dumps({"id": "d", "title": "Title", "text": p.text}) + "\n")
    assert count_passages(f, chunk_words=100) == 3 and count_passages(f) == 1
    with pytest.raises(ConfigError, match="chunk_words"):
        iter_passages(f, chunk_words=0)


def test_streaming_is_lazy_and_batched(tmp_path):
    # 30,000 lines and a broken last line: the first batches arrive without reading it.
    lines = (
        ["id\ttext\ttitle"]
        + [f"{i}\tpassage number {i}\tT{i % 7}" for i in range(30_000)]
        + ["broken line without tabs"]
    )
    p = write(tmp_path / "big.tsv", "\n".join(lines) + "\n")
    it = iter_passages(p)
    assert isinstance(it, collections.abc.Iterator) and not isinstance(it, (list, tuple))
    assert next(it) == Passage("0", "T0", "passage number 0")  # read lazily: the broken last line is not reached
    assert it.locate(29_999).line == 30_001  # and it can say where a passage came from
    batches = iter_passage_batches(p, batch_size=1000)
    first = next(batches)
    assert len(first) == 1000 and first[0] == Passage("0", "T0", "passage number 0")
    with pytest.raises(InputError, match=r"big\.tsv, line 30002: expected tab-separated fields"):
        for _ in batches:
            pass


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"id": "1", "text": "ok"}\n{"id": "2", "text": ""}\n', "line 2: empty passage"),
        ('{"id": "1", "text": "ok"}\n{"text": "x"}\n', "line 2: missing field 'id'"),
        ('{"id": "1", "text": "ok"}\n{"id": "2", "text": 5}\n', "line 2: 'text' must be a string"),
        ('{"id": "1", "text": "ok"}\n{"id": [1], "text": "x"}\n', "line 2: 'id' must be a string or an integer"),
        ('{"id": "1", "text": "ok"}\n{"id": "2", "text": "x"\n', "line 2: malformed JSON"),
    ],
)
def test_bad_jsonl_corpus_lines(tmp_path, text, message):
    p = write(tmp_path / "c.jsonl", text)
    with pytest.raises(InputError, match=r"c\.jsonl, " + message):
        load_passages(p, format="passages-jsonl")


def test_bad_tsv_and_squad_and_bienc_records(tmp_path):
    p = write(tmp_path / "p.tsv", "id\ttext\ttitle\n1\tx\tT\n\tno id\tT\n")
    with pytest.raises(InputError, match=r"p\.tsv, line 3: empty passage id"):
        load_passages(p)
    s = write(
        tmp_path / "s.json", json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "c"}, {"qas": []}]}]})
    )
    with pytest.raises(InputError, match=r"s\.json: data\[0\]\.paragraphs\[1\]: missing field 'context'"):
        load_passages(s)
    b = write(
        tmp_path / "b.jsonl",
        json.dumps({"question": "q", "answers": ["a"], "positive_ctxs": [{"title": "t", "text": ""}]}) + "\n",
    )
    with pytest.raises(InputError, match=r"b\.jsonl, line 1: positive_ctxs\[0\]: empty passage"):
        load_passages(b)


def test_questions_given_as_corpus_and_duplicate_ids(tmp_path):
    q = write(tmp_path / "q.jsonl", '{"question": "q", "answer": ["a"]}\n')
    with pytest.raises(
        InputError, match=r"expected a corpus \(passages\) .*looks like a question set in format 'nq-open'"
    ):
        iter_passages(q)  # raises at the call, before iterating
    d = write(tmp_path / "d.jsonl", '{"id": "1", "text": "a"}\n{"id": "1", "text": "b"}\n')
    with pytest.raises(InputError, match="duplicate passage id '1'"):
        load_passages(d)


def test_gzip_corpus_streams(tmp_path):
    import gzip

    p = tmp_path / "psgs_w100.tsv.gz"
    p.write_bytes(gzip.compress(b'id\ttext\ttitle\r\n1\t"a ""b"" c"\tT\r\n2\td\tU\r\n'))
    assert load_passages(p) == [Passage("1", "T", 'a "b" c'), Passage("2", "U", "d")]

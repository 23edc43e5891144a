"""Question-set loaders: every format, ids, answers, and bad input naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.data.questions import iter_questions, load_questions
from ragdistill.data.types import Question
from ragdistill.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def test_nq_open_ids_from_stem_and_line(tmp_path):
    p = jsonl(
        tmp_path / "NQ-open.dev.jsonl",
        [{"question": " who? ", "answer": ["A", "B", "A"]}, {"question": "when?", "answer": ["1972"]}],
    )
    qs = load_questions(p)
    assert qs == [Question("NQ-open.dev-1", "who?", ["A", "B"]), Question("NQ-open.dev-2", "when?", ["1972"])]


def test_generic_jsonl_uses_id_field_and_skips_blank_lines(tmp_path):
    p = write(
        tmp_path / "g.jsonl", '{"id": 7, "question": "q1", "answers": ["a"]}\n\n{"question": "q2", "answers": "b"}\n'
    )
    assert load_questions(p) == [Question("7", "q1", ["a"]), Question("g-3", "q2", ["b"])]


def test_generic_json_array_of_records(tmp_path):
    p = write(
        tmp_path / "arr.json", json.dumps([{"question": "q1", "answers": ["a"]}, {"question": "q2", "answers": ["b"]}])
    )
    assert [q.id for q in load_questions(p)] == ["arr-0", "arr-1"]


def test_dpr_tsv_python_literal_answers(tmp_path):
    p = write(tmp_path / "nq-test.qa.csv", 'who sings\t[\'Linda Davis\', "O\'Neil"]\n"quoted ""q"""\t[\'x\']\n')
    qs = load_questions(p, format="qa-tsv")
    assert qs[0] == Question("nq-test.qa-1", "who sings", ["Linda Davis", "O'Neil"])
    assert qs[1].question == 'quoted "q"'


def test_dpr_tsv_literal_eval_never_runs_code(tmp_path):
    p = write(tmp_path / "q.tsv", "q\t__import__('os').system('echo hacked')\n")
    with pytest.raises(InputError, match=r"q\.tsv, line 1: answers column .* not a list literal"):
        load_questions(p, format="qa-tsv")


def test_triviaqa_official_aliases_deduplicated_in_order(tmp_path):
    doc = {
        "Data": [
            {
                "Question": "Which musical?",
                "QuestionId": "tc_1",
                "Answer": {
                    "Value": "Sunset Boulevard",
                    "Aliases": ["Sunset Blvd", "Sunset Boulevard"],
                    "NormalizedAliases": ["sunset blvd", "sunset boulevard"],
                },
            }
        ]
    }
    p = write(tmp_path / "t.json", json.dumps(doc, indent=2))
    (q,) = load_questions(p)
    assert q == Question(
        "tc_1", "Which musical?", ["Sunset Boulevard", "Sunset Blvd", "sunset blvd", "sunset boulevard"]
    )


def test_triviaqa_missing_answer_names_record(tmp_path):
    p = write(
        tmp_path / "t.json",
        json.dumps({"Data": [{"Question": "q", "Answer": {"Aliases": ["a"]}}, {"Question": "q2"}]}, indent=1),
    )
    with pytest.raises(InputError, match=r"t\.json: Data\[1\]: missing field 'Answer'"):
        load_questions(p)


def test_squad_questions_answers_deduplicated(tmp_path):
    doc = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "ctx",
                        "qas": [
                            {
                                "id": "a1",
                                "question": "q?",
                                "answers": [
                                    {"text": "x", "answer_start": 0},
                                    {"text": "x", "answer_start": 0},
                                    {"text": "y"},
                                ],
                            },
                            {"id": "a2", "question": "unanswerable?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ]
    }
    p = write(tmp_path / "s.json", json.dumps(doc))
    assert load_questions(p) == [Question("a1", "q?", ["x", "y"])]


def test_dpr_biencoder_questions(tmp_path):
    rec = {
        "question": "who?",
        "answers": ["Linda"],
        "positive_ctxs": [{"title": "t", "text": "Linda", "passage_id": "1"}],
    }
    p = jsonl(tmp_path / "b.jsonl", [rec, rec])
    assert [q.id for q in load_questions(p)] == ["b-1", "b-2"]


BAD_LINES = [
    ('{"question": "q", "answers": ["a"]', r"line 2: malformed JSON"),
    ('{"answers": ["a"]}', r"line 2: missing field 'question'"),
    ('{"question": "   ", "answers": ["a"]}', r"line 2: empty question"),
    ('{"question": "q", "answers": []}', r"line 2: empty answer list"),
    ('{"question": "q"}', r"line 2: missing field 'answers'"),
    ('{"question": "q", "answers": ["a", 3]}', r"line 2: answer 2 .* is not a string"),
    ('{"question": "q", "answers": [""]}', r"line 2: answer 1 .* is empty"),
    ('{"question": 5, "answers": ["a"]}', r"line 2: 'question' must be a string"),
    ('["q", ["a"]]', r"line 2: expected a JSON object"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, message):
    p = write(tmp_path / "bad.jsonl", '{"question": "fine", "answers": ["ok"]}\n' + line + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl, " + message) as err:
        load_questions(p)
    assert err.value.line == 2 and err.value.path.endswith("bad.jsonl")


def test_bad_line_with_bom_and_crlf_still_counts_lines(tmp_path):
    p = tmp_path / "w.jsonl"
    p.write_bytes(
        b'\xef\xbb\xbf{"question": "a", "answer": ["x"]}\r\n{"question": "b", "answer": ["y"]}\r\n{"question": "c", "answer": []}\r\n'
    )
    with pytest.raises(InputError, match=r"line 3: empty answer list"):
        load_questions(p)
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(b'\xef\xbb\xbf{"question": "a", "answer": ["x"]}\r\n')
    assert load_questions(ok) == [Question("ok-1", "a", ["x"])]


@pytest.mark.parametrize(
    "line,message",
    [
        ("no tab here", "line 2: expected question<TAB>answers"),
        ("q\t[]", "line 2: empty answer list"),
        ("q\t'a'", "line 2: answers column .* must be a list"),
        ("q\t[1, 2]", "line 2: answer 1 .* is not a string"),
        ("\t['a']", "line 2: empty question"),
    ],
)
def test_bad_tsv_line(tmp_path, line, message):
    p = write(tmp_path / "bad.tsv", "fine\t['ok']\n" + line + "\n")
    with pytest.raises(InputError, match=r"bad\.tsv, " + message):
        load_questions(p, format="qa-tsv")


def test_squad_bad_record_names_its_path(tmp_path):
    qas = [
        {"id": "x", "question": "ok", "answers": [{"text": "a"}]},
        {"id": "y", "question": "", "answers": [{"text": "a"}]},
    ]
    doc = {
        "data": [
            {"title": "T", "paragraphs": [{"context": "c", "qas": []}]},
            {"title": "U", "paragraphs": [{"context": "c", "qas": []}, {"context": "d", "qas": qas}]},
        ]
    }
    p = write(tmp_path / "s.json", json.dumps(doc))
    with pytest.raises(InputError, match=r"s\.json: data\[1\]\.paragraphs\[1\]\.qas\[1\]: empty question"):
        load_questions(p)


def test_duplicate_ids_and_empty_files(tmp_path):
    p = jsonl(
        tmp_path / "d.jsonl",
        [{"id": "a", "question": "q", "answers": ["x"]}, {"id": "a", "question": "r", "answers": ["y"]}],
    )
    with pytest.raises(InputError, match=r"line 2: duplicate question id 'a' \(first at line 1\)"):
        load_questions(p)
    empty = write(tmp_path / "e.json", json.dumps({"data": []}))
    with pytest.raises(InputError, match="holds no questions"):
        load_questions(empty)


def test_corpus_given_as_questions_names_what_was_expected(tmp_path):
    p = jsonl(tmp_path / "corpus.jsonl", [{"id": "1", "title": "T", "text": "x"}])
    with pytest.raises(InputError, match=r"corpus\.jsonl: expected a question set .* looks like a corpus"):
        load_questions(p)


def test_iter_questions_is_lazy(tmp_path):
    p = write(tmp_path / "lazy.jsonl", '{"question": "a", "answers": ["x"]}\n' * 3 + "{broken\n")
    it = iter_questions(p)
    assert next(it).question == "a"  # the broken last line is not read yet
    with pytest.raises(InputError, match="line 4"):
        list(it)

"""`ragdistill data inspect` and `ragdistill data demo` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragdistill.cli.main import main
from tests.conftest import shared_file


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_squad_reports_both_counts(capsys):
    path = shared_file("squad/dev-v1.1.json")
    code, out, _ = run(capsys, "data", "inspect", str(path))
    assert code == 0
    assert "format:    squad (detected)" in out and "question set and corpus" in out
    assert "passages:  2,067" in out and "questions: 10,570" in out
    assert "example passage:  id='0-0' title='Super Bowl 50'" in out


@pytest.mark.parametrize(
    "rel,key,count",
    [
        ("nq_open/NQ-open.dev.jsonl", "questions", 3610),
        ("triviaqa/trivia-unfiltered.dev.jsonl", "questions", 8837),
        ("dpr/nq-dev-biencoder-tiny.jsonl", "passages", 1504),
    ],
)
def test_inspect_real_files_json(capsys, rel, key, count):
    path = shared_file(rel)
    code, out, _ = run(capsys, "data", "inspect", str(path), "--json")
    assert code == 0
    assert json.loads(out)[key] == count


def test_inspect_fixture_with_format_override_and_chunking(tmp_path, capsys):
    p = tmp_path / "docs.jsonl"
    p.write_text(json.dumps({"id": "d", "title": "T", "text": " ".join(["w"] * 250)}) + "\n")
    code, out, _ = run(
        capsys, "data", "inspect", str(p), "--format", "passages-jsonl", "--chunk-words", "100", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["passages"] == 3 and not report["detected"] and report["example_passage"]["id"] == "d#0"


def test_malformed_jsonl_line_exits_2_naming_file_and_line(tmp_path, capsys):
    p = tmp_path / "broken.jsonl"
    p.write_text(
        '{"question": "a", "answers": ["x"]}\n{"question": "b", "answers": ["y"]}\n{"question": "c", "answers": [\n'
    )
    code, out, err = run(capsys, "data", "inspect", str(p))
    assert code == 2
    assert f"{p}, line 3: malformed JSON" in err and "Traceback" not in err


def test_wrong_format_and_unknown_format_exit_2(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "1", "title": "T", "text": "x"}\n')
    code, _, err = run(capsys, "data", "inspect", str(p), "--format", "nq-open")
    assert code == 2 and "line 1: missing field 'question'" in err
    code, _, err = run(capsys, "data", "inspect", str(p), "--format", "nope")
    assert code == 2 and "unknown format 'nope'" in err
    code, _, err = run(capsys, "data", "inspect", str(tmp_path / "absent.jsonl"))
    assert code == 2 and "file not found" in err


def test_demo_writes_loadable_world_and_is_deterministic(tmp_path, capsys):
    small = ["--countries", "4", "--people", "4", "--companies", "3", "--rivers", "3", "--inventions", "3"]
    code, out, _ = run(capsys, "data", "demo", "--out", str(tmp_path / "a"), "--seed", "3", *small)
    assert code == 0 and "train.jsonl" in out
    run(capsys, "data", "demo", "--out", str(tmp_path / "b"), "--seed", "3", *small)
    names = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert names == [
        "README.md",
        "corpus.jsonl",
        "corpus.tsv",
        "dev.jsonl",
        "manifest.json",
        "test.jsonl",
        "train.jsonl",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path / "a" / "corpus.tsv"), "--json")
    assert code == 0 and json.loads(out)["format"] == "dpr-tsv"


def test_demo_bad_size_exits_2_and_writes_nothing(tmp_path, capsys):
    code, _, err = run(capsys, "data", "demo", "--out", str(tmp_path / "d"), "--questions-per-fact", "9")
    assert code == 2 and "questions_per_fact" in err
    assert not (tmp_path / "d").exists()


def test_help_explains_options():
    proc = subprocess.run(
        [sys.executable, "-m", "ragdistill", "data", "inspect", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--format" in proc.stdout and "dpr-biencoder" in proc.stdout

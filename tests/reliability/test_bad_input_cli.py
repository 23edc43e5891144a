"""The CLI's file arguments under bad input: exit status 2, a message naming file and line, no traceback,
no partial output.

The expected outcome of each generated file comes from the library loader (already checked
by test_bad_input_loaders.py): where it raises an InputError on line L, the command must exit
with 2 and print the file and "line L" on stderr; where the file is valid the command succeeds.
Commands run in-process through `ragdistill.cli.main.main` (any exception other than a
`RagdistillError` escapes it and fails the test: that is the traceback a user would see);
one test runs the real executable to check the exit status and stderr end to end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragdistill.cli.main import main
from ragdistill.data import load_passages, load_questions
from ragdistill.errors import RagdistillError
from tests.reliability.conftest import count, run_cli
from tests.reliability.test_bad_input_loaders import BOM, _lines_bytes, corpus_case, qa_jsonl_case


def expected(load, path: Path) -> tuple[str, RagdistillError | None]:
    try:
        load(path)
    except RagdistillError as exc:
        return "error", exc
    return "ok", None


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    count("bad-input cases generated")
    return code, out, err


def check_refused(code: int, err: str, path: Path, exc: RagdistillError, outputs: list[Path]) -> None:
    assert code == 2, f"exit {code}, stderr: {err[-500:]}"
    assert "Traceback" not in err
    assert str(path) in err, err
    line = getattr(exc, "line", None)
    if line is not None:
        assert f"line {line}" in err, err
    for out in outputs:  # nothing half-written left behind
        assert not out.exists() or (out.is_dir() and not any(p.is_file() for p in out.rglob("*"))), (
            f"partial output {out}"
        )


@pytest.fixture(scope="module")
def tiny_index(tiny_models, tiny_world, tmp_path_factory) -> Path:
    from ragdistill.data.corpus import iter_passages
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    out = tmp_path_factory.mktemp("cli_index") / "index"
    # default settings: `retrieve` without --retriever rebuilds the retriever from its name alone
    retriever = BiEncoderRetriever.from_pretrained(tiny_models["retriever"])
    PassageIndex.build(iter_passages(tiny_world["corpus"]), retriever, out, progress=False).close()
    return out


@given(case=qa_jsonl_case(), bom=st.booleans(), crlf=st.booleans())
@settings(max_examples=25)
def test_question_file_arguments(case, bom, crlf, tmp_path_factory, capsys, tiny_index):
    """`data inspect` and `retrieve --questions` on damaged question files."""
    _, lines, _, _, latin1, _, _ = case
    work = tmp_path_factory.mktemp("cliq")
    path = work / "questions.jsonl"
    path.write_bytes(_lines_bytes(lines, bom=bom, crlf=crlf, latin1_line=latin1))
    status, exc = expected(load_questions, path)

    code, out, err = run_main(capsys, ["data", "inspect", str(path)])
    if status == "ok":
        assert code == 0, err
    else:
        check_refused(code, err, path, exc, [])

    dest = work / "retrieved.jsonl"
    code, out, err = run_main(
        capsys,
        [
            "retrieve",
            "--index",
            str(tiny_index),
            "--questions",
            str(path),
            "--out",
            str(dest),
            "--k",
            "2",
            "--ks",
            "1,2",
            "--no-progress",
            "--no-verify",
        ],
    )
    if status == "ok":
        assert code == 0, err
        assert dest.is_file()
    else:
        check_refused(code, err, path, exc, [dest])
    shutil.rmtree(work, ignore_errors=True)


@given(case=corpus_case(), bom=st.booleans(), crlf=st.booleans())
@settings(max_examples=25)
def test_corpus_file_arguments(case, bom, crlf, tmp_path_factory, capsys, tiny_models):
    """`data inspect`, `index --corpus` and `scores --passages` on damaged corpora."""
    _, lines, _, _, latin1, fmt = case
    work = tmp_path_factory.mktemp("clic")
    path = work / ("corpus.tsv" if fmt == "dpr-tsv" else "corpus.jsonl")
    path.write_bytes(_lines_bytes(lines, bom=bom, crlf=crlf, latin1_line=latin1))
    status, exc = expected(load_passages, path)

    code, out, err = run_main(capsys, ["data", "inspect", str(path)])
    if status == "ok":
        assert code == 0, err
    elif "duplicate" not in str(exc):  # inspect streams and counts: it does not check id uniqueness
        check_refused(code, err, path, exc, [])

    dest = work / "index"
    code, out, err = run_main(
        capsys,
        [
            "index",
            "--corpus",
            str(path),
            "--out",
            str(dest),
            "--retriever",
            tiny_models["retriever"],
            "--max-length",
            "32",
            "--no-progress",
        ],
    )
    if status == "ok":
        assert code == 0, err
        assert (dest / "manifest.json").is_file()
    else:  # duplicates included: the index store refuses them while building, naming the file and line
        check_refused(code, err, path, exc, [dest])

    if fmt == "passages-jsonl":  # `scores` reads JSONL passages itself (ids optional)
        dest = work / "scores.json"
        code, out, err = run_main(
            capsys,
            [
                "scores",
                "--reader",
                tiny_models["reader"],
                "--kind",
                "decoder",
                "--question",
                "who?",
                "--answer",
                "x",
                "--passages",
                str(path),
                "--max-prompt-tokens",
                "128",
                "--device",
                "cpu",
                "--out",
                str(dest),
                "--json",
            ],
        )
        if status == "error" and ("duplicate" in str(exc) or "'id'" in str(exc)):
            pass  # ids are optional there, so duplicates/missing ids are accepted
        elif status == "ok":
            assert code == 0, err
        else:
            check_refused(code, err, path, exc, [dest])
    shutil.rmtree(work, ignore_errors=True)


@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", BOM, b"train:\n  steps: 3\n", b"{", b"- a\n"]))
@settings(max_examples=30)
def test_config_file_argument(data, prefix, tmp_path_factory, capsys):
    """`train --config` with random bytes: refused (exit 2, file named) before any output is written."""
    work = tmp_path_factory.mktemp("clit")
    path = work / "config.yaml"
    path.write_bytes(prefix + data)
    out = work / "run"
    code, _, err = run_main(
        capsys, ["train", "--config", str(path), "--out", str(out), "--no-progress", "--set", "train.steps=0"]
    )
    assert code == 2, err
    assert "Traceback" not in err and str(path) in err, err
    assert not out.exists()
    shutil.rmtree(work, ignore_errors=True)


def test_missing_files_and_directories(capsys, tmp_path, tiny_index):
    missing = tmp_path / "absent.jsonl"
    for argv in (
        ["data", "inspect", str(missing)],
        ["retrieve", "--index", str(tiny_index), "--questions", str(missing), "--out", str(tmp_path / "o.jsonl")],
        [
            "retrieve",
            "--index",
            str(tmp_path / "no-index"),
            "--questions",
            str(missing),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        ["index", "--corpus", str(missing), "--out", str(tmp_path / "idx")],
        ["scores", "--question", "q", "--answer", "a", "--passages", str(missing)],
        ["train", "--config", str(missing), "--out", str(tmp_path / "run")],
        ["data", "inspect", str(tmp_path)],
    ):
        code, _, err = run_main(capsys, argv)
        assert code == 2 and "Traceback" not in err and "error:" in err, (argv, err)
    assert not any(tmp_path.iterdir())


def test_real_executable_exit_status_and_message(tmp_path):
    """End to end: the `ragdistill` process exits 2 with one line naming file and line, no traceback."""
    bad = tmp_path / "q.jsonl"
    bad.write_bytes(b'{"question": "q1", "answers": ["a"]}\r\n{"question": "q2", "answers": [3]}\r\n')
    res = run_cli("data", "inspect", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{bad}, line 2" in res.stderr and "not a string" in res.stderr
    mixed = tmp_path / "mixed.tsv"
    mixed.write_bytes("id\ttext\ttitle\n1\tok\tT\n2\tcaf\xe9\tT\n".encode("latin-1"))
    res = run_cli("data", "inspect", str(mixed))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{mixed}, line 3" in res.stderr and "UTF-8" in res.stderr
    count("bad-input cases generated", 2)


def test_scores_passages_with_bom_and_latin1(tmp_path, capsys, tiny_models):
    """Regression: `scores --passages x.jsonl` refused a BOM and crashed (UnicodeDecodeError) on Latin-1 bytes."""
    p = tmp_path / "p.jsonl"
    p.write_bytes(BOM + b'{"id": "a", "text": "Paris is in France."}\r\n{"id": "b", "text": "Rome."}\r\n')
    base = [
        "scores",
        "--reader",
        tiny_models["reader"],
        "--kind",
        "decoder",
        "--question",
        "where?",
        "--answer",
        "France",
        "--device",
        "cpu",
        "--json",
    ]
    code, out, err = run_main(capsys, [*base, "--passages", str(p)])
    assert code == 0, err
    p.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    code, out, err = run_main(capsys, [*base, "--passages", str(p)])
    assert code == 2 and f"{p}, line 2" in err and "Traceback" not in err

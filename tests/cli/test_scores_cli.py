"""`ragdistill scores` end to end: a tiny saved reader (fast) and the bundled SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest

from ragdistill.cli.main import main

PASSAGES = [
    {"id": "everest", "title": "Mount Everest", "text": "Mount Everest is Earth's highest mountain above sea level."},
    {"id": "canberra", "title": "Canberra", "text": "Canberra is the capital city of Australia."},
    {"title": "Pasta", "text": "Pasta is made from an unleavened dough of wheat flour mixed with water or eggs."},
]
QUESTION = "What is the capital city of Australia?"


@pytest.fixture()
def passages_file(tmp_path):
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES))
    return path


@pytest.fixture(scope="module")
def tiny_reader_dir(tmp_path_factory):
    from ragdistill.readers.decoder import DecoderReader
    from tests.readers.test_decoder_reference import tiny_model, tokenizer

    out = tmp_path_factory.mktemp("reader") / "tiny"
    DecoderReader(tiny_model("llama"), tokenizer()).save_pretrained(out)
    return str(out)


def test_json_output_attention(tiny_reader_dir, passages_file, tmp_path, capsys):
    out = tmp_path / "scores.json"
    rc = main(
        [
            "scores",
            "--reader",
            tiny_reader_dir,
            "--question",
            QUESTION,
            "--answer",
            "Canberra",
            "--passages",
            str(passages_file),
            "--layers",
            "0,-1",
            "--tau-gold",
            "0.1",
            "--json",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["kind"] == "decoder" and printed["options"]["layers"] == [0, -1]
    recs = printed["passages"]
    assert [r["id"] for r in recs][:2] == ["everest", "canberra"] and len(recs) == 3
    assert sum(r["target"] for r in recs) == pytest.approx(1.0, abs=1e-5)
    assert all(r["score"] > 0 and len(r["top_tokens"]) == 5 for r in recs)
    # target is softmax(S / 0.1)
    import math

    z = [math.exp(r["score"] / 0.1) for r in recs]
    assert [r["target"] for r in recs] == pytest.approx([x / sum(z) for x in z], rel=1e-4)


def test_table_and_perplexity(tiny_reader_dir, passages_file, capsys):
    rc = main(
        [
            "scores",
            "--reader",
            tiny_reader_dir,
            "--question",
            QUESTION,
            "--answer",
            "Canberra",
            "--passages",
            str(passages_file),
            "--signal",
            "perplexity",
            "--k",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| # | id | title | S_i | p_gold |" in out and "canberra" in out and "Pasta" not in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--passages", "missing.jsonl"], "does not exist"),
        (["--layers", "1,a"], "--layers"),
        (["--tau-gold", "0"], "--tau-gold"),
        (["--signal", "perplexity", "--no-value-norm"], "attention signal only"),
        (["--k", "0"], "--k"),
    ],
)
def test_user_errors_exit_2(tiny_reader_dir, passages_file, capsys, argv, match):
    base = [
        "scores",
        "--reader",
        tiny_reader_dir,
        "--question",
        QUESTION,
        "--answer",
        "x",
        "--passages",
        str(passages_file),
    ]
    assert main(base + argv) == 2
    assert match in capsys.readouterr().err


def test_bad_jsonl_names_the_line(tiny_reader_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PASSAGES[0]) + "\n{not json\n")
    assert (
        main(["scores", "--reader", tiny_reader_dir, "--question", QUESTION, "--answer", "x", "--passages", str(bad)])
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "2" in err


@pytest.mark.slow
def test_bundled_reader(passages_file, capsys):
    rc = main(["scores", "--question", QUESTION, "--answer", "Canberra", "--passages", str(passages_file), "--json"])
    assert rc == 0
    recs = json.loads(capsys.readouterr().out)["passages"]
    assert max(recs, key=lambda r: r["score"])["id"] == "canberra"
    assert "Canberra" in [t for t, _ in recs[1]["top_tokens"]]

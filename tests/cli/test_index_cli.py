"""`ragdistill index` and `ragdistill retrieve` end to end on a tiny saved retriever."""

from __future__ import annotations

import json

import pytest
import torch

from ragdistill.cli.main import main
from ragdistill.retrieval.index import PassageIndex
from ragdistill.retrieval.metrics import has_answer
from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is far faster on a busy CI box
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    retriever_dir = d / "retriever"
    make_tiny_retriever(seed=0).save_pretrained(retriever_dir)
    passages = synthetic_passages(40, seed=0)
    corpus = d / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    questions = d / "questions.jsonl"
    rows = [
        {"id": f"q{i}", "question": "what about " + " ".join(p.text.split()[:2]) + "?", "answers": [p.text.split()[-1]]}
        for i, p in enumerate(passages[:12])
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "dir": d,
        "retriever": retriever_dir,
        "corpus": corpus,
        "questions": questions,
        "passages": passages,
        "rows": rows,
    }


def build(world, out, *extra):
    return main(
        [
            "index",
            "--corpus",
            str(world["corpus"]),
            "--retriever",
            str(world["retriever"]),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "8",
            *extra,
        ]
    )


def test_index_then_retrieve(world, tmp_path, capsys):
    out = tmp_path / "idx"
    assert build(world, out) == 0
    assert "indexed 40 passages" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passages"] == 40 and manifest["corpus"]["sha256"] and manifest["faiss_type"] == "Flat"

    res = tmp_path / "retrieved.jsonl"
    code = main(
        [
            "retrieve",
            "--index",
            str(out),
            "--questions",
            str(world["questions"]),
            "--k",
            "3",
            "--ks",
            "1,3,10",
            "--out",
            str(res),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["questions"] == 12 and {"hr@1", "hr@3", "hr@10"} <= metrics.keys()
    assert metrics["hr@1"] <= metrics["hr@3"] <= metrics["hr@10"]
    records = [json.loads(line) for line in res.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in world["rows"]]
    by_id = {p.id: p for p in world["passages"]}
    for rec in records:
        assert len(rec["passages"]) == 3 and [p["rank"] for p in rec["passages"]] == [1, 2, 3]
        assert all(p["title"] == by_id[p["id"]].title for p in rec["passages"])
        assert rec["passages"][0]["score"] >= rec["passages"][-1]["score"]
        for p in rec["passages"]:  # hit flags are the DPR match of the passage text
            assert p["has_answer"] == has_answer(by_id[p["id"]].text, rec["answers"])
    # HR@3 recomputed from the written flags (the file holds the top 3)
    assert metrics["hr@3"] == pytest.approx(sum(any(p["has_answer"] for p in r["passages"]) for r in records) / 12)

    # the Markdown table, a seeded subset, the substring match
    code = main(
        [
            "retrieve",
            "--index",
            str(out),
            "--questions",
            str(world["questions"]),
            "--limit",
            "5",
            "--seed",
            "3",
            "--match",
            "substring",
            "--out",
            str(tmp_path / "r2.jsonl"),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "| questions | HR@1 | HR@5 | HR@20 |" in text and "| 5 |" in text
    assert len((tmp_path / "r2.jsonl").read_text().splitlines()) == 5


def test_retrieve_uses_the_settings_the_index_was_built_with(world, tmp_path, capsys):
    """An index built with --pooling cls --max-length 16 is queried with CLS pooling and 16 tokens too."""
    import shutil

    encoder = tmp_path / "plain"  # a plain Hugging Face encoder directory (the saved one without its ragdistill config)
    shutil.copytree(world["retriever"], encoder)
    (encoder / "retriever_config.json").unlink()
    out = tmp_path / "idx_cls"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(world["corpus"]),
                "--retriever",
                str(encoder),
                "--pooling",
                "cls",
                "--max-length",
                "16",
                "--out",
                str(out),
                "--no-progress",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    built_with = json.loads((out / "manifest.json").read_text())["retriever"]
    assert built_with["pooling"] == "cls" and built_with["max_length"] == 16
    capsys.readouterr()
    code = main(
        [
            "retrieve",
            "--index",
            str(out),
            "--questions",
            str(world["questions"]),
            "--k",
            "3",
            "--out",
            str(tmp_path / "r.jsonl"),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["questions"] == 12
    # an explicit --retriever with other settings is still refused by the index's fingerprint check
    code = main(
        [
            "retrieve",
            "--index",
            str(out),
            "--questions",
            str(world["questions"]),
            "--retriever",
            str(encoder),
            "--out",
            str(tmp_path / "r2.jsonl"),
            "--no-progress",
        ]
    )
    assert code == 2 and "pooling" in capsys.readouterr().err
    assert not (tmp_path / "r2.jsonl").exists()


def test_index_with_factory_string_and_chunking(world, tmp_path, capsys):
    out = tmp_path / "hnsw"
    assert build(world, out, "--faiss-type", "HNSW8", "--chunk-words", "5") == 0
    index = PassageIndex.load(out)
    assert index.manifest["faiss_class"] == "IndexHNSWFlat" and len(index) > 40  # chunks of 5 words


def test_user_errors_exit_2_with_a_message(world, tmp_path, capsys):
    assert (
        main(
            [
                "index",
                "--corpus",
                str(tmp_path / "missing.jsonl"),
                "--retriever",
                str(world["retriever"]),
                "--out",
                str(tmp_path / "x"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "missing.jsonl" in capsys.readouterr().err
    assert build(world, tmp_path / "ivf", "--faiss-type", "IVF64,Flat") == 2
    assert "IVF1" in capsys.readouterr().err
    assert not (tmp_path / "ivf").exists()
    assert (
        main(
            [
                "retrieve",
                "--index",
                str(tmp_path / "nothing"),
                "--questions",
                str(world["questions"]),
                "--out",
                str(tmp_path / "r.jsonl"),
            ]
        )
        == 2
    )
    assert "nothing" in capsys.readouterr().err
    out = tmp_path / "idx"
    assert build(world, out) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "retrieve",
                "--index",
                str(out),
                "--questions",
                str(world["questions"]),
                "--ks",
                "1,x",
                "--out",
                str(tmp_path / "r.jsonl"),
            ]
        )
        == 2
    )
    assert "--ks" in capsys.readouterr().err
    other = tmp_path / "other-retriever"
    make_tiny_retriever(seed=7).save_pretrained(other)
    assert (
        main(
            [
                "retrieve",
                "--index",
                str(out),
                "--questions",
                str(world["questions"]),
                "--retriever",
                str(other),
                "--out",
                str(tmp_path / "r.jsonl"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "rebuild" in err and not (tmp_path / "r.jsonl").exists()


def test_help_explains_options(capsys):
    for cmd in ("index", "retrieve"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "--faiss-type" in text if cmd == "index" else "--match" in text


def test_duplicate_passage_id_names_both_lines_and_stops_early(world, tmp_path, capsys):
    rows = [{"id": p.id, "title": p.title, "text": p.text} for p in world["passages"][:20]]
    rows[17]["id"] = rows[3]["id"]
    corpus = tmp_path / "dup.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "idx"
    code = main(
        [
            "index",
            "--corpus",
            str(corpus),
            "--retriever",
            str(world["retriever"]),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "4",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{corpus}, line 18: duplicate passage id '{rows[3]['id']}' (first at line 4)" in err
    assert not out.exists() and not list(tmp_path.glob(".idx*"))


def test_duplicate_id_from_a_plain_list_names_the_positions(tmp_path):
    from ragdistill.data.types import Passage
    from ragdistill.retrieval.store import DuplicatePassageId

    passages = [Passage("a", "", "one"), Passage("b", "", "two"), Passage("a", "", "three")]
    with pytest.raises(DuplicatePassageId, match=r"passages #1 and #3"):
        PassageIndex.build(passages, make_tiny_retriever(seed=0), tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()

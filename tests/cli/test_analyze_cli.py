"""`ragdistill analyze` / `diagnose` end to end on a small demo world (bundled reader and retriever)."""

from __future__ import annotations

import json

import pytest

from ragdistill.cli.main import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ragdistill.data.demo import write_demo_world

    out = tmp_path_factory.mktemp("world")
    return write_demo_world(out, countries=4, people=4, companies=4, rivers=4, inventions=4)


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    for opt in ("--reference", "--signal", "--answer", "--corr-threshold", "--verdict-attention", "--corpus"):
        assert opt in text


def test_bad_input_exits_2_with_message(tmp_path, capsys, world):
    missing = tmp_path / "nope.jsonl"
    rc = main(["analyze", "--corpus", str(world["corpus"]), "--questions", str(missing), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nope.jsonl" in capsys.readouterr().err
    rc = main(
        [
            "analyze",
            "--corpus",
            str(world["corpus"]),
            "--questions",
            str(world["dev"]),
            "--n",
            "0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "'n'" in capsys.readouterr().err


@pytest.mark.slow
def test_fid_reader_perplexity_signal_with_reference(tmp_path, world):
    """A (tiny, random) FiD checkpoint, the perplexity signal, a reference: the verdict compares the two."""
    from ragdistill.readers.fid_tiny import write_tiny_t5

    a, b = write_tiny_t5(tmp_path / "t5a", seed=0), write_tiny_t5(tmp_path / "t5b", seed=1)
    out = tmp_path / "ppl"
    rc = main(
        [
            "analyze",
            "--reader",
            str(b),
            "--reference",
            str(a),
            "--signal",
            "perplexity",
            "--ig-steps",
            "2",
            "--corpus",
            str(world["corpus"]),
            "--questions",
            str(world["dev"]),
            "--n",
            "3",
            "--k",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    ind = json.loads((out / "indicators.json").read_text())
    assert list(ind["readers"]) == [str(a), str(b)] and ind["reference"] == str(a)
    v = ind["verdict"][str(b)]
    assert v["compared_to_reference"]
    # a random tiny reader may leave every Spearman undefined; the verdict then says so instead of guessing
    blk = ind["readers"][str(b)]["answer"]["p95"]
    assert blk["n_used"] + blk["n_undefined"] + blk["n_skipped_other"] == 3
    if blk["n_used"] == 0:
        assert v["indicator1"]["holds"] is None and "can be computed" in v["advice_reason"]
    else:
        assert v["indicator1"]["holds"] in (True, False)
    assert ind["settings"]["signal"] == "perplexity"
    rec = json.loads((out / "instances.jsonl").read_text().splitlines()[0])
    assert len(rec["passage_loglik"]) == 2
    assert len(list((out / "figures").glob("compare_*.png"))) == 2


@pytest.mark.slow
def test_analyze_and_diagnose_on_demo_world(tmp_path, capsys, world):
    out = tmp_path / "analysis"
    rc = main(
        [
            "analyze",
            "--reader",
            "smollm2-135m",
            "--corpus",
            str(world["corpus"]),
            "--questions",
            str(world["dev"]),
            "--n",
            "6",
            "--k",
            "3",
            "--seed",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    ind = json.loads((out / "indicators.json").read_text())
    s = ind["readers"]["smollm2-135m"]
    for g in ("answer", "question"):
        for p in ("p90", "p95"):
            blk = s[g][p]
            assert blk["n_instances"] == 6
            assert blk["n_used"] + blk["n_undefined"] + blk["n_skipped_no_nouns"] + blk["n_skipped_other"] == 6
            assert blk["lift_mean"] is None or blk["lift_mean"] > 0
    v = ind["verdict"]["smollm2-135m"]
    assert v["indicator1"]["holds"] is None and v["advice"] in (
        "distil from this reader",
        "fine-tune it first (step 1)",
    )
    records = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["passage_ids"]) == 3 for r in records)
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "Verdict" in report and "smollm2-135m" in report
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["smollm2-135m_answer.png", "smollm2-135m_question.png"]
    capsys.readouterr()
    # diagnose: same reader as reference -> comparison undefined, advice from the absolute numbers
    rc = main(
        [
            "diagnose",
            "--reader",
            "smollm2-135m",
            "--reference",
            "smollm2-135m",
            "--corpus",
            str(world["corpus"]),
            "--questions",
            str(world["dev"]),
            "--n",
            "4",
            "--k",
            "3",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "no reference to compare with" in text and "advice:" in text


def test_an_index_is_queried_with_the_settings_it_was_built_with(tmp_path, world):
    """`analyze --index` without --retriever reads the manifest: an index built at 32 tokens is queried at 32."""
    from ragdistill.analysis.run import load_retrieval
    from ragdistill.errors import ModelError

    index = tmp_path / "index"
    assert main(["index", "--corpus", str(world["corpus"]), "--out", str(index), "--max-length", "32"]) == 0
    retriever, idx = load_retrieval(None, str(index), None)
    assert retriever.max_length == 32 and len(idx) > 0
    with pytest.raises(ModelError, match="max_length"):  # a retriever named with other settings is still refused
        load_retrieval("minilm-l6", str(index), None)

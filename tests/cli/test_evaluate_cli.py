"""`ragdistill evaluate` on tiny models: metrics.json keys, predictions.jsonl records, seeded samples, errors."""

from __future__ import annotations

import json

import pytest

from ragdistill.cli.main import main


def _run(models, world, out, *extra):
    return main(
        [
            "evaluate",
            "--reader",
            models["reader"],
            "--retriever",
            models["retriever"],
            "--corpus",
            world["corpus"],
            "--questions",
            world["test"],
            "--k",
            "3",
            "--max-new-tokens",
            "3",
            "--max-prompt-tokens",
            "96",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_evaluate_writes_metrics_and_predictions(tiny_models, tiny_world, tmp_path, capsys):
    from ragdistill.data.questions import load_questions
    from ragdistill.evaluation.metrics import exact_match, f1_score

    out = tmp_path / "ev"
    assert _run(tiny_models, tiny_world, out, "--limit", "5", "--seed", "1") == 0
    table = capsys.readouterr().out
    assert "| n | HR@1 | HR@5 | HR@20 | EM | F1 |" in table and "wall time" in table
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"n", "hr@1", "hr@5", "hr@20", "em", "f1", "n_generated"} and metrics["n"] == 5
    assert metrics["n_generated"] == 5  # every question answered (no --limit on generation)
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    gold = {q.id: q for q in load_questions(tiny_world["test"])}
    for r in rows:
        assert set(r) == {"id", "question", "answers", "prediction", "retrieved", "hit", "hit_flags", "em", "f1"}
        assert r["answers"] == gold[r["id"]].answers and len(r["retrieved"]) == 20
        assert r["em"] == exact_match(r["prediction"], r["answers"]) and r["f1"] == f1_score(
            r["prediction"], r["answers"]
        )
    assert metrics["em"] == pytest.approx(sum(r["em"] for r in rows) / 5)
    assert metrics["f1"] == pytest.approx(sum(r["f1"] for r in rows) / 5)
    assert metrics["hr@1"] <= metrics["hr@5"] <= metrics["hr@20"]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["sample"] == 5 and info["seed"] == 1 and info["wall_seconds"] > 0

    # same seed, same sample (and the index in OUT/index is reused); another seed, another sample
    again = tmp_path / "ev_again"
    with pytest.raises(SystemExit) as exc:  # --index and --corpus are exclusive (argparse exits with 2)
        _run(tiny_models, tiny_world, again, "--limit", "5", "--seed", "1", "--index", str(out / "index"))
    assert exc.value.code == 2
    assert (
        main(
            [
                "evaluate",
                "--reader",
                tiny_models["reader"],
                "--retriever",
                tiny_models["retriever"],
                "--index",
                str(out / "index"),
                "--questions",
                tiny_world["test"],
                "--k",
                "3",
                "--limit",
                "5",
                "--seed",
                "1",
                "--no-generate",
                "--out",
                str(again),
                "--no-progress",
            ]
        )
        == 0
    )
    ids_again = [json.loads(x)["id"] for x in (again / "predictions.jsonl").read_text().splitlines()]
    assert ids_again == [r["id"] for r in rows]
    assert json.loads((again / "metrics.json").read_text())["hr@5"] == metrics["hr@5"]
    other = tmp_path / "ev_other"
    assert (
        main(
            [
                "evaluate",
                "--retriever",
                tiny_models["retriever"],
                "--index",
                str(out / "index"),
                "--questions",
                tiny_world["test"],
                "--limit",
                "5",
                "--seed",
                "2",
                "--no-generate",
                "--out",
                str(other),
                "--no-progress",
            ]
        )
        == 0
    )
    assert [json.loads(x)["id"] for x in (other / "predictions.jsonl").read_text().splitlines()] != ids_again


def test_run_and_checkpoint_directories_resolve(tmp_path):
    from ragdistill.cli.evaluate import resolve_model

    run = tmp_path / "run"
    (run / "reader").mkdir(parents=True)
    (run / "completed.json").write_text(json.dumps({"reader": str(run / "reader"), "retriever": "minilm-l6"}))
    assert resolve_model(str(run), "reader") == (str(run / "reader"), None)
    assert resolve_model(str(run), "retriever") == ("minilm-l6", None)
    step = run / "checkpoints" / "step-000000004"
    step.mkdir(parents=True)
    for f in ("manifest.json", "state.json", "retriever.safetensors"):
        (step / f).write_text("{}")
    (run / "config.yaml").write_text("retriever: {name: minilm-l6}\nreader: {name: smollm2-135m}\n")
    assert resolve_model(str(step), "retriever") == ("minilm-l6", step)
    assert resolve_model(str(step), "reader") == ("smollm2-135m", None)
    assert resolve_model("smollm2-135m", "reader") == ("smollm2-135m", None)


@pytest.mark.parametrize(
    "extra,needle", [(["--k", "0"], "--k"), (["--ks", "1,x"], "--ks"), (["--limit", "0"], "--limit")]
)
def test_bad_options_exit_2(tiny_models, tiny_world, tmp_path, capsys, extra, needle):
    assert _run(tiny_models, tiny_world, tmp_path / "bad", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_missing_questions_file_names_it(tiny_models, tiny_world, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--retriever",
            tiny_models["retriever"],
            "--corpus",
            tiny_world["corpus"],
            "--questions",
            str(tmp_path / "missing.jsonl"),
            "--no-generate",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 2 and "missing.jsonl" in capsys.readouterr().err


def test_evaluate_and_retrieve_report_the_same_hr_at_k(tiny_models, tmp_path, capsys):
    """One has-answer rule everywhere: `evaluate --no-generate` and `retrieve` agree on the same index and questions,
    also when answers appear only in passage titles (text only by default, as DPR; --match-title counts titles)."""
    from ragdistill.data.types import Passage
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    names = ["Zorvania", "Quellmark", "Tributh", "Oskavel", "Pendragor", "Velmora"]
    passages = [
        Passage(f"p{i}", name, f"a river town with a castle and a harbor number {i}") for i, name in enumerate(names)
    ]
    passages += [
        Passage(f"q{i}", "Lists", f"the old bridge of {name} is made of copper") for i, name in enumerate(names[:2])
    ]
    index_dir = tmp_path / "index"
    PassageIndex.build(
        passages, BiEncoderRetriever.from_pretrained(tiny_models["retriever"]), index_dir, progress=False
    ).close()
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        "".join(
            json.dumps({"id": f"x{i}", "question": f"which town is number {i}?", "answers": [name]}) + "\n"
            for i, name in enumerate(names)
        )
    )

    def both(*extra):
        capsys.readouterr()
        assert (
            main(
                [
                    "retrieve",
                    "--index",
                    str(index_dir),
                    "--retriever",
                    tiny_models["retriever"],
                    "--questions",
                    str(qfile),
                    "--ks",
                    "1,2,8",
                    "--out",
                    str(tmp_path / "r.jsonl"),
                    "--json",
                    "--no-progress",
                    *extra,
                ]
            )
            == 0
        )
        ret = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        out = tmp_path / ("ev" + "".join(extra))
        assert (
            main(
                [
                    "evaluate",
                    "--retriever",
                    tiny_models["retriever"],
                    "--index",
                    str(index_dir),
                    "--questions",
                    str(qfile),
                    "--ks",
                    "1,2,8",
                    "--no-generate",
                    "--out",
                    str(out),
                    "--no-progress",
                    *extra,
                ]
            )
            == 0
        )
        ev = json.loads((out / "metrics.json").read_text())
        return ret, ev

    ret, ev = both()
    for k in ("hr@1", "hr@2", "hr@8"):
        assert ev[k] == ret[k], (k, ev, ret)
    assert ret["hr@8"] == pytest.approx(2 / 6)  # text only: just the two questions whose name is in a text
    ret, ev = both("--match-title")
    for k in ("hr@1", "hr@2", "hr@8"):
        assert ev[k] == ret[k], (k, ev, ret)
    assert ret["hr@8"] == 1.0  # every answer is some retrieved passage's title

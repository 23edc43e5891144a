"""`ragdistill train` end to end on tiny models: outputs, loadable weights, errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.cli.main import main
from tests.tiny_models import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo" / "offshelf_distill.yaml"


def _args(models, world, out, **extra):
    args = ["train", "--config", str(CONFIG), "--out", str(out), "--no-progress"]
    for o in tiny_overrides(models, world, **extra):
        args += ["--set", o]
    return args


def test_train_writes_a_complete_run(tiny_models, tiny_world, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_models, tiny_world, out, **{"train.steps": 2, "eval.every": 1})) == 0
    printed = capsys.readouterr().out
    assert "done: 2 steps" in printed and "HR@1" in printed and "EM" in printed
    for name in ("config.yaml", "metrics.jsonl", "completed.json", "eval/metrics.json", "eval/predictions.jsonl"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "k: 3" in (out / "config.yaml").read_text()  # the resolved config, overrides applied
    done = json.loads((out / "completed.json").read_text())
    assert done["steps"] == 2 and done["reader"] == str(out / "reader") and done["retriever"] == str(out / "retriever")
    kinds = [json.loads(x)["kind"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 2 and kinds.count("eval") == 3 and kinds[-1] == "final"
    train_rec = next(json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x)
    for key in (
        "loss",
        "reader_loss",
        "retriever_loss",
        "steps_per_s",
        "peak_mem_mb",
        "time/retrieve",
        "time/reader",
        "time/signal",
        "time/backward",
        "time/refresh",
        "lr_reader",
        "lr_retriever",
        "grad_norm",
    ):
        assert key in train_rec, key

    # the trained models load by path with the project's own loaders
    from ragdistill.readers import get_reader
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    reader = get_reader(str(out / "reader"), max_new_tokens=2)
    assert reader.kind == "decoder"
    retriever = BiEncoderRetriever.from_pretrained(str(out / "retriever"))
    assert retriever.max_length == 48

    # a finished run is not redone by --resume, and not overwritten without it
    assert main(_args(tiny_models, tiny_world, out, **{"train.steps": 2, "eval.every": 1}) + ["--resume"]) == 0
    assert main(_args(tiny_models, tiny_world, out, **{"train.steps": 2, "eval.every": 1})) == 2
    assert "finished run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.k=0", "train.k"),
        ("optim.lr_reader=-1", "optim.lr_reader"),
        ("retriever.temperature=0", "retriever.temperature"),
        ("train.bogus=1", "train.bogus"),
    ],
)
def test_bad_config_exits_2_naming_the_key_before_any_work(tmp_path, capsys, override, key):
    out = tmp_path / "never"
    assert main(["train", "--config", str(CONFIG), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "Traceback" not in err
    assert not out.exists()


def test_dry_run_prints_the_resolved_config(capsys):
    assert (
        main(
            [
                "train",
                "--config",
                str(ROOT / "configs" / "paper" / "finetuned_step2.yaml"),
                "--out",
                "unused",
                "--set",
                "dataset=triviaqa",
                "--dry-run",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "steps: 32000" in text and "warmup_steps: 600" in text and "lr_retriever: 5.0e-07" in text
    assert "runs/paper/triviaqa/finetuned_step1/reader" in text


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.yaml" in capsys.readouterr().err

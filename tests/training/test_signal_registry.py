"""The signal registry drives config validation, the training loop and the analysis: a registered signal is usable by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragdistill.config import load_config
from ragdistill.errors import ConfigError
from ragdistill.signals import available_signals, get_signal_spec, register_signal
from ragdistill.training.loop import Trainer
from tests.tiny_models import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo" / "offshelf_distill.yaml"
CALLS: list[dict] = []


@register_signal("toy-length", options=("aggregation",))
def toy_length(reader, question, passages, answer, aggregation="sum"):
    """S_i = the number of words of passage i (sum) or 1 (mean): a signal that needs no reader at all."""
    CALLS.append({"question": question, "aggregation": aggregation})
    return torch.tensor([float(len(p.text.split())) if aggregation == "sum" else 1.0 for p in passages])


def test_registered_signal_is_listed_with_its_declarations():
    spec = get_signal_spec("toy-length")
    assert "toy-length" in available_signals() and spec.fn is toy_length
    assert spec.options == ("aggregation",) and not spec.lm_forward and spec.token_scores is None
    assert get_signal_spec("attention").lm_forward and get_signal_spec("attention").token_scores is not None


def test_config_validates_registered_names_only(tiny_models, tiny_world):
    cfg = load_config(DEMO, tiny_overrides(tiny_models, tiny_world, **{"signal.name": "toy-length"}))
    assert cfg.signal.name == "toy-length"
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, tiny_overrides(tiny_models, tiny_world, **{"signal.name": "toy-lenght"}))
    assert err.value.key == "signal.name" and "toy-length" in str(err.value)


def test_monitor_refuses_a_signal_without_token_scores(tiny_models, tiny_world):
    from ragdistill.analysis.monitor import IndicatorMonitor
    from ragdistill.data.questions import load_questions

    questions = load_questions(tiny_world["dev"])
    with pytest.raises(ConfigError, match="token scores"):
        IndicatorMonitor(questions, index=object(), retriever=object(), signal="toy-length")


@pytest.mark.parametrize("regime", ["retriever", "joint"])
def test_training_loop_uses_a_registered_signal(tiny_models, tiny_world, tmp_path, regime):
    cfg = load_config(
        DEMO,
        tiny_overrides(
            tiny_models,
            tiny_world,
            **{
                "signal.name": "toy-length",
                "train.regime": regime,
                "train.steps": 2,
                "eval.every": 0,
                "eval.final": False,
                "signal.aggregation": "mean",
            },
        ),
    )
    CALLS.clear()
    summary = Trainer(cfg, tmp_path / regime, progress=False).run()
    assert summary["steps"] == 2
    n_train = cfg.train.batch_size * cfg.train.grad_accum * 2
    assert len(CALLS) == n_train and {c["aggregation"] for c in CALLS} == {
        "mean"
    }  # its declared option, from the config
    recs = [json.loads(x) for x in (tmp_path / regime / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert len(train_recs) == 2 and all("retriever_loss" in r and r["time/signal"] > 0 for r in train_recs)
    assert all(("reader_loss" in r) == (regime == "joint") for r in train_recs)

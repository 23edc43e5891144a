"""The training loop on tiny random models: regimes, resume after a kill, non-finite losses, data order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragdistill.config import load_config
from ragdistill.errors import InputError
from ragdistill.training import checkpoint as ckpt
from ragdistill.training.data import batch_indices
from ragdistill.training.loop import Trainer, train
from tests.tiny_models import final_weights, run_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo" / "offshelf_distill.yaml"
TIMING = ("steps_per_s", "peak_mem_mb")


def _cfg(models, world, **extra):
    return load_config(DEMO, tiny_overrides(models, world, **extra))


class _Killed(Exception):
    pass


def test_resume_after_kill_matches_unbroken_run(tiny_models, tiny_world, tmp_path, monkeypatch):
    """Run 5 steps; separately run, 'kill' during step 5 (after the step-3 checkpoint), resume: same result."""
    extra = {"train.steps": 5, "train.save_every": 3, "index.refresh": "2", "eval.every": 2, "train.regime": "joint"}
    cfg = _cfg(tiny_models, tiny_world, **extra)
    full = tmp_path / "full"
    summary_full = train(cfg, full, progress=False)
    assert summary_full["steps"] == 5 and summary_full["refreshes"] == 2

    broken = tmp_path / "broken"
    original = Trainer.train_step

    def dying_step(self):
        if self.state.step == 4:  # step 3 is checkpointed, step 4 is done, 5th step dies midway
            raise _Killed()
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(_Killed):
        train(cfg, broken, progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert [s for s, _ in ckpt.list_checkpoints(broken / "checkpoints")] == [3]
    state = ckpt.read_state(broken / "checkpoints" / "step-000000003")
    assert state["index_step"] == 2  # the stale index must be rebuilt from the snapshot
    with pytest.raises(InputError, match="--resume"):
        train(cfg, broken, progress=False)  # never overwrite a run by accident
    summary_resumed = train(cfg, broken, resume=True, progress=False)

    a, b = final_weights(full), final_weights(broken)
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert run_metrics(full, TIMING) == run_metrics(broken, TIMING)
    assert summary_full["final_eval"] == summary_resumed["final_eval"]
    assert json.loads((full / "eval" / "metrics.json").read_text()) == json.loads(
        (broken / "eval" / "metrics.json").read_text()
    )
    assert (full / "eval" / "predictions.jsonl").read_text() == (broken / "eval" / "predictions.jsonl").read_text()


@pytest.mark.parametrize("regime", ["reader", "retriever"])
def test_regime_trains_only_its_model(tiny_models, tiny_world, tmp_path, regime):
    from transformers import AutoModelForCausalLM

    from ragdistill.retrieval.retriever import BiEncoderRetriever

    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": regime,
            "train.steps": 2,
            "eval.every": 0,
            "eval.final": False,
            "optim.lr_reader": 1e-3,
            "optim.lr_retriever": 1e-3,
        },
    )
    trainer = Trainer(cfg, tmp_path / regime, progress=False)
    summary = trainer.run()
    reader0 = AutoModelForCausalLM.from_pretrained(tiny_models["reader"])
    retr0 = BiEncoderRetriever.from_pretrained(tiny_models["retriever"], max_length=48)

    def changed(m0, m1):
        return any(not torch.equal(p0, p1) for p0, p1 in zip(m0.state_dict().values(), m1.state_dict().values()))

    assert changed(reader0, trainer.reader.model) == (regime == "reader")
    assert changed(retr0, trainer.retriever) == (regime == "retriever")
    saved = {p.name for p in (tmp_path / regime).iterdir()}
    assert (regime in saved) and ({"reader", "retriever"} - {regime}).isdisjoint(saved)
    assert summary[regime] == str(tmp_path / regime / regime)
    recs = [json.loads(x) for x in (tmp_path / regime / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert len(train_recs) == 2
    for r in train_recs:  # the phases that ran are timed, peak memory is recorded
        assert r["peak_mem_mb"] > 0 and r["time/retrieve"] > 0 and r["time/backward"] > 0
        assert (r["time/signal"] > 0) == (regime == "retriever")
        assert ("reader_loss" in r) == (regime == "reader") and ("retriever_loss" in r) == (regime == "retriever")


def test_nonfinite_loss_skips_the_step_and_counts_it(tiny_models, tiny_world, tmp_path, caplog):
    cfg = _cfg(
        tiny_models, tiny_world, **{"train.regime": "reader", "train.steps": 3, "eval.every": 0, "eval.final": False}
    )
    trainer = Trainer(cfg, tmp_path / "nan", progress=False)
    trainer.setup()
    real = trainer.reader.lm_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 2 else loss

    trainer.reader.lm_loss = flaky
    trainer.run = Trainer.run.__get__(trainer)
    trainer.setup = lambda: None
    before = {k: v.clone() for k, v in trainer.reader.model.state_dict().items()}
    trainer.train_step()
    after_first = {k: v.clone() for k, v in trainer.reader.model.state_dict().items()}
    with caplog.at_level("WARNING"):
        rec = trainer.train_step()
    assert rec["skipped"] and trainer.state.skipped_steps == 1
    assert "step 1 skipped" in caplog.text and "demo-train" in caplog.text  # names the batch
    assert all(torch.equal(after_first[k], v) for k, v in trainer.reader.model.state_dict().items())
    assert all(torch.isfinite(v).all() for v in trainer.reader.model.state_dict().values())
    assert any(not torch.equal(before[k], after_first[k]) for k in before)
    trainer.train_step()
    assert trainer.state.step == 3 and trainer.state.skipped_steps == 1


def test_batch_indices_are_a_function_of_the_step():
    n, seed = 11, 3
    single = [batch_indices(s, m, 2, 4, 1, 0, n, seed) for s in range(6) for m in range(2)]
    # two processes with batch 2 see exactly the single process's batch of 4, split in two
    for s in range(6):
        for m in range(2):
            r0 = batch_indices(s, m, 2, 2, 2, 0, n, seed)
            r1 = batch_indices(s, m, 2, 2, 2, 1, n, seed)
            assert r0 + r1 == single[s * 2 + m]
    flat = [i for b in single for i in b]
    for epoch in range(len(flat) // n):  # every epoch is a permutation of all questions
        assert sorted(flat[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert flat[:n] != list(range(n))  # shuffled
    cache: dict = {}
    assert [batch_indices(5, 1, 2, 4, 1, 0, n, seed, cache)] == [single[11]]  # no replay needed


def test_fp_determinism_of_two_fresh_runs(tiny_models, tiny_world, tmp_path):
    """Same seed twice: identical losses (the basis of the resume guarantee)."""
    cfg = _cfg(
        tiny_models, tiny_world, **{"train.regime": "retriever", "train.steps": 2, "eval.every": 0, "eval.final": False}
    )
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    assert run_metrics(tmp_path / "a", TIMING) == run_metrics(tmp_path / "b", TIMING)


class _FakeMonitor:
    """Says 'poor teacher' from its second check on (the hook's contract: check(), should_stop(), stop_message())."""

    def __init__(self):
        self.history, self.failed_streak, self.reference = [], 0, None

    def check(self, reader, step, retriever=None, index=None):
        self.failed_streak += 1 if step >= 2 else 0
        self.history.append({"step": step})
        return {"indicators/failed_streak": float(self.failed_streak)}

    def should_stop(self):
        return self.failed_streak >= 1

    def stop_message(self):
        return "fake monitor: poor teacher"


def test_stop_if_poor_ends_the_run_with_a_checkpoint(tiny_models, tiny_world, tmp_path):
    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "reader",
            "train.steps": 4,
            "monitor.every": 1,
            "eval.every": 0,
            "eval.final": False,
            "train.save_every": 0,
        },
    )
    summary = Trainer(cfg, tmp_path / "poor", progress=False, monitor=_FakeMonitor(), stop_if_poor=True).run()
    assert summary["steps"] == 2 and summary["stopped_early"] == "fake monitor: poor teacher"
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "poor" / "checkpoints")] == [2]
    state = ckpt.read_state(tmp_path / "poor" / "checkpoints" / "step-000000002")
    assert state["monitor"]["failed_streak"] == 1 and len(state["monitor"]["history"]) == 2
    recs = [json.loads(x) for x in (tmp_path / "poor" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "monitor"] == [1, 2]
    # without --stop-if-poor the monitor only logs
    summary = Trainer(cfg, tmp_path / "logs", progress=False, monitor=_FakeMonitor()).run()
    assert summary["steps"] == 4 and summary["stopped_early"] is None


class _IndexRecorder(_FakeMonitor):
    """Records, at each check, whether it was handed the index the trainer retrieves from right then."""

    def __init__(self):
        super().__init__()
        self.trainer, self.seen = None, []

    def check(self, reader, step, retriever=None, index=None):
        self.seen.append((index, index is self.trainer.index))
        return {}


def test_monitor_retrieves_from_the_index_a_refresh_put_in_place(tiny_models, tiny_world, tmp_path):
    """A refresh due at an evaluation step adopts the evaluation's fresh index (a new object): the monitor must
    retrieve its probe passages from that one, not from the index it was built with."""
    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "retriever",
            "train.steps": 5,
            "index.refresh": "2",
            "eval.every": 2,
            "eval.fresh_index": True,
            "monitor.every": 1,
            "eval.final": False,
            "train.save_every": 0,
        },
    )
    monitor = _IndexRecorder()
    trainer = Trainer(cfg, tmp_path / "run", progress=False, monitor=monitor)
    monitor.trainer = trainer
    start_index = trainer.index
    trainer.run()
    assert len(monitor.seen) == 5 and all(current for _, current in monitor.seen)
    assert monitor.seen[-1][0] is not start_index  # an adoption happened, and the monitor followed it


def test_real_indicator_monitor_is_built_from_the_config(tiny_models, tiny_world, tmp_path):
    pytest.importorskip("ragdistill.analysis.monitor")
    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "reader",
            "train.steps": 2,
            "monitor.every": 2,
            "monitor.instances": 2,
            "eval.every": 0,
            "eval.final": False,
        },
    )
    train(cfg, tmp_path / "mon", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "mon" / "metrics.jsonl").read_text().splitlines()]
    mon = [r for r in recs if r["kind"] == "monitor"]
    assert len(mon) == 1 and any(k.startswith("indicators/") for k in mon[0])
    assert (tmp_path / "mon" / "monitor" / "history.jsonl").is_file()


def test_k_larger_than_the_corpus_is_refused_before_indexing(tiny_models, tiny_world, tmp_path):
    from ragdistill.errors import ConfigError

    n_passages = sum(1 for line in Path(tiny_world["corpus"]).read_text().splitlines() if line.strip())
    cfg = _cfg(tiny_models, tiny_world, **{"train.k": n_passages + 1})
    with pytest.raises(ConfigError, match=rf"train.k.*k={n_passages + 1}.*holds only {n_passages}"):
        Trainer(cfg, tmp_path / "run", progress=False).setup()
    assert not (tmp_path / "run" / "index").exists()


def test_final_evaluation_re_embeds_a_stale_index(tiny_models, tiny_world, tmp_path):
    """eval.fresh_index false, last refresh at step 2 of 3: the final HR@k reads passages embedded with the final weights.

    Before, the final evaluation paired the final query encoder with the step-2 passage embeddings (ATLAS re-indexes
    with the final model first); the report says which index each row used (eval_info.json "index")."""
    from ragdistill.data.corpus import load_passages
    from ragdistill.data.questions import load_questions
    from ragdistill.evaluation.evaluate import evaluate_questions
    from ragdistill.readers import get_reader
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "retriever",
            "train.steps": 3,
            "index.refresh": "2",
            "eval.fresh_index": "false",
            "eval.every": 0,
            "train.save_every": 0,
            "optim.lr_retriever": 5e-2,
        },
    )
    out = tmp_path / "run"
    summary = train(cfg, out, progress=False)
    assert summary["refreshes"] == 1  # the training index (step 2) is a step old at the end
    info = json.loads((out / "eval" / "eval_info.json").read_text())
    assert info["index"] == {"embedded_at_step": 3, "fresh": True}
    retriever = BiEncoderRetriever.from_pretrained(str(out / "retriever"), device="cpu")
    index = PassageIndex.build(load_passages(tiny_world["corpus"]), retriever, tmp_path / "fresh")
    reader = get_reader(
        cfg.reader.name,
        kind="decoder",
        max_prompt_tokens=cfg.reader.max_prompt_tokens,
        max_new_tokens=cfg.reader.max_new_tokens,
    )
    questions = load_questions(tiny_world["test"])[: cfg.data.max_test]
    expected = evaluate_questions(reader, retriever, index, questions, k=cfg.train.k, ks=cfg.eval.ks, generate=False)
    final = json.loads((out / "eval" / "metrics.json").read_text())
    for k in cfg.eval.ks:
        assert final[f"hr@{k}"] == expected.metrics[f"hr@{k}"]


def test_final_evaluation_without_answers(tiny_models, tiny_world, tmp_path):
    """eval.final_generate false (the sweep's step-2 runs): the final evaluation has HR@k and no EM/F1."""
    cfg = _cfg(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "retriever",
            "train.steps": 1,
            "eval.every": 0,
            "train.save_every": 0,
            "eval.final_generate": "false",
        },
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    final = summary["final_eval"]
    assert {f"hr@{k}" for k in cfg.eval.ks} <= set(final)
    assert "em" not in final and "f1" not in final

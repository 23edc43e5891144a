"""The dry-run work estimate: steps × tokens, refreshes × KB size, against a hand count."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragdistill.experiments.estimate import estimate_work
from ragdistill.experiments.plan import Options, build_plan

DEMO_CONFIGS = Path(__file__).resolve().parents[2] / "src" / "ragdistill" / "configs" / "demo"


def test_estimate_matches_a_hand_count(tmp_path):
    plan = build_plan(
        Options(
            out=tmp_path,
            check_hub=False,
            overrides=["train.steps=40", "index.refresh=20", "eval.every=20", "train.batch_size=2"],
        )
    )
    e = estimate_work(plan.find("demo", "offshelf_distill"))
    cfg = plan.find("demo", "offshelf_distill").config
    # reader: 40 steps × 2 questions × (prompt + answer tokens), forward and backward
    assert e["reader_train_tokens"] == 40 * 2 * (cfg.reader.max_prompt_tokens + cfg.reader.max_new_tokens)
    # retriever: 40 × 2 × (1 query + K passages) × max_length
    assert e["retriever_train_tokens"] == 40 * 2 * (1 + cfg.train.k) * cfg.retriever.max_length
    # refresh due at step 20 (adopts the step-20 evaluation's fresh index); the evaluations re-embed at 20 and 40,
    # and the final test evaluation reuses the step-40 embeddings
    assert e["refreshes"] == 1
    assert e["passages_embedded"] == 2 * e["kb_passages"]
    fid = estimate_work(plan.find("demo", "perplexity_distill"))
    fcfg = plan.find("demo", "perplexity_distill").config
    assert fid["prompt_tokens"] == fcfg.train.k * fcfg.reader.max_prompt_tokens  # FiD: one encoder input per passage
    assert fid["reader_signal_tokens"] == 40 * 2 * fcfg.train.k * (
        fcfg.reader.max_prompt_tokens + fcfg.reader.max_new_tokens
    )
    assert estimate_work(plan.find("demo", "finetuned_step1"))["passages_embedded"] == 0  # retriever fixed


def test_measured_unit_estimate_matches_a_hand_count(tmp_path):
    from ragdistill.experiments import estimate as est

    plan = build_plan(Options(out=tmp_path, check_hub=False, analysis_n=300))
    item = plan.find("demo", "finetuned_step1")
    cfg = item.config
    e = estimate_work(item, plan.options)
    n_test = e["test_questions"]
    n_gen = min(n_test, cfg.eval.max_generate or n_test)
    # steps × questions × s per question + the final evaluation + one analysed view (the retriever is fixed)
    want = (
        cfg.train.steps * cfg.train.batch_size * est.CPU_STEP_S_PER_QUESTION[("decoder", "reader", "attention")]
        + n_gen * est.CPU_ANSWER_S["decoder"]
        + n_test * est.CPU_RETRIEVE_S_PER_QUESTION
        + 300 * est.CPU_ANALYSIS_S["attention"]["decoder"]
    )
    assert e["analysis_views"] == 1 and abs(e["cpu_seconds"] - want) < 1e-6
    # a reader the units were not measured with gets no estimate (and the plan's total is then withheld)
    other = build_plan(Options(out=tmp_path / "o", check_hub=False, reader="some/other-reader"))
    unmeasured = other.find("demo", "finetuned_step1")
    assert estimate_work(unmeasured, other.options)["cpu_seconds"] is None
    unmeasured.status = "run"  # (a hub model is "not run" offline; were it to run, no total could be given)
    assert est.estimate_line(other) is None
    line = est.estimate_line(plan)
    assert line is not None and line.startswith("estimated time: ≈ ")


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["index.refresh=10", "eval.every=10"], 2),  # the sweep's step 2: refresh, eval and final share steps 10, 20
        (["index.refresh=7", "eval.every=5", "eval.fresh_index=false"], 3),  # refreshes 7, 14 and the final 20
        (["index.refresh=7", "eval.every=5", "eval.fresh_index=true"], 6),  # 5, 7, 10, 14, 15, 20
        (["index.refresh=7", "eval.every=5", "eval.fresh_index=false", "retriever.query_only=true"], 2),  # 7, 14
    ],
)
def test_corpus_embeddings_counts_each_step_once(sets, expected):
    """The dry run's refresh cost: re-embeddings of the corpus by step, as IndexManager.for_eval shares them."""
    from ragdistill.config import load_config
    from ragdistill.experiments.estimate import corpus_embeddings

    assert corpus_embeddings(load_config(DEMO_CONFIGS / "finetuned_step2.yaml", ["train.steps=20", *sets])) == expected
    assert corpus_embeddings(load_config(DEMO_CONFIGS / "finetuned_step1.yaml", [])) == 0  # the retriever is fixed


@pytest.mark.parametrize(
    "sets",
    [
        # refreshes at 2 and 4, evaluations at 3 and 5; the final evaluation reuses step 5's embeddings
        {"train.steps": 5, "index.refresh": "2", "eval.every": 3, "eval.fresh_index": True},
        # the refresh due at 2 adopts the step-2 evaluation's index: 2 and 4
        {"train.steps": 4, "index.refresh": "2", "eval.every": 2, "eval.fresh_index": True},
        # stale evaluations: the refresh at 3 and the final evaluation (the passage encoder trained)
        {"train.steps": 4, "index.refresh": "3", "eval.every": 2, "eval.fresh_index": False},
    ],
)
def test_corpus_embeddings_counts_what_a_training_run_re_embeds(sets, tiny_models, tiny_world, tmp_path, monkeypatch):
    """The estimate's re-embedding count equals the refresh passes a real (tiny) run makes."""
    from ragdistill.config import load_config
    from ragdistill.experiments.estimate import corpus_embeddings
    from ragdistill.training import indexing
    from ragdistill.training.loop import train
    from tests.tiny_models import tiny_overrides

    passes = []
    real = indexing.refresh_index
    monkeypatch.setattr(indexing, "refresh_index", lambda *a, **k: passes.append(1) or real(*a, **k))
    cfg = load_config(
        DEMO_CONFIGS / "finetuned_step2.yaml",
        tiny_overrides(tiny_models, tiny_world, **{"train.save_every": 0, "data.max_test": 3, **sets}),
    )
    train(cfg, tmp_path / "run", progress=False)
    assert len(passes) == corpus_embeddings(cfg) > 0

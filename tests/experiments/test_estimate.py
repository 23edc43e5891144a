"""The dry-run work estimate: steps × tokens, refreshes × KB size, against a hand count."""

from __future__ import annotations

from ragdistill.experiments.estimate import estimate_work
from ragdistill.experiments.plan import Options, build_plan


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
    # refresh due at step 20 (adopts the step-20 evaluation's fresh index); evaluations re-embed at 20, 40 and the final test
    assert e["refreshes"] == 1
    assert e["passages_embedded"] == 3 * e["kb_passages"]
    fid = estimate_work(plan.find("demo", "perplexity_distill"))
    fcfg = plan.find("demo", "perplexity_distill").config
    assert fid["prompt_tokens"] == fcfg.train.k * fcfg.reader.max_prompt_tokens  # FiD: one encoder input per passage
    assert fid["reader_signal_tokens"] == 40 * 2 * fcfg.train.k * (
        fcfg.reader.max_prompt_tokens + fcfg.reader.max_new_tokens
    )
    assert estimate_work(plan.find("demo", "finetuned_step1"))["passages_embedded"] == 0  # retriever fixed

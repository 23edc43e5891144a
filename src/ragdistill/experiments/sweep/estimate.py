"""The dry run's time estimate per unit, from the sweep config's ``estimate`` section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragdistill.experiments.estimate import CPU_ANALYSIS_S, corpus_embeddings, kb_passages

if TYPE_CHECKING:
    from ragdistill.experiments.sweep.plan import SweepPlan


def estimate_seconds(plan: SweepPlan) -> dict[str, float]:
    """Seconds per unit of the plan, from the sweep's ``estimate`` costs (defaults: the measured CPU ones)."""
    e = plan.sweep["estimate"]
    c = plan.configs
    n_corpus, _ = kb_passages(c["step2"].data, plan.dataset.counts)  # chunked as the runs chunk it
    refresh = e["refresh_s"] * (n_corpus or 1000) / 1000  # refresh_s: one re-embedding of 1,000 passages

    def n_test(cfg):
        return cfg.data.max_test or plan.dataset.counts.get("test", 40)

    def final_eval(cfg, reader_cost: float = 1.0) -> float:
        """HR@k on every test question, plus the answers when the final evaluation generates them."""
        n = n_test(cfg)
        s = n * e["retrieve_question_s"]
        if cfg.eval.final and cfg.eval.final_generate:
            s += min(n, cfg.eval.max_generate or n) * e["eval_question_s"] * reader_cost
        return s

    out: dict[str, float] = {}
    s2 = c["step2"]
    steps = s2.train.steps
    n_evals = steps // s2.eval.every if s2.eval.every else 0
    dev_evals = n_evals * (s2.data.max_dev or plan.dataset.counts.get("dev", 100)) * e["retrieve_question_s"]
    n = plan.sweep["analysis"]["n"]
    fid_scale = CPU_ANALYSIS_S["attention"]["fid"] / CPU_ANALYSIS_S["attention"]["decoder"]
    for unit in plan.keys:
        if unit == "baseline":
            out[unit] = refresh + n_test(s2) * e["retrieve_question_s"]
        elif unit == "source:step1":
            s1 = c["step1"]
            out[unit] = s1.train.steps * s1.train.batch_size * e["reader_step_s"] + final_eval(s1)
        elif unit == "source:fid_fit":
            f = c["fid"]
            out[unit] = f.train.steps * f.train.batch_size * e["fid_step_s"] + final_eval(f, reader_cost=0.5)
        elif unit.startswith("source:"):
            out[unit] = 20.0
        else:
            name = unit.split(":", 1)[1]
            t = next(x for x in plan.teachers if x.name == name)
            orders = t.orders if t.signal == "attention-debiased" else 1
            family = fid_scale if t.family == "fid" else 1.0  # a FiD teacher reads K short inputs: cheaper
            per = e["retriever_step_s"] * orders * (s2.train.k if t.signal == "perplexity" else 1) * family
            if t.signal == "perplexity":
                analysis = n * e["perplexity_instance_s"]
            else:
                analysis = n * e["analysis_instance_s"] * orders * family
            analysis += n * e["analysis_instance_s"] * 0.2  # the position-bias and ranking-skill pass
            out[unit] = (
                analysis
                + steps * s2.train.batch_size * per
                + corpus_embeddings(s2) * refresh
                + dev_evals
                + final_eval(s2)
            )
    return out

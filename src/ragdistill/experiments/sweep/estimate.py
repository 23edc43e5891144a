"""The dry run's time estimate per unit, from the sweep config's ``estimate`` section."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragdistill.experiments.sweep.plan import SweepPlan

#: the adaptive IG rule's typical gradient evaluations per passage (the dry run's estimate): median 19-28 per
#: passage on demo instances with the off-the-shelf minilm-bert2bert reader
IG_TYPICAL_NODES = 24


def estimate_seconds(plan: SweepPlan) -> dict[str, float]:
    e = plan.sweep["estimate"]
    c = plan.configs
    n_corpus = plan.dataset.counts.get("corpus")
    refresh = e["refresh_s"] * (1.0 if not n_corpus else max(0.25, n_corpus / 1000))

    def n_test(cfg):
        return cfg.data.max_test or plan.dataset.counts.get("test", 40)

    out: dict[str, float] = {}
    s2 = c["step2"]
    from ragdistill.retrieval.refresh import RefreshSchedule

    sched = RefreshSchedule.parse(s2.index.refresh)
    refreshes = sum(1 for s in range(1, s2.train.steps + 1) if sched.is_due(s))
    evals = (s2.train.steps // s2.eval.every if s2.eval.every else 0) + 1
    for unit in plan.keys:
        if unit == "baseline":
            out[unit] = refresh + n_test(s2) * 0.05
        elif unit == "source:step1":
            s1 = c["step1"]
            out[unit] = (
                s1.train.steps * s1.train.batch_size * e["reader_step_s"]
                + n_test(s1) * e["eval_question_s"]
                + (s1.train.steps // s1.eval.every if s1.eval.every else 0) * refresh
            )
        elif unit == "source:fid_fit":
            f = c["fid"]
            out[unit] = f.train.steps * f.train.batch_size * e["reader_step_s"] * 0.5 + n_test(f) * e["eval_question_s"]
        elif unit.startswith("source:"):
            out[unit] = 20.0
        else:
            name = unit.split(":", 1)[1]
            t = next(x for x in plan.teachers if x.name == name)
            per = e["retriever_step_s"] * (t.orders if t.signal == "attention-debiased" else 1)
            if t.signal == "perplexity":
                per *= s2.train.k
            n = plan.sweep["analysis"]["n"]
            ig_nodes = plan.sweep["analysis"]["ig_steps"] or IG_TYPICAL_NODES
            ana = n * e["analysis_instance_s"] * ((s2.train.k * ig_nodes) if t.signal == "perplexity" else 1) + n * e[
                "analysis_instance_s"
            ] * (t.orders if t.signal == "attention-debiased" else 0.2)
            out[unit] = (
                ana
                + s2.train.steps * s2.train.batch_size * per
                + (refreshes + evals) * refresh
                + n_test(s2) * e["eval_question_s"]
            )
    return out

"""The work estimate of `ragdistill reproduce --dry-run`: steps × tokens, refresh passes × KB size, FLOPs, hours.

Counts come from the plan's data files when they are here (or from what a real run would
write), else from the study's split and knowledge-base sizes (METHOD.md §4). Nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdistill.config import load_config
from ragdistill.data.corpus import count_passages
from ragdistill.data.formats import read_head
from ragdistill.data.questions import iter_questions
from ragdistill.errors import RagdistillError
from ragdistill.experiments.settings import BY_NAME, FID
from ragdistill.retrieval.refresh import RefreshSchedule

if TYPE_CHECKING:  # the plan's types (plan.py imports this module)
    from ragdistill.experiments.plan import Plan, PlannedSetting

# Split sizes and knowledge base of the study (METHOD.md §4), used by --dry-run when the files are absent.
PAPER_SIZES = {
    "nq": {"train": 79168, "dev": 8757, "test": 3610},
    "triviaqa": {"train": 78785, "dev": 8837, "test": 11313},
}
PAPER_KB_PASSAGES = 21_015_324  # DPR psgs_w100.tsv (Wikipedia 2018-12-20)
# Parameter counts of the models the configs name (for the dry-run's FLOP estimate).
KNOWN_PARAMS = {
    "tiiuae/falcon-rw-1b": 1.31e9,
    "google-t5/t5-large": 0.738e9,
    "t5-large": 0.738e9,
    "google-t5/t5-base": 0.223e9,
    "t5-base": 0.223e9,
    "google-t5/t5-small": 0.0605e9,
    "t5-small": 0.0605e9,
    "facebook/contriever": 0.1095e9,
    "facebook/contriever-msmarco": 0.1095e9,
    "smollm2-135m": 0.1345e9,
    "minilm-l6": 0.0227e9,
    "minilm-bert2bert": 0.0613e9,
}
EFFECTIVE_FLOPS = {"gpu": 1.0e14, "cpu": 5.0e10}  # rough sustained FLOP/s used to turn FLOPs into hours

# Seconds per unit of work measured by `python -m bench.bench_budget` (an idle 2-core AMD EPYC, AVX2 only, fp32; the
# bundled readers and MiniLM at the demo configs' batch and prompt budgets: decoder rows from the 2026-12-02 run at the
# 256-token budget, bench/results/2026-12-02-vm.json; FiD rows from bench/results/2026-12-01-budget.json). They turn
# the plan into a wall-clock estimate for CPU runs of the bundled models; other models are not covered.
CPU_STEP_S_PER_QUESTION = {  # (reader family, regime, signal): one question through one training step
    ("decoder", "joint", "attention"): 8.86 / 4,
    ("decoder", "reader", "attention"): 7.87 / 4,
    ("decoder", "retriever", "attention"): 3.37 / 4,
    ("fid", "reader", "attention"): 2.25 / 8,  # 2.00 and 2.51 s/step at batch 8 in two runs
    ("fid", "joint", "attention"): 1.87 / 4,
    ("fid", "joint", "perplexity"): 2.45 / 4,
}
CPU_REFRESH_S_PER_PASSAGE = 32.0 / 2913  # re-embedding the corpus (minilm-l6, 128 tokens), start-up included
# one generated answer in the final evaluation: decoder 0.78 s at the 256-token budget (python -m bench generation)
CPU_ANSWER_S = {"decoder": 0.8, "fid": 0.25}
CPU_RETRIEVE_S_PER_QUESTION = 15.0 / 518  # HR@k retrieval of one test question, start-up included
# one analysed instance, from `make demo` on that VM (2026-12-02): decoder attention 232 s for 300 instances (row 1)
# and 495 s for 2 x 300 with a re-embedding (row 2); FiD attention + perplexity 995 s for 300 (row 1b, with the K
# passages' integrated-gradient path points pooled), of which attention ~0.5 s. Decoder perplexity: 82.6 s an
# instance, pooled, 431 path points (`python -m bench --only ig`, 2026-12-03; one at a time it took 183 s).
CPU_ANALYSIS_S = {"attention": {"decoder": 0.8, "fid": 0.5}, "perplexity": {"decoder": 83.0, "fid": 2.8}}
CPU_ESTIMATED_READERS = {"smollm2-135m", "minilm-bert2bert"}  # the readers the unit costs were measured with


def _count_questions(path: str, limit: int, fallback: int | None) -> tuple[int | None, str]:
    if path != "demo" and Path(path).exists():
        n = sum(1 for _ in iter_questions(path))
        return (min(n, limit) if limit else n), "counted"
    return (min(fallback, limit) if (fallback and limit) else fallback), "paper size (file absent)"


def kb_passages(data: Any, known: dict[str, int]) -> tuple[int | None, str]:
    """(passages, how known) of a config's knowledge base as its runs read it: the size the plan already counted
    (`known`, unchunked), else counted after chunking, estimated from the file size, or the paper's."""
    if "corpus" in known and not data.chunk_words:
        return known["corpus"], "counted"
    return _count_passages(data.corpus, data.chunk_words)


def corpus_embeddings(cfg) -> int:
    """How often one training run re-embeds the corpus, as `training.loop` does it: the refreshes due before steps
    1 … steps-1, the held-out evaluations at every, 2·every, … and at the end when they want a fresh index, and the
    final evaluation unless only the query encoder trained; counted once per step (a refresh due where an evaluation
    has just re-embedded adopts its index: `training.indexing.IndexManager`). A step-2 run's retriever cost is
    mostly this."""
    if not cfg.trains_retriever:
        return 0
    steps = cfg.train.steps
    sched = RefreshSchedule.parse(cfg.index.refresh)
    at = {s for s in range(1, steps) if sched.is_due(s)}
    if cfg.eval.every and cfg.eval.fresh_index:
        at |= set(range(cfg.eval.every, steps, cfg.eval.every)) | {steps}
    if cfg.eval.final and (cfg.eval.fresh_index or not cfg.retriever.query_only):
        at.add(steps)
    return len(at)


def _count_passages(path: str, chunk_words: int | None) -> tuple[int | None, str]:
    p = Path(path)
    if path != "demo" and p.exists():
        if p.stat().st_size <= 256 * 2**20:
            return count_passages(path, chunk_words=chunk_words), "counted"
        head = read_head(p, 1 << 20)
        lines = max(1, head.count("\n"))
        return int(p.stat().st_size / (len(head.encode()) / lines)), "estimated from the file size"
    return PAPER_KB_PASSAGES, "DPR Wikipedia size (file absent)"


def analysis_views(item: PlannedSetting) -> int:
    """Separate analyses the runner makes of a row: 0 (the FiD fit, a --seeds repeat), 1 (the retriever did not
    train: own view = controlled view), 2 (own + controlled), or 1 for step 2 (its controlled view is step 1's)."""
    from ragdistill.experiments.markers import analysed

    if not analysed(item):
        return 0
    if not item.setting.trains_retriever:
        return 0 if item.setting.reader_from else 1
    return 1 if item.setting.reader_from else 2


def estimate_work(item: PlannedSetting, options: Any = None) -> dict[str, Any]:
    """Steps × tokens of one row, refresh passes × KB size, its analyses, and a rough FLOP count."""
    cfg, s = item.config, item.setting
    ds = item.dataset.dataset_section
    sizes = PAPER_SIZES.get(ds or "", {})
    known = (
        item.dataset.counts
        if item.dataset.paths
        and all(getattr(cfg.data, k) == item.dataset.paths.get(k) for k in ("corpus", "dev", "test"))
        else {}
    )
    kb, kb_src = kb_passages(cfg.data, known)
    if "test" in known and "dev" in known:
        lim = lambda n, limit: min(n, limit) if limit else n  # noqa: E731
        n_dev, n_test, q_src = lim(known["dev"], cfg.data.max_dev), lim(known["test"], cfg.data.max_test), "counted"
        n_test_all = known["test"]
    else:
        n_dev, _ = _count_questions(cfg.data.dev, cfg.data.max_dev, sizes.get("dev"))
        n_test, q_src = _count_questions(cfg.data.test, cfg.data.max_test, sizes.get("test"))
        n_test_all = _count_questions(cfg.data.test, 0, sizes.get("test"))[0]
    k = cfg.train.k
    fid = s.family == FID or cfg.reader.kind == "fid"
    prompt = cfg.reader.max_prompt_tokens * (k if fid else 1)  # reader input tokens per question
    per_passage = cfg.reader.max_prompt_tokens if fid else max(16, cfg.reader.max_prompt_tokens // k + 32)
    steps = cfg.train.steps if s.trains else 0
    q_per_step = cfg.train.batch_size * cfg.train.grad_accum
    answer = cfg.reader.max_new_tokens
    reader_fwd_bwd = reader_fwd = 0
    if s.trains_reader:
        reader_fwd_bwd = steps * q_per_step * (prompt + answer)
    if s.trains_retriever:
        if s.signal == "perplexity":
            reader_fwd += steps * q_per_step * k * (per_passage + answer)
        elif not s.trains_reader:
            reader_fwd += steps * q_per_step * (prompt + answer)
    retr_len = cfg.retriever.max_length
    retr_tokens = steps * q_per_step * (1 + k) * retr_len if s.trains_retriever else 0
    # held-out evaluations at steps every, 2·every, ... and at the end (the step-0 one uses the initial index)
    eval_steps = set(range(cfg.eval.every, steps, cfg.eval.every)) | {steps} if (s.trains and cfg.eval.every) else set()
    evals = len(eval_steps) + (1 if (s.trains and cfg.eval.every) else 0)
    refreshes = 0
    if s.trains_retriever:
        refreshes = len([x for x in RefreshSchedule.parse(cfg.index.refresh).due_steps(steps) if x > 0])
    reembeds = corpus_embeddings(cfg) if s.trains else 0
    embedded = reembeds * (kb or 0)
    gen_tokens = (n_test or 0) * (prompt + answer)
    base_reader = (getattr(item, "base_reader", "") or _base_reader_name(item)) if item.reader_from else cfg.reader.name
    p_reader = KNOWN_PARAMS.get(base_reader)
    # the attention-quality analyses (issue 14 §3): N instances per view and signal; the own view of a row whose
    # passage encoder trained re-embeds the corpus once (RUN/index-final)
    n_req = getattr(options, "analysis_n", None)
    views = analysis_views(item)
    n_inst = min(n_req, n_test_all) if (n_req and n_test_all is not None) else (n_req or 0)
    signals = list(getattr(item, "signals", None) or [s.signal])
    analysed_inst = n_inst * views * len(signals)
    ig = getattr(options, "ig_steps", 4) or 4
    analysis_tokens = (
        n_inst
        * views
        * sum((prompt + answer) if sig == "attention" else 3 * (ig + 1) * k * (per_passage + answer) for sig in signals)
    )
    analysis_reembeds = 1 if (views and s.trains_retriever and not cfg.retriever.query_only) else 0
    p_retr = KNOWN_PARAMS.get(cfg.retriever.name)
    flops = None
    if p_reader is not None and p_retr is not None:
        flops = (
            6 * p_reader * reader_fwd_bwd
            + 2 * p_reader * (reader_fwd + gen_tokens + analysis_tokens)
            + 6 * p_retr * retr_tokens
            + 2 * p_retr * (embedded + analysis_reembeds * (kb or 0)) * retr_len
        )
    family = "fid" if fid else "decoder"
    # the measured units cover the bundled readers on CPU, and only the regime/signal pairs that were measured
    step_unit = CPU_STEP_S_PER_QUESTION.get((family, cfg.train.regime, s.signal)) if s.trains else 0.0
    cpu_s = None
    if cfg.runtime.gpus == 0 and base_reader in CPU_ESTIMATED_READERS and step_unit is not None:
        n_gen = min(n_test or 0, cfg.eval.max_generate or (n_test or 0))
        cpu_s = (
            steps * q_per_step * step_unit
            + (reembeds + analysis_reembeds) * (kb or 0) * CPU_REFRESH_S_PER_PASSAGE
            + ((n_gen * CPU_ANSWER_S[family] + (n_test or 0) * CPU_RETRIEVE_S_PER_QUESTION) if cfg.eval.final else 0)
            + n_inst * views * sum(CPU_ANALYSIS_S.get(sig, CPU_ANALYSIS_S["perplexity"])[family] for sig in signals)
        )
    return {
        "cpu_seconds": cpu_s,
        "steps": steps,
        "questions_per_step": q_per_step,
        "k": k,
        "prompt_tokens": prompt,
        "reader_train_tokens": reader_fwd_bwd,
        "reader_signal_tokens": reader_fwd,
        "retriever_train_tokens": retr_tokens,
        "refreshes": refreshes,
        "kb_passages": kb,
        "kb_source": kb_src,
        "passages_embedded": embedded,
        "evals": evals,
        "dev_questions": n_dev,
        "test_questions": n_test,
        "questions_source": q_src,
        "flops": flops,
        "gpus": cfg.runtime.gpus,
        "analysis_views": views,
        "analysis_instances": analysed_inst,
        "analysis_instances_per_view": n_inst,
        "analysis_reembeds": analysis_reembeds,
        "analysis_signals": signals,
    }


def _base_reader_name(item: PlannedSetting) -> str:
    try:
        return load_config(
            item.config_path.parent / BY_NAME[item.setting.reader_from].config,
            [o for o in item.overrides if not o.startswith(("reader.name=", "index.dir="))],
        ).reader.name
    except RagdistillError:
        return ""


def _human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def estimate_lines(plan: Plan) -> list[str]:
    """The "Estimated work" section of the dry-run text (each row's estimate is kept in ``item.estimate``)."""
    lines = [
        "",
        "## Estimated work",
        "",
        "Reader tokens = steps × questions/step × reader input tokens (decoder: the whole prompt of K passages; "
        "FiD: K × tokens per encoder input); perplexity signal = K single-passage passes per question. "
        "Embedded passages = (refreshes + fresh-index evaluations, a refresh at an evaluation step "
        "reusing its embeddings) × KB size. FLOPs ≈ 6·N·(trained tokens) + "
        "2·N·(forward-only tokens) for reader and retriever (N = parameters; '?' for models of unknown size). "
        f"Hours assume {EFFECTIVE_FLOPS['gpu'] / 1e12:.0f} TFLOP/s sustained on a GPU, "
        f"{EFFECTIVE_FLOPS['cpu'] / 1e9:.0f} GFLOP/s on CPU.",
        "",
        "| dataset | setting | steps | q/step | K | reader tok./q | reader train tok. | signal tok. | "
        "retriever tok. | refreshes | KB passages | passages embedded | test q. | analysed inst. (views × N × signals) "
        "| FLOPs | ≈ hours | ≈ 2-core CPU (measured units) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = 0.0
    n_att = n_ppl = 0
    for it in plan.items:
        e = it.estimate or estimate_work(it, plan.options)
        it.estimate = e
        dev = "gpu" if e["gpus"] > 0 else "cpu"
        hours = None if e["flops"] is None else e["flops"] / EFFECTIVE_FLOPS[dev] / 3600
        total += hours or 0.0
        if it.status != "not run":
            n_att += e["analysis_views"] * e["analysis_instances_per_view"] * e["analysis_signals"].count("attention")
            n_ppl += e["analysis_views"] * e["analysis_instances_per_view"] * e["analysis_signals"].count("perplexity")
        inst = (
            (
                f"{e['analysis_views']} × {e['analysis_instances_per_view']} × {len(e['analysis_signals'])} = "
                f"{e['analysis_instances']}" + (" + re-embed" if e["analysis_reembeds"] else "")
            )
            if e["analysis_views"]
            else "–"
        )
        lines.append(
            f"| {it.dataset.label} | {it.label} | {e['steps']} | {e['questions_per_step']} | {e['k']} | "
            f"{e['prompt_tokens']} | {_human(e['reader_train_tokens'])} | {_human(e['reader_signal_tokens'])} | "
            f"{_human(e['retriever_train_tokens'])} | {e['refreshes']} | {_human(e['kb_passages'])} | "
            f"{_human(e['passages_embedded'])} | {e['test_questions'] if e['test_questions'] is not None else '?'} | "
            f"{inst} | {_human(e['flops'])} | {'?' if hours is None else f'{hours:.3g} {dev.upper()}-h'} | "
            f"{_duration(e.get('cpu_seconds'))} |"
        )
    cpu = cpu_estimate(plan)
    lines += [
        "",
        f"Total ≈ {total:.3g} device-hours (FLOP-based: the token counts are the configured budgets, not the "
        "actual lengths, and data loading, capture and evaluation overheads are not counted, so it can be off "
        "either way; the measured-unit column is the better guide for the bundled models on CPU).",
        "",
        f"Analyses of the rows that run: {n_att} attention instance-analyses and {n_ppl} perplexity ones "
        f"(each of those: K × (ig_steps + 1) single-passage forward and backward passes). On CPU the analysis "
        "dominates small runs: roughly 1 s per decoder attention instance (SmolLM2-135M, 2 idle cores), several "
        "per FiD instance, and tens of seconds per perplexity instance.",
    ]
    if cpu is not None:
        lines += [
            "",
            f"Measured-unit estimate for the rows that run: ≈ {_duration(cpu)} on a 2-core CPU like the one "
            "`python -m bench.bench_budget` measured (seconds per step, refresh, answer and analysed instance of the "
            "bundled models; a faster CPU or a GPU takes less).",
        ]
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def cpu_estimate(plan: Plan) -> float | None:
    """Seconds the rows that run would take on the measured 2-core CPU; None unless every one is covered."""
    total = 0.0
    for it in plan.items:
        if it.status != "run":
            continue
        e = it.estimate or estimate_work(it, plan.options)
        it.estimate = e
        if e.get("cpu_seconds") is None:
            return None
        total += e["cpu_seconds"]
    return total


def estimate_line(plan: Plan) -> str | None:
    """The one line `reproduce` prints before it starts: the measured-unit estimate of what is left to run."""
    seconds = cpu_estimate(plan)
    if seconds is None:
        return None
    return (
        f"estimated time: ≈ {_duration(seconds)} on a 2-core CPU (measured unit costs; finished settings are reused "
        "and cost nothing; see plan.md)"
    )


__all__ = ["EFFECTIVE_FLOPS", "KNOWN_PARAMS", "PAPER_KB_PASSAGES", "PAPER_SIZES", "estimate_lines", "estimate_work"]

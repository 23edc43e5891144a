"""The analysis pipeline: sample instances, retrieve, score tokens with each reader, measure, aggregate, write.

Instances are the same for every reader analysed: N questions sampled without replacement
with ``numpy.random.default_rng(seed)``, their top-K passages retrieved once. The answer is
the first gold answer (as in distillation training; questions without one are skipped and
counted) or, with ``answer="generated"``, each reader's own greedy answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.analysis.indicators import VerdictOptions, advice, summarize, verdict
from ragdistill.analysis.perplexity import DEFAULT_MAX_STEPS as IG_MAX_STEPS
from ragdistill.analysis.perplexity import DEFAULT_QUADRATURE as IG_QUADRATURE
from ragdistill.analysis.perplexity import DEFAULT_STEPS as IG_STEPS
from ragdistill.analysis.perplexity import DEFAULT_TOLERANCE as IG_TOLERANCE
from ragdistill.analysis.quality import (
    PERCENTILES,
    SKIP_NO_ANSWER_TOKENS,
    GroupMeasure,
    InstanceMeasures,
    answer_group_ids,
    measure_instance,
    noun_char_spans,
    question_noun_ids,
)
from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError, InputError
from ragdistill.signals import get_signal_spec

log = logging.getLogger(__name__)

ANSWER_MODES = ("gold", "generated")


@dataclass
class Instance:
    """One analysed question: its retrieved passages and the spaCy noun spans of the question."""

    question: Question
    passages: list[Passage]
    noun_spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ReaderAnalysis:
    """The per-instance measures of one reader (aligned with the instances) and their records."""

    name: str
    measures: list[InstanceMeasures]
    records: list[dict[str, Any]]


def sample_questions(
    questions: Sequence[Question], n: int, seed: int = 0, answer: str = "gold"
) -> tuple[list[Question], int]:
    """(sample, n_without_gold): up to n questions drawn without replacement, seeded.

    With ``answer="gold"`` questions without a gold answer cannot be analysed; they are left
    out before sampling and counted.
    """
    if n < 1:
        raise ConfigError("n", "the number of instances must be at least 1")
    pool = list(questions)
    n_missing = 0
    if answer == "gold":
        pool = [q for q in questions if q.answers and q.answers[0].strip()]
        n_missing = len(questions) - len(pool)
    if not pool:
        raise InputError("no question with a gold answer to analyse (use --answer generated for unanswered questions)")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[int(i)] for i in sorted(idx)], n_missing


def build_instances(
    questions: Sequence[Question], index: Any, retriever: Any, k: int, nlp: Any, batch_size: int = 64
) -> list[Instance]:
    """Retrieve the top-k passages of every question (one batched search) and tag the questions' nouns."""
    if k < 1:
        raise ConfigError("k", "the number of retrieved passages must be at least 1")
    texts = [q.question for q in questions]
    retrieved: list[list[Any]] = []
    for s in range(0, len(texts), batch_size):
        retrieved.extend(index.retrieve(retriever, texts[s : s + batch_size], k))
    docs = list(nlp.pipe(texts)) if hasattr(nlp, "pipe") else [nlp(t) for t in texts]
    out = []
    for q, hits, doc in zip(questions, retrieved, docs):
        spans = [(t.idx, t.idx + len(t.text)) for t in doc if t.pos_ in ("NOUN", "PROPN")]
        out.append(Instance(question=q, passages=[h.passage for h in hits], noun_spans=spans))
    return out


def instances_from_passages(
    questions: Sequence[Question], passages: Sequence[Sequence[Passage]], nlp: Any
) -> list[Instance]:
    """Instances from already retrieved passages (e.g. a training batch)."""
    return [Instance(q, list(ps), noun_char_spans(q.question, nlp)) for q, ps in zip(questions, passages)]


def _generate(reader: Any, instances: Sequence[Instance], batch_size: int, progress: bool) -> list[str]:
    from tqdm.auto import tqdm

    answers: list[str] = []
    for s in tqdm(range(0, len(instances), batch_size), desc="generating answers", disable=not progress, leave=False):
        chunk = instances[s : s + batch_size]
        answers.extend(reader.generate([i.question.question for i in chunk], [i.passages for i in chunk]))
    return answers


def token_scorer(signal: str):
    """How the analysis scores tokens for `signal`: the registry's ``token_scores`` (None for perplexity,
    whose integrated-gradients scores live in ``analysis.perplexity``); ConfigError when it has none."""
    if signal == "perplexity":
        return None
    token_scores = get_signal_spec(signal).token_scores
    if token_scores is None:
        raise ConfigError(
            "signal",
            f"the signal '{signal}' gives passage scores only: the analysis needs its token scores "
            "(register it with token_scores=...)",
        )
    return token_scores


def analyze_reader(
    reader: Any,
    instances: Sequence[Instance],
    name: str = "reader",
    signal: str = "attention",
    answer: str = "gold",
    percentiles: Iterable[int] = PERCENTILES,
    attention_options: dict | None = None,
    ig_steps: int | None = IG_STEPS,
    progress: bool = True,
    generate_batch_size: int = 8,
    ig_tolerance: float = IG_TOLERANCE,
    ig_max_steps: int = IG_MAX_STEPS,
    should_stop: Callable[[], str | None] | None = None,
) -> ReaderAnalysis:
    """Per-instance measures of one reader on the given instances (no aggregation).

    ``should_stop`` is asked before every instance; a reason it returns (a signal's, ``--max-time``'s)
    ends the analysis there with `training.stop.RunStopped`: one analysis can take an hour, and a
    scheduler's SIGTERM must not wait for it. Nothing is returned or written for a stopped analysis.

    Perplexity signal: ``ig_steps=None`` (default) is the adaptive integrated-gradients rule, refined
    until the completeness error is under ``ig_tolerance`` or a passage has ``ig_max_steps`` nodes;
    ``ig_steps=m`` a fixed m-point midpoint rule (analysis.perplexity).
    """
    from tqdm.auto import tqdm

    token_scores = token_scorer(signal)
    if answer not in ANSWER_MODES:
        raise ConfigError("answer", f"'{answer}' is not one of {', '.join(ANSWER_MODES)}")
    percentiles = tuple(int(p) for p in percentiles)
    embeddings = reader.input_embedding_matrix()
    tokenizer = reader.tokenizer
    answers = (
        _generate(reader, instances, generate_batch_size, progress)
        if answer == "generated"
        else [inst.question.answers[0] for inst in instances]
    )
    measures, records = [], []
    for inst, ans in tqdm(list(zip(instances, answers)), desc=f"analysing {name}", disable=not progress):
        reason = should_stop() if should_stop is not None else None
        if reason:
            from ragdistill.training.stop import RunStopped

            raise RunStopped(reason)
        q = inst.question
        record: dict[str, Any] = {
            "reader": name,
            "question_id": q.id,
            "question": q.question,
            "answer": ans,
            "answer_source": answer,
            "passage_ids": [p.id for p in inst.passages],
        }
        if not ans or not ans.strip():
            # an empty (generated) answer: nothing to score with; counted as skipped in both groups
            m = InstanceMeasures(
                n_passage_tokens=0,
                groups={g: GroupMeasure(skipped=SKIP_NO_ANSWER_TOKENS) for g in ("answer", "question")},
            )
        else:
            if token_scores is not None:  # the passage's title and text tokens, without template labels
                result = token_scores(
                    reader, q.question, inst.passages, ans, span="content", **(attention_options or {})
                )
            else:
                from ragdistill.analysis.perplexity import perplexity_token_scores

                result, diag = perplexity_token_scores(
                    reader,
                    q.question,
                    inst.passages,
                    ans,
                    steps=ig_steps,
                    tolerance=ig_tolerance,
                    max_steps=ig_max_steps,
                )
                record["passage_loglik"] = diag.loglik
                record["passage_loglik_gain"] = [a - b for a, b in zip(diag.loglik, diag.baseline_loglik)]
                record["passage_gain_sum"] = list(diag.gain_sums)  # Σ_t g_t: ≈ the gain by completeness
                record["ig_completeness_error"] = diag.completeness_error()
                record["ig_error_bound"] = diag.error_bound()  # adaptive rule: Σ|local errors| / Σ|gain|
                record["ig_tolerance_reached"] = diag.tolerance_reached()
                record["ig_rule"] = diag.rule
                record["ig_nodes"] = int(sum(diag.nodes))  # gradient evaluations over the passages
                record["passage_ig_nodes"] = list(diag.nodes)
            a_ids = answer_group_ids(result.answer_ids, tokenizer, answer=ans)  # + the answer's in-context ids
            n_ids = question_noun_ids(q.question, tokenizer, spans=inst.noun_spans)
            m = measure_instance(result, embeddings, answer_ids=a_ids, noun_ids=n_ids, percentiles=percentiles)
            record["passage_scores"] = [float(x) for x in result.passage_scores]
            record["noun_tokens"] = [tokenizer.decode([i]) for i in n_ids]
            record["answer_tokens"] = [tokenizer.decode([i]) for i in a_ids]
        record.update(m.to_dict())
        measures.append(m)
        records.append(record)
    return ReaderAnalysis(name=name, measures=measures, records=records)


def ig_settings(
    analyses: Sequence[ReaderAnalysis], steps: int | None, tolerance: float, max_steps: int
) -> dict[str, Any]:
    """The perplexity analysis' IG rule and its completeness errors over the analysed instances (indicators.json)."""
    records = [r for a in analyses for r in a.records if "ig_rule" in r]
    errors = [r["ig_completeness_error"] for r in records if r.get("ig_completeness_error") is not None]
    nodes = [r["ig_nodes"] for r in records]
    return {
        "ig_rule": "adaptive-trapezoid" if steps is None else f"{IG_QUADRATURE}-{steps}",
        "ig_steps": steps,
        "ig_quadrature": "trapezoid" if steps is None else IG_QUADRATURE,
        "ig_tolerance": tolerance,
        "ig_max_steps": max_steps if steps is None else None,
        "ig_completeness_error_median": float(np.median(errors)) if errors else None,
        "ig_completeness_error_max": float(np.max(errors)) if errors else None,
        "ig_within_tolerance_share": (
            float(np.mean([bool(r["ig_tolerance_reached"]) for r in records])) if records else None
        ),
        "ig_nodes_median": float(np.median(nodes)) if nodes else None,
    }


def build_indicators(
    analyses: Sequence[ReaderAnalysis],
    reference: str | None,
    options: VerdictOptions = VerdictOptions(),
    percentiles: Iterable[int] = PERCENTILES,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """indicators.json: summaries per reader, and each reader's verdict against the reference (with advice).

    The reference's own verdict (and every verdict when no reference is given) uses the
    absolute rule: the comparison is undefined for a reader against itself.
    """
    percentiles = tuple(int(p) for p in percentiles)
    summaries = {a.name: summarize(a.measures, percentiles) for a in analyses}
    ref_summary = summaries.get(reference) if reference else None
    verdicts = {}
    for name, s in summaries.items():
        v = verdict(s, None if name == reference else ref_summary, options)
        v["advice"], v["advice_reason"] = advice(v)
        verdicts[name] = v
    return {
        "settings": dict(settings or {}, percentiles=list(percentiles)),
        "reference": reference,
        "readers": summaries,
        "verdict": verdicts,
    }


def load_retrieval(
    retriever_name: str | None,
    index_dir: str | None,
    corpus: str | None,
    tmp_dir: str | None = None,
    progress: bool = True,
) -> tuple[Any, Any]:
    """(retriever, index): load an index built for this retriever, or build one in `tmp_dir` from a corpus.

    `retriever_name` None: with an index, the retriever and settings its manifest records (so an index built at
    `--max-length 128` is queried at 128); with a corpus, the bundled default."""
    from ragdistill.retrieval.index import PassageIndex, built_with
    from ragdistill.retrieval.retriever import DEFAULT_RETRIEVER, BiEncoderRetriever

    if bool(index_dir) == bool(corpus):
        raise ConfigError("index", "pass exactly one of --index DIR or --corpus PATH")
    settings: dict[str, Any] = {}
    if retriever_name is None and index_dir:
        retriever_name, settings = built_with(index_dir)
    retriever = BiEncoderRetriever.from_pretrained(retriever_name or DEFAULT_RETRIEVER, **settings)
    if index_dir:
        return retriever, PassageIndex.load(index_dir, retriever=retriever)
    from ragdistill.data.corpus import iter_passages

    if not Path(corpus).exists():
        raise InputError("corpus file not found", corpus)
    log.info("building an in-memory index of %s (pass --index to reuse one)", corpus)
    return retriever, PassageIndex.build(iter_passages(corpus), retriever, tmp_dir)


def write_outputs(
    out_dir: str | Path, indicators: dict[str, Any], analyses: Sequence[ReaderAnalysis]
) -> dict[str, str]:
    """indicators.json, instances.jsonl, figures/*.png and report.md, each written atomically."""
    import json

    from ragdistill.analysis.figures import write_figures
    from ragdistill.analysis.report import render_report
    from ragdistill.utils.io import atomic_file, atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pct = indicators["settings"]["percentiles"]
    figures = write_figures({a.name: a.measures for a in analyses}, out / "figures", pct)
    indicators = dict(indicators, figures=figures)
    atomic_write_json(out / "indicators.json", indicators)
    with atomic_file(out / "instances.jsonl") as f:
        for a in analyses:
            for r in a.records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", render_report(indicators, figures))
    return {
        "indicators": str(out / "indicators.json"),
        "instances": str(out / "instances.jsonl"),
        "report": str(out / "report.md"),
        "figures": str(out / "figures"),
    }


def _free(reader: Any) -> None:
    import gc

    del reader
    gc.collect()


def run_analysis(
    readers: Sequence[str],
    questions_path: str,
    *,
    reference: str | None = None,
    reader_kind: str = "auto",
    signal: str = "attention",
    retriever: str | None = None,
    index: str | None = None,
    corpus: str | None = None,
    n: int = 1000,
    k: int = 5,
    seed: int = 0,
    answer: str = "gold",
    options: VerdictOptions = VerdictOptions(),
    percentiles: Iterable[int] = PERCENTILES,
    device: str | None = None,
    ig_steps: int | None = IG_STEPS,
    progress: bool = True,
    ig_tolerance: float = IG_TOLERANCE,
    ig_max_steps: int = IG_MAX_STEPS,
) -> tuple[dict[str, Any], list[ReaderAnalysis]]:
    """Everything `ragdistill analyze` computes: (indicators, per-reader analyses); nothing is written.

    The reference (when given) is analysed first and is a row of every table; a reader
    equal to the reference is analysed once. Readers are loaded one at a time.
    """
    import tempfile

    from ragdistill.data.questions import load_questions
    from ragdistill.models import load_spacy
    from ragdistill.readers import get_reader
    from ragdistill.utils.seed import set_seed

    token_scorer(signal)  # an unknown signal, or one without token scores, is refused before any model loads
    if answer not in ANSWER_MODES:
        raise ConfigError("answer", f"'{answer}' is not one of {', '.join(ANSWER_MODES)}")
    if not -1.0 <= options.corr_threshold <= 1.0:
        raise ConfigError("corr-threshold", "a Spearman threshold must lie in [-1, 1]")
    if options.attention_measure not in ("lift", "mean"):
        raise ConfigError("verdict-attention", "must be 'lift' or 'mean'")
    percentiles = tuple(int(p) for p in percentiles)
    if options.percentile not in percentiles:
        raise ConfigError("verdict-percentile", f"must be one of the analysed percentiles {percentiles}")
    names: list[str] = []
    for name in ([reference] if reference else []) + list(readers):
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError("reader", "pass at least one --reader")
    set_seed(seed)
    qs = load_questions(questions_path)
    sample, n_missing = sample_questions(qs, n, seed, answer)
    nlp = load_spacy()
    with tempfile.TemporaryDirectory(prefix="ragdistill-analyze-") as tmp:
        retr, idx = load_retrieval(retriever, index, corpus, str(Path(tmp) / "index"), progress)
        instances = build_instances(sample, idx, retr, k, nlp)
        if hasattr(idx, "close"):
            idx.close()
    del retr
    analyses = []
    for name in names:
        kwargs = {"device": device} if device else {}
        reader = get_reader(name, kind=reader_kind, **kwargs)
        analyses.append(
            analyze_reader(
                reader,
                instances,
                name=name,
                signal=signal,
                answer=answer,
                percentiles=percentiles,
                ig_steps=ig_steps,
                progress=progress,
                ig_tolerance=ig_tolerance,
                ig_max_steps=ig_max_steps,
            )
        )
        _free(reader)
    settings = {
        "signal": signal,
        "answer": answer,
        "n_requested": n,
        "n_instances": len(instances),
        "k": k,
        "seed": seed,
        "questions": str(questions_path),
        "n_questions_without_gold_answer": n_missing,
        "retriever": retriever,
        "index": index,
        "corpus": corpus,
        "reader_kind": reader_kind,
        "verdict_attention_measure": options.attention_measure,
        "verdict_percentile": options.percentile,
        "corr_threshold": options.corr_threshold,
        "percentile_method": "numpy.percentile, linear interpolation; M = {t: sim_t >= threshold}",
        "std": "population (ddof=0)",
    }
    if signal == "perplexity":
        settings.update(ig_settings(analyses, ig_steps, ig_tolerance, ig_max_steps))
    return build_indicators(analyses, reference, options, percentiles, settings), analyses

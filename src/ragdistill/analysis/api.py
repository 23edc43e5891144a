"""`ragdistill.diagnose(...)`: the `ragdistill diagnose` pre-flight as a Python call.

    from ragdistill import diagnose
    report = diagnose(reader="smollm2-135m", questions="dev.jsonl", corpus="corpus.jsonl")
    report.verdict          # "distil from this reader" | "fine-tune it first (step 1)" | "expect no benefit"
    report.advice           # why, in one sentence
    report.answer_lift, report.answer_spearman, report.question_lift, report.question_spearman
    report.to_dict()        # everything, JSON-ready (the full indicators under "indicators")

It runs the same analysis as the CLI (`analysis.run.run_analysis`: sample, retrieve from
``index`` or an index built from ``corpus`` in a temporary folder, score, aggregate) and
applies the same verdict rule (`analysis.indicators.advice`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ragdistill.utils.ig_rule import DEFAULT_MAX_STEPS, DEFAULT_STEPS, DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on one reader as a distillation teacher, and the numbers behind it."""

    reader: str
    verdict: str  # the advice: distil / fine-tune first / expect no benefit
    advice: str  # the reason for it
    reference: str | None
    compared_to_reference: bool  # False: reader == reference (or none): the absolute rule decided
    indicator1: bool | None  # answer-related tokens better than the reference's (None: undefined)
    indicator2: bool | None  # question-related tokens better than the reference's (None: undefined)
    answer_lift: float | None  # mean attention lift on answer-related tokens (p-th percentile selection)
    answer_spearman: float | None  # mean Spearman of attention vs similarity to the answer
    question_lift: float | None
    question_spearman: float | None
    percentile: int
    n_instances: int
    indicators: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole indicators.json

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        from ragdistill.cli.diagnose import format_summary

        fmt = lambda h: "undefined" if h is None else ("holds" if h else "fails")  # noqa: E731
        if self.compared_to_reference:
            against = (
                f"Indicator 1 {fmt(self.indicator1)}, Indicator 2 {fmt(self.indicator2)} (against {self.reference})"
            )
        else:
            against = "no reference to compare with, the indicators are undefined; advice from the absolute numbers"
        table = format_summary(self.indicators) if self.indicators.get("readers") else ""
        return f"{table}\n{self.reader}: {against}.\nverdict: {self.verdict} — {self.advice}".lstrip("\n")


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def diagnose(
    reader: str = "smollm2-135m",
    questions: str | None = None,
    corpus: str | None = None,
    *,
    index: str | None = None,
    reference: str | None = None,
    retriever: str | None = None,
    reader_kind: str = "auto",
    signal: str = "attention",
    answer: str = "gold",
    n: int = 200,
    k: int = 5,
    seed: int = 0,
    corr_threshold: float = 0.3,
    verdict_percentile: int = 95,
    verdict_attention: str = "lift",
    ig_steps: int | None = DEFAULT_STEPS,
    device: str | None = None,
    progress: bool = False,
    out: str | None = None,
    ig_tolerance: float = DEFAULT_TOLERANCE,
    ig_max_steps: int = DEFAULT_MAX_STEPS,
) -> Diagnosis:
    """Is `reader` a good teacher for the retriever? The `ragdistill diagnose` verdict and its numbers.

    Pass the passages as ``corpus`` (any corpus file `ragdistill data inspect` reads; an index
    is built in a temporary folder) or ``index`` (a folder from `ragdistill index`; queried with the
    retriever and settings its manifest records unless ``retriever`` names one), exactly one. ``reference`` is the off-the-shelf checkpoint the reader came
    from; without one (or equal to ``reader``) the absolute rule decides. ``out`` also writes
    the full analysis (indicators.json, report.md, figures) there. Bad input raises the same
    `ragdistill.errors` the CLI reports.
    """
    from ragdistill.analysis.indicators import VerdictOptions
    from ragdistill.analysis.run import run_analysis, write_outputs
    from ragdistill.errors import ConfigError

    if not questions:
        raise ConfigError("questions", "pass questions=PATH (a question set file)")
    from ragdistill.utils.ig_rule import check_ig_options

    check_ig_options(ig_steps, ig_tolerance, ig_max_steps, prefix="ig_")
    for key, value in (("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"must be a whole number of at least 1, got {value!r}")
    options = VerdictOptions(
        corr_threshold=corr_threshold, percentile=verdict_percentile, attention_measure=verdict_attention
    )
    indicators, analyses = run_analysis(
        [reader],
        str(questions),
        reference=reference,
        reader_kind=reader_kind,
        signal=signal,
        retriever=retriever,
        index=None if index is None else str(index),
        corpus=None if corpus is None else str(corpus),
        n=n,
        k=k,
        seed=seed,
        answer=answer,
        options=options,
        device=device,
        ig_steps=ig_steps,
        progress=progress,
        ig_tolerance=ig_tolerance,
        ig_max_steps=ig_max_steps,
    )
    if out:
        write_outputs(out, indicators, analyses)
    v = indicators["verdict"][reader]
    p = v["percentile"]
    s = indicators["readers"][reader]
    return Diagnosis(
        reader=reader,
        verdict=v["advice"],
        advice=v["advice_reason"],
        reference=indicators.get("reference"),
        compared_to_reference=bool(v["compared_to_reference"]),
        indicator1=v["indicator1"]["holds"],
        indicator2=v["indicator2"]["holds"],
        answer_lift=_num(s["answer"][f"p{p}"]["lift_mean"]),
        answer_spearman=_num(s["answer"][f"p{p}"]["spearman_mean"]),
        question_lift=_num(s["question"][f"p{p}"]["lift_mean"]),
        question_spearman=_num(s["question"][f"p{p}"]["spearman_mean"]),
        percentile=int(p),
        n_instances=int(s["n_instances"]),
        indicators=indicators,
    )

"""`ragdistill analyze`: the attention-quality analysis of one or more readers (the two indicators).

Writes indicators.json, instances.jsonl, report.md (the study's Tables 2–4 and the verdict)
and figures/*.png into --out.
"""

from __future__ import annotations

import argparse

from ragdistill.utils.ig_rule import DEFAULT_MAX_STEPS as IG_MAX_STEPS
from ragdistill.utils.ig_rule import DEFAULT_TOLERANCE as IG_TOLERANCE

HELP = "measure whether readers' attention is a good distillation teacher (the two indicators)"

DESCRIPTION = """\
For N sampled questions: retrieve the top-K passages, score every passage token with the
reader (attention, or per-token answer log-likelihood gains for the perplexity signal),
and measure how much of that score lands on tokens similar to the answer (Indicator 1)
and to the question's nouns (Indicator 2), and how well it follows the similarity
(Spearman). Indicator 1 holds when the mean attention (p95) and the mean Spearman on
answer-related tokens both exceed the reference reader's; Indicator 2 when the mean
attention on question-related tokens exceeds the reference's and the mean Spearman is
above --corr-threshold. Attention is compared through the lift (mean attention x number
of passage tokens) by default, since the raw mean shrinks as prompts grow.

example:
  ragdistill analyze --reader runs/step1/reader --reference smollm2-135m \\
      --index runs/index --questions data/demo/dev.jsonl --n 200 --out runs/analysis
"""


def add_common_arguments(p: argparse.ArgumentParser, default_n: int) -> None:
    """Options shared by `analyze` and `diagnose`."""
    p.add_argument(
        "--reader",
        action="append",
        metavar="NAME|CKPT",
        help="reader to analyse: a bundled name (smollm2-135m), a Hugging Face id or a checkpoint "
        "directory; repeat to analyse several (default: smollm2-135m)",
    )
    p.add_argument(
        "--reader-kind",
        choices=["auto", "decoder", "fid"],
        default="auto",
        help="decoder-only or encoder-decoder (FiD) reader; 'auto' reads the model config (default: auto)",
    )
    p.add_argument(
        "--reference",
        metavar="NAME|CKPT",
        help="reference reader the indicators compare against, normally the off-the-shelf checkpoint "
        "the reader was fine-tuned from; omitted (or equal to the reader) the comparison is "
        "undefined and the advice comes from the absolute numbers",
    )
    p.add_argument(
        "--signal",
        choices=["attention", "perplexity"],
        default="attention",
        help="per-token scores analysed: the reader's attention (METHOD.md §3.2 w_t), or the per-token answer "
        "log-likelihood gains of the perplexity signal (integrated gradients; slower) (default: attention)",
    )
    p.add_argument(
        "--retriever",
        metavar="NAME|CKPT",
        help="retriever for the top-K passages: bundled name, HF id or a saved retriever (default: with --index "
        "the one that built it, with its settings such as max length; with --corpus minilm-l6)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", metavar="DIR", help="index directory built by `ragdistill index` for this retriever")
    src.add_argument("--corpus", metavar="PATH", help="passage file; an index is built in a temporary directory")
    p.add_argument(
        "--questions", required=True, metavar="PATH", help="questions file (jsonl/json/tsv, see `ragdistill data`)"
    )
    p.add_argument("--n", type=int, default=default_n, help=f"number of sampled questions (default: {default_n})")
    p.add_argument("--k", type=int, default=5, help="passages retrieved per question (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question sample (default: 0)")
    p.add_argument(
        "--answer",
        choices=["gold", "generated"],
        default="gold",
        help="answer whose tokens the reader scores: the first gold answer (as in training) or the "
        "reader's own greedy answer (default: gold)",
    )
    p.add_argument(
        "--corr-threshold",
        type=float,
        default=0.3,
        help="Indicator 2's mean Spearman threshold, also the absolute rule's (default: 0.3)",
    )
    p.add_argument(
        "--verdict-percentile",
        type=int,
        choices=[90, 95],
        default=95,
        help="which selection (p-th percentile of similarity) the verdict reads (default: 95)",
    )
    p.add_argument(
        "--verdict-attention",
        choices=["lift", "mean"],
        default="lift",
        help="attention compared by the verdict: the lift (comparable across prompt lengths) or the raw "
        "mean of normalised attention, as the study's tables print it (default: lift)",
    )
    p.add_argument(
        "--ig-tolerance",
        type=float,
        default=IG_TOLERANCE,
        help="perplexity signal only: the adaptive integrated-gradients rule refines each instance's path "
        "until its completeness error |sum of token gains - log-likelihood gain| / |gain| is under "
        f"this (default: {IG_TOLERANCE})",
    )
    p.add_argument(
        "--ig-max-steps",
        type=int,
        default=IG_MAX_STEPS,
        help="perplexity signal only: at most this many gradient evaluations per passage for the adaptive "
        f"rule; instances that stop there are flagged ig_tolerance_reached=false (default: {IG_MAX_STEPS})",
    )
    p.add_argument(
        "--ig-steps",
        type=int,
        default=None,
        metavar="N",
        help="perplexity signal only: a fixed N-point midpoint integrated-gradients rule per passage instead "
        "of the adaptive one (its completeness error is recorded, not controlled; default: adaptive)",
    )
    p.add_argument("--device", help="torch device for the readers, e.g. cuda or cpu (default: CUDA when present)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_from_args(args: argparse.Namespace):
    """Shared by analyze and diagnose: validate the options and run the analysis."""
    from ragdistill.analysis.indicators import VerdictOptions
    from ragdistill.analysis.run import run_analysis
    from ragdistill.errors import ConfigError
    from ragdistill.utils.ig_rule import check_ig_options

    if args.n < 1:
        raise ConfigError("n", "must be at least 1")
    if args.k < 1:
        raise ConfigError("k", "must be at least 1")
    check_ig_options(args.ig_steps, args.ig_tolerance, args.ig_max_steps)
    options = VerdictOptions(
        corr_threshold=args.corr_threshold, percentile=args.verdict_percentile, attention_measure=args.verdict_attention
    )
    readers = args.reader or ["smollm2-135m"]
    return run_analysis(
        readers,
        args.questions,
        reference=args.reference,
        reader_kind=args.reader_kind,
        signal=args.signal,
        retriever=args.retriever,
        index=args.index,
        corpus=args.corpus,
        n=args.n,
        k=args.k,
        seed=args.seed,
        answer=args.answer,
        options=options,
        device=args.device,
        ig_steps=args.ig_steps,
        progress=not args.no_progress,
        ig_tolerance=args.ig_tolerance,
        ig_max_steps=args.ig_max_steps,
    )


def _run(args: argparse.Namespace) -> int:
    from ragdistill.analysis.run import write_outputs

    indicators, analyses = run_from_args(args)
    paths = write_outputs(args.out, indicators, analyses)
    for name, v in indicators["verdict"].items():
        i1, i2 = v["indicator1"]["holds"], v["indicator2"]["holds"]
        fmt = lambda h: "undefined" if h is None else ("holds" if h else "fails")  # noqa: E731
        print(f"{name}: Indicator 1 {fmt(i1)}, Indicator 2 {fmt(i2)} -> {v['advice']}")
    print(f"wrote {paths['report']}, {paths['indicators']}, {paths['instances']} and {paths['figures']}/")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(p, default_n=1000)
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory: indicators.json, instances.jsonl, report.md, figures/",
    )
    p.set_defaults(func=_run)
    return p

"""`ragdistill diagnose`: a quick pre-flight of a reader as a distillation teacher, with one line of advice."""

from __future__ import annotations

import argparse

from ragdistill.cli.analyze import add_common_arguments

HELP = "quick pre-flight: is this reader a good teacher? prints the indicators and one line of advice"

DESCRIPTION = """\
Runs the attention-quality analysis on a small sample (default 200 questions) and prints
the indicators and one line of advice:

  against a reference (--reference, the off-the-shelf checkpoint the reader came from):
    both indicators hold      -> distil from this reader
    exactly one holds         -> fine-tune it first (step 1)
    neither holds             -> expect no benefit
  without a reference (or --reference equal to --reader): the comparison is undefined;
    on both answer- and question-related tokens, mean Spearman > --corr-threshold and
    mean lift > 1 (more attention than uniform)  -> distil from this reader
    otherwise                                    -> fine-tune it first (step 1)

example:
  ragdistill diagnose --reader smollm2-135m --index runs/index --questions data/demo/dev.jsonl
"""


def _fmt(x, spec: str) -> str:
    return "   –  " if x is None else format(x, spec)


def format_summary(indicators: dict) -> str:
    """A compact text table of the indicators (p95 lift and Spearman) for the terminal."""
    p = indicators["settings"].get("verdict_percentile", 95)
    lines = [f"{'reader':<40} {'answer lift':>11} {'answer ρ':>9} {'question lift':>13} {'question ρ':>10}"]
    for name, s in indicators["readers"].items():
        a, q = s["answer"][f"p{p}"], s["question"][f"p{p}"]
        label = name + (" (reference)" if name == indicators.get("reference") else "")
        lines.append(
            f"{label[-40:]:<40} {_fmt(a['lift_mean'], '11.2f')} {_fmt(a['spearman_mean'], '9.3f')} "
            f"{_fmt(q['lift_mean'], '13.2f')} {_fmt(q['spearman_mean'], '10.3f')}"
        )
    s0 = next(iter(indicators["readers"].values()))
    q0 = s0["question"][f"p{p}"]
    lines.append(
        f"(p{p} selection; {s0['n_instances']} instances; Spearman undefined for {s0['answer'][f'p{p}']['n_undefined']} "
        f"answer / {q0['n_undefined']} question instances; {q0['n_skipped_no_nouns']} questions without nouns)"
    )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from ragdistill.analysis.run import write_outputs
    from ragdistill.cli.analyze import run_from_args

    indicators, analyses = run_from_args(args)
    if args.out:
        write_outputs(args.out, indicators, analyses)
    print(format_summary(indicators))
    reference = indicators.get("reference")
    for name, v in indicators["verdict"].items():
        if name == reference and len(indicators["readers"]) > 1:
            continue  # the reference is only the yardstick
        if not v["compared_to_reference"]:
            print(
                f"{name}: no reference to compare with, the indicators are undefined; advice from the absolute numbers."
            )
        else:
            fmt = lambda h: "undefined" if h is None else ("holds" if h else "fails")  # noqa: E731
            print(f"{name}: Indicator 1 {fmt(v['indicator1']['holds'])}, Indicator 2 {fmt(v['indicator2']['holds'])}.")
        print(f"advice: {v['advice']} — {v['advice_reason']}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "diagnose", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(p, default_n=200)
    p.add_argument(
        "--out", metavar="DIR", help="also write the full analysis (indicators.json, report.md, figures) here"
    )
    p.set_defaults(func=_run)
    return p

"""`ragdistill validate-indicators`: do the attention-quality indicators predict which reader is a good teacher?"""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "build teachers of graded quality, distil from each, and test whether the indicators predicted the outcome"

DESCRIPTION = """\
Builds teachers of graded quality from the bundled models (the off-the-shelf reader; step-1
readers saved after 1/8, 1/4, 1/2 and all of their fine-tuning; readers degraded on purpose:
attention from a subset of layers, top layers re-initialised, value-norm weighting off, the
perplexity signal, the position-debiased signal; the offline FiD reader before and after it is
fitted), plus any reader named with --teachers. For each: the indicators' inputs and two simple
predictors (ranking skill, position bias) on the same analysed instances, and one identical
step-2 run (retriever only) whose test ΔHR@1/ΔHR@5 against the initial retriever is reported with
its paired 95 % interval. Then: Spearman ρ of each input with ΔHR@5 across teachers (bootstrap
interval over questions, instances and teachers), the decision rule's record, scatter plots and
OUT/report.md. Finished units are reused on a rerun (--force redoes them).
"""

EPILOG = """\
examples:
  ragdistill validate-indicators --dry-run --out runs/sweep          # plan and estimated time (demo world)
  ragdistill validate-indicators --out runs/sweep                    # the demo sweep
  ragdistill validate-indicators --out runs/sweep --teachers runs/demo/finetuned_step1/reader
  ragdistill validate-indicators --corpus ../shared/data/squad/dev-v1.1.json \\
      --questions ../shared/data/squad/dev-v1.1.json --out runs/sweep-squad   # SQuAD, split by article
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate-indicators",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (report.md, report.json, figures/)")
    p.add_argument("--config", metavar="FILE", help="sweep config (default: configs/demo/sweep/sweep.yaml)")
    d = p.add_argument_group("data (default: the bundled demo world)")
    d.add_argument(
        "--corpus", metavar="PATH", help="knowledge base (any corpus format `ragdistill data inspect` knows)"
    )
    d.add_argument(
        "--questions",
        metavar="PATH",
        help="one SQuAD file, split by article into train/dev/test (give the same file as --corpus)",
    )
    d.add_argument("--questions-train", metavar="PATH", help="training questions (step 1, step 2, FiD fitting)")
    d.add_argument("--questions-dev", metavar="PATH", help="held-out questions during training (default: test)")
    d.add_argument("--questions-test", metavar="PATH", help="questions of the analysis and of the final evaluations")
    d.add_argument(
        "--split-by-article", action="store_true", help="split the SQuAD --corpus file's questions by article"
    )
    t = p.add_argument_group("teachers and models")
    t.add_argument(
        "--teachers",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="add a teacher: a built-in teacher's name, or any reader (bundled name, HF id, directory); "
        "repeatable or comma-separated",
    )
    t.add_argument("--only", metavar="TEACHER,...", help="run only these teachers")
    t.add_argument("--reader", metavar="NAME", help="decoder-only reader instead of the configs' (smollm2-135m)")
    t.add_argument("--fid-reader", metavar="NAME", help="FiD reader instead of the configs' (minilm-bert2bert)")
    t.add_argument("--retriever", metavar="NAME", help="initial retriever instead of the configs' (minilm-l6)")
    r = p.add_argument_group("running")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training-config key in every run of the sweep (e.g. runtime.device=cpu)",
    )
    r.add_argument("--n", type=int, help="analysed instances (default: the sweep config's analysis.n)")
    r.add_argument("--seed", type=int, help="seed of the analysed sample (default: the sweep config's)")
    r.add_argument("--resamples", type=int, help="bootstrap resamples of the correlations (default: the config's)")
    r.add_argument("--force", action="store_true", help="redo finished units instead of reusing them")
    r.add_argument("--dry-run", action="store_true", help="print the plan and the estimated time; run nothing")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _split(values):
    out = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def run(args: argparse.Namespace) -> int:
    from ragdistill.experiments.sweep import SweepOptions, build_sweep_plan, format_sweep_plan, run_sweep

    options = SweepOptions(
        out=args.out,
        config=args.config,
        corpus=args.corpus,
        questions=args.questions,
        questions_train=args.questions_train,
        questions_dev=args.questions_dev,
        questions_test=args.questions_test,
        split_by_article=args.split_by_article,
        teachers=_split(args.teachers),
        only=_split([args.only]) if args.only else None,
        overrides=list(args.overrides),
        reader=args.reader,
        fid_reader=args.fid_reader,
        retriever=args.retriever,
        n=args.n,
        seed=args.seed,
        resamples=args.resamples,
        force=args.force,
        progress=args.progress,
        command="ragdistill " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    if args.dry_run:
        print(format_sweep_plan(build_sweep_plan(options, write=False)))
        return 0
    report = run_sweep(options)
    print(f"report: {options.out / 'report.md'}")
    return 1 if report.get("failed") else 0

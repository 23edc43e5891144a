"""`ragdistill reproduce`: every setting of the study end to end, with Table 1, Table 2, figures and verdicts."""

from __future__ import annotations

import argparse
import shlex
import sys

from ragdistill.utils.ig_rule import DEFAULT_MAX_STEPS as IG_MAX_STEPS
from ragdistill.utils.ig_rule import DEFAULT_TOLERANCE as IG_TOLERANCE

HELP = "run every setting of the study and write its report (Table 1, Figure 1, Table 2, verdicts)"

DESCRIPTION = """\
Runs the study's settings (METHOD.md §4) one after the other and writes DIR/report.md,
DIR/report.json and DIR/figures/:

  1  off-the-shelf checkpoint        evaluate + analyse the initial reader (reference row)
  1b off-the-shelf FiD checkpoint    the same for the encoder-decoder reader (reference of 5, 6)
  2  off-the-shelf distillation      reader and retriever trained jointly (attention signal)
  3  fine-tuned distillation step 1  the reader learns to answer; retriever fixed
  4  fine-tuned distillation step 2  the retriever learns from the step-1 reader; periodic refresh
  5  encoder-decoder distillation    FiD reader, cross-attention signal
  6  perplexity distillation         FiD reader, perplexity signal
  6b perplexity distillation         decoder-only reader (only with --reader)

For each: HR@1/5/20, EM and F1 on the test questions, and the attention-quality indicators of
its final reader against the off-the-shelf reader of the same family. Settings that cannot run
here (a model that is not available offline, no GPU for a GPU config, missing data) are listed in
the report with the reason and the flag that would run them. Each setting's directory holds its
resolved config.yaml and a completion marker: rerunning the same command reuses finished
settings (and resumes an interrupted training run); --force redoes them.
"""

EPILOG = """\
examples:
  ragdistill reproduce --scale demo --out runs/demo                        # the bundled demo world (make demo)
  ragdistill reproduce --scale paper --dry-run --out runs/paper            # NQ + TriviaQA plan, configs, work estimate
  ragdistill reproduce --scale demo --corpus ../shared/data/squad/dev-v1.1.json \\
      --questions-train ../shared/data/squad/dev-v1.1.json \\
      --questions-test ../shared/data/squad/dev-v1.1.json --out runs/squad  # SQuAD-open, split by article
  ragdistill reproduce --scale paper --dataset nq --corpus psgs_w100.tsv \\
      --questions-train nq-train.jsonl --questions-dev nq-dev.jsonl --questions-test nq-test.jsonl --out runs/nq
  ragdistill reproduce --scale demo --only finetuned_step2 --set train.steps=80 --out runs/demo
  ragdistill reproduce --scale demo --set encdec_distill:optim.lr_reader=3e-4 --out runs/demo   # one setting only
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reproduce",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale",
        choices=["demo", "paper"],
        default="demo",
        help="demo: configs/demo (bundled models, CPU, minutes); paper: configs/paper (Falcon-1B / T5-large "
        "readers, Contriever, the paper's steps; GPUs) (default: demo)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory: one sub-directory per dataset and setting, report.md, report.json, figures/",
    )
    data = p.add_argument_group(
        "data (default: the bundled demo world at demo scale, the configs' NQ/TriviaQA paths at paper scale)"
    )
    data.add_argument(
        "--corpus",
        metavar="PATH",
        help="knowledge base: DPR psgs_w100.tsv, passages JSONL, FlashRAG JSONL, SQuAD JSON (its paragraphs) "
        "or a DPR bi-encoder file",
    )
    data.add_argument(
        "--questions-train", metavar="PATH", help="training questions (NQ-open, TriviaQA, SQuAD, DPR, JSONL/TSV)"
    )
    data.add_argument(
        "--questions-dev",
        metavar="PATH",
        help="held-out questions for the HR@5 curve during training (default: the test questions)",
    )
    data.add_argument("--questions-test", metavar="PATH", help="questions of the final evaluation and of the analysis")
    data.add_argument(
        "--split-by-article",
        action="store_true",
        help="split the SQuAD --corpus file's questions by article into train/dev/test (no article in two "
        "splits); done automatically when the same SQuAD file is given for train and test",
    )
    data.add_argument(
        "--dataset",
        dest="datasets",
        action="append",
        choices=["nq", "triviaqa"],
        metavar="NAME",
        help="paper scale: which dataset section(s) of configs/paper to run, nq and/or triviaqa "
        "(repeatable; default: both). With data files, only names the dataset",
    )
    models = p.add_argument_group("models (default: the configs' — bundled offline models at demo scale)")
    models.add_argument(
        "--reader",
        metavar="NAME",
        help="decoder-only reader for settings 1-4 (bundled name, Hugging Face id or local directory); "
        "also turns on setting 6b, perplexity distillation with this decoder-only reader",
    )
    models.add_argument(
        "--encdec-reader",
        metavar="NAME",
        help="encoder-decoder (FiD) reader for settings 1b, 5 and 6, e.g. google-t5/t5-large or a local T5 "
        "directory (demo default: the offline minilm-bert2bert, untrained cross-attention)",
    )
    models.add_argument(
        "--retriever", metavar="NAME", help="initial bi-encoder retriever for every setting (default: the configs')"
    )
    run = p.add_argument_group("running")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every setting (e.g. train.steps=20), or in one setting with "
        "SETTING:KEY=VALUE (e.g. finetuned_step2:optim.lr_retriever=1e-4); repeatable",
    )
    run.add_argument(
        "--only",
        metavar="SETTING,...",
        help="run only these settings (plus what they need: step 1 for step 2, the reference rows); "
        "others are shown from earlier runs or listed as not run",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="redo the selected settings even when a finished run with the same config exists",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, the resolved configs and an estimate of the work (steps x tokens, refreshes x "
        "KB size, FLOPs); load no model, write nothing",
    )
    run.add_argument(
        "--analysis-n",
        type=int,
        metavar="N",
        help="test instances analysed per setting and view for the indicators (default: 300 demo, 1000 "
        "paper; at most the test questions with a gold answer)",
    )
    run.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="run every training setting with N seeds (train.seed + 0 .. N-1, one directory and marker per "
        "seed); Table 1 shows the mean ± sd over the seeds beside the first seed's intervals (default: 1)",
    )
    run.add_argument(
        "--analysis-seed", type=int, default=0, help="seed of the analysed sample and of the article split (default: 0)"
    )
    run.add_argument(
        "--ig-tolerance",
        type=float,
        default=IG_TOLERANCE,
        help="perplexity-signal analysis: the adaptive integrated-gradients rule refines each instance until "
        f"its completeness error is under this (default: {IG_TOLERANCE})",
    )
    run.add_argument(
        "--ig-max-steps",
        type=int,
        default=IG_MAX_STEPS,
        help=f"perplexity-signal analysis: at most this many gradient evaluations per passage (default: {IG_MAX_STEPS})",
    )
    run.add_argument(
        "--ig-steps",
        type=int,
        default=None,
        metavar="N",
        help="perplexity-signal analysis: a fixed N-point midpoint rule instead of the adaptive one "
        "(default: adaptive)",
    )
    run.add_argument(
        "--configs", metavar="DIR", help="directory holding demo/ and paper/ configs (default: the checkout's configs/)"
    )
    run.add_argument(
        "--no-hub-check",
        action="store_true",
        help="do not probe the Hugging Face hub for models that are not cached (treat them as unavailable)",
    )
    run.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each finished training run's checkpoints/ (optimizer state included; gigabytes per "
        "setting); by default only the trained reader/ and retriever/ are kept once a setting completes",
    )
    run.add_argument(
        "--max-time",
        metavar="DURATION",
        type=_duration,
        help="stop cleanly before this much wall-clock time (e.g. 3h50m, 90m, seconds): a training setting "
        "saves a checkpoint (exit 75), an analysis stops before its next instance; rerunning the command "
        "resumes it. SIGTERM (exit 143) and SIGUSR1 (138) stop the same way; the stopped setting is not marked "
        "finished (a stopped analysis is redone, its training reused)",
    )
    run.add_argument(
        "--log-with",
        metavar="NAME[,NAME]",
        type=_log_with,
        help="every training setting logs to these trackers (runtime.log_with; default tensorboard): "
        "tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio, "
        "comma-separated; none: metrics.jsonl only. Finished settings are reused whatever the trackers",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=run_command)
    return p


def _duration(text: str) -> float:
    from ragdistill.cli.train import _duration as parse

    return parse(text)


def _log_with(text: str) -> list[str]:
    from ragdistill.cli.train import _log_with as parse

    return parse(text)


def run_command(args: argparse.Namespace) -> int:
    from ragdistill.training import stop

    deadline = stop._clock() + args.max_time if args.max_time else None
    from ragdistill.cli.train import log_with_override
    from ragdistill.experiments.plan import Options, build_plan, format_plan, planned_status
    from ragdistill.experiments.runner import reproduce

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    argv = sys.argv[1:] if _launched_as_ragdistill() and "reproduce" in sys.argv[1:3] else None
    command = "ragdistill " + shlex.join(argv) if argv else _command_from_args(args)
    options = Options(
        out=args.out,
        scale=args.scale,
        corpus=args.corpus,
        questions_train=args.questions_train,
        questions_dev=args.questions_dev,
        questions_test=args.questions_test,
        split_by_article=args.split_by_article,
        reader=args.reader,
        encdec_reader=args.encdec_reader,
        retriever=args.retriever,
        datasets=args.datasets,
        overrides=list(args.overrides) + log_with_override(getattr(args, "log_with", None)),
        force=args.force,
        only=only,
        analysis_n=args.analysis_n,
        analysis_seed=args.analysis_seed,
        ig_steps=args.ig_steps,
        ig_tolerance=args.ig_tolerance,
        ig_max_steps=args.ig_max_steps,
        progress=not args.no_progress,
        configs_dir=args.configs,
        command=command,
        check_hub=not args.no_hub_check,
        keep_checkpoints=args.keep_checkpoints,
        deadline=deadline,
        seeds=args.seeds,
    )
    if args.dry_run:
        plan = build_plan(options, write=False)
        planned_status(plan)
        print(format_plan(plan))
        return 0
    report = reproduce(options)
    out = options.out
    print(
        f"\nwrote {out / 'report.md'}, {out / 'report.json'} and {out / 'figures'}/ "
        f"({report['wall_seconds'] / 60:.1f} min)"
    )
    for r in report["settings"]:
        m = r["metrics"] or {}
        if r["status"] in ("ran", "reused"):
            print(
                f"  {r['dataset']:>10} {r['number']:>2} {r['name']:<28} HR@5 {100 * m.get('hr@5', float('nan')):5.1f}  "
                f"EM {100 * m.get('em', float('nan')):5.1f}  F1 {100 * m.get('f1', float('nan')):5.1f}  ({r['status']})"
            )
        else:
            print(f"  {r['dataset']:>10} {r['number']:>2} {r['name']:<28} {r['status']}: {r['reason'] or r['error']}")
    return 1 if report["failed"] else 0


def _launched_as_ragdistill() -> bool:
    """True when this process is the `ragdistill` command (or `python -m ragdistill`), so argv is the command line."""
    from pathlib import Path

    if not sys.argv:
        return False
    prog = Path(sys.argv[0])
    return prog.name == "ragdistill" or (prog.name == "__main__.py" and prog.parent.name == "ragdistill")


def _log_with_text(names: list[str] | None) -> str | None:
    return None if names is None else ",".join(names) or "none"


def _command_from_args(args: argparse.Namespace) -> str:
    parts = ["ragdistill", "reproduce", "--scale", args.scale, "--out", args.out]
    for flag, value in (
        ("--corpus", args.corpus),
        ("--questions-train", args.questions_train),
        ("--questions-dev", args.questions_dev),
        ("--questions-test", args.questions_test),
        ("--reader", args.reader),
        ("--encdec-reader", args.encdec_reader),
        ("--retriever", args.retriever),
        ("--only", args.only),
        ("--analysis-n", args.analysis_n),
        ("--configs", args.configs),
        ("--seeds", args.seeds if args.seeds != 1 else None),
        ("--log-with", _log_with_text(getattr(args, "log_with", None))),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for d in args.datasets or []:
        parts += ["--dataset", d]
    for o in args.overrides:
        parts += ["--set", o]
    if args.split_by_article:
        parts.append("--split-by-article")
    return shlex.join(parts)

"""`ragdistill train`: run one training config (joint, reader or retriever regime) into a run directory."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  ragdistill train --config configs/demo/finetuned_step1.yaml --out runs/step1
  ragdistill train --config configs/demo/finetuned_step2.yaml --out runs/step2 --set reader.name=runs/step1/reader
  ragdistill train --config configs/paper/offshelf_distill.yaml --set dataset=triviaqa --out runs/tqa  # paper scale
  ragdistill train --config ... --out runs/step1 --resume        # continue from the last intact checkpoint
  ragdistill train --config ... --out runs/step1 --log-with tensorboard,wandb   # also to Weights & Biases
  torchrun --nproc_per_node 2 -m ragdistill train --config ... --out ...           # 2 CPU processes (gloo)
  accelerate launch --multi_gpu --num_processes 8 -m ragdistill train --config ... --out ...  # 8 GPUs

The run directory receives config.yaml (the resolved config), metrics.jsonl, tensorboard/,
checkpoints/, the trained reader/ and/or retriever/ (loadable by path), eval/ (final
metrics.json and predictions.jsonl) and completed.json when the run has finished.
--log-with sends the config and every metric to other trackers too or instead (wandb, mlflow, ...).

stopping and resuming (the step in progress finishes, a checkpoint is saved, then):
  exit 130  SIGINT (Ctrl-C; a second Ctrl-C aborts at once)
  exit 143  SIGTERM (SLURM, Kubernetes, ... before they kill a job)
  exit 138  SIGUSR1 (SLURM: sbatch --signal=USR1@120)
  exit 75   --max-time reached (stopped before the next step and a checkpoint would overrun it)
  exit 3    another process of a multi-process run died or hung (runtime.collective_timeout);
            nothing is saved after the last complete checkpoint
  exit 2    bad input, or --out is in use by another live process (the message names it: pid, host, start)
Then run the same command with --resume: it ends exactly as an unbroken run would.
  ragdistill train --config ... --out runs/x --resume --max-time 3h50m   # e.g. a 4-hour job slot
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train the reader and/or the retriever (joint, reader or retriever regime)",
        description="Train with one explicit loop: refresh index if due -> retrieve top-K -> reader -> signal -> "
        "losses -> backward -> step -> log -> evaluate -> save.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", required=True, metavar="FILE", help="YAML training config (see configs/demo and configs/paper)"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="run directory (created; refused if it holds another run)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr_reader=1e-5 --set train.steps=100 (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in --out (corrupt ones are skipped)",
    )
    p.add_argument(
        "--max-time",
        metavar="DURATION",
        type=_duration,
        help="stop cleanly (checkpoint, exit 75) before this much wall-clock time has passed since the "
        "command started, e.g. 3h50m, 90m, 01:30:00 or seconds; the stop comes when the next step "
        "and a checkpoint would not fit (longest step and checkpoint seen so far)",
    )
    p.add_argument(
        "--stop-if-poor",
        action="store_true",
        help="end the run early when the attention-quality monitor (monitor.every > 0) judges the reader a poor teacher",
    )
    p.add_argument("--log-with", metavar="NAME[,NAME]", type=_log_with, help=LOG_WITH_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, train nothing")
    p.set_defaults(func=run)
    return p


LOG_WITH_HELP = (
    "experiment trackers for the config and the metrics (runtime.log_with): tensorboard (default; "
    "RUN/tensorboard/, no account), wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio "
    "(accelerate's; their own login/environment), comma-separated; none: metrics.jsonl only. "
    "May change on --resume"
)


def _log_with(text: str) -> list[str]:
    """``a,b`` -> ['a', 'b']; ``none`` -> [] (names are checked with the config)."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    return [] if names == ["none"] else names


def log_with_override(names: list[str] | None) -> list[str]:
    """The --set override for --log-with (none when the flag was not given)."""
    import json

    return [] if names is None else [f"runtime.log_with={json.dumps(names)}"]


def _duration(text: str) -> float:
    from ragdistill.training.stop import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ragdistill.training import stop

    deadline = stop._clock() + args.max_time if args.max_time else None
    from ragdistill.config import load_config

    cfg = load_config(args.config, args.overrides + log_with_override(args.log_with), check_hardware=not args.dry_run)
    if args.dry_run:
        print(cfg.to_yaml(), end="")
        return 0
    from ragdistill.training.loop import train

    summary = train(
        cfg,
        args.out,
        resume=args.resume,
        stop_if_poor=args.stop_if_poor,
        progress=not args.no_progress,
        config_source=str(args.config),
        deadline=deadline,
    )
    if summary.get("interrupted"):
        why = {
            "terminated": "terminated (SIGTERM)",
            "SIGUSR1": "stopped by SIGUSR1",
            "max-time": "stopped before --max-time ran out",
        }.get(summary.get("reason"), "interrupted")
        print(f"{why} at step {summary['step']}: a checkpoint was saved; continue with --resume")
        return int(summary.get("exit_code", 130))
    import os

    from ragdistill.training.distributed import launched_with_several_processes

    if launched_with_several_processes() and os.environ.get("RANK", "0") != "0":
        return 0
    final = summary.get("final_eval") or {}
    print(
        f"done: {summary['steps']} steps in {summary['seconds']:.0f}s ({summary['skipped_steps']} skipped), "
        f"peak memory {summary['peak_mem_mb']:.0f} MB -> {args.out}"
    )
    if final:
        from ragdistill.evaluation.evaluate import format_table

        print(format_table(final, title=f"final evaluation ({cfg.eval.final_split})"))
    if summary.get("stopped_early"):
        print(f"stopped early: {summary['stopped_early']}")
    return 0

"""Entry point of the `ragdistill` command.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers) -> argparse.ArgumentParser`` whose parser sets ``func``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit status).
Heavy imports (torch, transformers, faiss) happen inside ``func`` so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from ragdistill import __version__
from ragdistill.errors import RagdistillError

# Order is the order shown in --help: the data flow, then the study.
COMMANDS = [
    "data",
    "index",
    "retrieve",
    "scores",
    "train",
    "evaluate",
    "analyze",
    "diagnose",
    "reproduce",
    "validate_indicators",
]

DESCRIPTION = """\
ragdistill: train a retriever from a reader's attention (attention distillation),
and find out beforehand whether the reader's attention is a good teacher.

Typical flow:
  ragdistill data demo --out data/demo                  # write the bundled demo world
  ragdistill index --corpus data/demo/corpus.jsonl --out runs/index
  ragdistill retrieve --index runs/index --questions data/demo/test.jsonl --k 5
  ragdistill diagnose --questions data/demo/dev.jsonl --index runs/index
  ragdistill train --config configs/demo/finetuned_step1.yaml --out runs/step1
  ragdistill reproduce --scale demo --out runs/demo     # the whole study
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragdistill", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"ragdistill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"ragdistill.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RagdistillError as exc:
        print(f"ragdistill {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # RunStopped (a KeyboardInterrupt) carries its status: 143 SIGTERM, 75 --max-time
        code = getattr(exc, "exit_code", 130)
        what = {143: "terminated (SIGTERM)", 138: "stopped by SIGUSR1", 75: "stopped before --max-time ran out"}
        print(f"ragdistill {args.command}: {what.get(code, 'interrupted')}", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - only a full disk is turned into a message; the rest re-raises
        if not _disk_full(exc):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(
            f"ragdistill {args.command}: error: the disk is full{where}: {exc}. Nothing was half-written (files "
            "are written to a temporary name and renamed); free some space or write elsewhere (--out), then run "
            "the command again (train resumes from its last complete checkpoint).",
            file=sys.stderr,
        )
        return 2


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library wraps it in its own error type (safetensors, FAISS, SQLite)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "database or disk is full" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(main())

"""`ragdistill data`: inspect question sets and corpora, write the bundled demo world."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

INSPECT_HELP = """\
Read a whole file and report what it was recognised as (question set, corpus, or both),
which format, how many records it holds, and one example of each. The whole file is
validated on the way: a bad record stops with the file name and line number (exit 2).

Formats (detected from the content; --format overrides):
  question sets: nq-open, qa-jsonl (DPR / TriviaQA-as-DPR / generic {id?, question, answers}),
                 flashrag-qa ({id, question, golden_answers, metadata?}),
                 qa-tsv (question<TAB>['a', 'b']), triviaqa (official JSON)
  corpora:       dpr-tsv (psgs_w100.tsv: id<TAB>text<TAB>title), passages-jsonl ({id, title, text}),
                 flashrag ({id, contents})
  both:          squad (v1.1 JSON: paragraphs and questions), dpr-biencoder (JSON or JSONL)

Tables: a Parquet file or a folder written by datasets' save_to_disk, whose columns are the
fields of one of the JSONL layouts above (e.g. question + answers, or id + title + text).
A DatasetDict folder takes its split as PATH::SPLIT (e.g. nq_hf::validation). Errors name
the row (1-based). Needs: pip install 'ragdistill[data]'.
"""

DEMO_HELP = """\
Write the bundled demo world: a seeded fictional encyclopedia (invented countries,
people, companies, rivers and inventions) whose questions can only be answered by
retrieving the right passage. Files: corpus.jsonl, corpus.tsv (DPR layout), train/dev/test.jsonl
(question splits with no shared fact), README.md and manifest.json (version, seed, counts, sha256
of each file). The same seed and version write byte-identical files. --version 1 writes the first
world (invented syllable names, ~1,300 passages) byte for byte; version 2 (the default) has
real-word names, many hard negatives and ~2,600 questions.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="inspect question sets and corpora; write the demo world",
        description="Question sets and corpora: inspect a file, or write the bundled demo world.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser(
        "inspect",
        help="report a file's format, record counts and an example",
        description=INSPECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="question set or corpus: JSON, JSONL or TSV (.gz accepted), Parquet, or a datasets folder (DIR or DIR::SPLIT)",
    )
    p.add_argument(
        "--format",
        metavar="F",
        default=None,
        help="read the file as this format instead of detecting it (names listed above)",
    )
    p.add_argument(
        "--chunk-words",
        type=int,
        default=None,
        metavar="W",
        help="count passages after splitting documents into W-word passages (DPR uses 100); default: as stored",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object (for scripts)")
    p.set_defaults(func=run_inspect)

    d = sub.add_parser(
        "demo",
        help="write the bundled demo world (corpus and train/dev/test questions)",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--out", required=True, metavar="DIR", help="directory to write the files into (created if needed)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the world (default 0); same seed, same files")
    from ragdistill.data.demo import _DEFAULTS, LATEST_VERSION, VERSIONS

    d.add_argument(
        "--version",
        type=int,
        choices=VERSIONS,
        default=LATEST_VERSION,
        help=f"version of the world (default {LATEST_VERSION}); 1 is the first world, kept byte for byte",
    )
    v1, v2 = _DEFAULTS[1], _DEFAULTS[LATEST_VERSION]
    for kind in ("countries", "people", "companies", "rivers", "inventions"):
        d.add_argument(
            f"--{kind}",
            type=int,
            default=None,
            metavar="N",
            help=f"number of {kind} (default {v2[kind]}; {v1[kind]} in version 1)",
        )
    d.add_argument(
        "--questions-per-fact",
        type=int,
        default=None,
        metavar="N",
        help=f"differently worded questions per fact, 1-3 (default {v2['questions_per_fact']})",
    )
    d.set_defaults(func=run_demo)
    return parser


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def inspect_file(path: str, format: str | None = None, chunk_words: int | None = None) -> dict[str, Any]:
    """Recognise, validate and count a file; the report `ragdistill data inspect` prints."""
    from pathlib import Path

    from tqdm import tqdm

    from ragdistill.data.corpus import iter_passages
    from ragdistill.data.formats import PASSAGES, QUESTIONS, detect_format, get_format, table_source
    from ragdistill.data.questions import iter_questions

    fmt = get_format(format) if format else get_format(detect_format(path))
    table = table_source(path)
    where = table.path if table is not None else Path(path)
    files = [f for f in where.rglob("*") if f.is_file()] if where.is_dir() else [where]
    report: dict[str, Any] = {
        "path": str(path),
        "format": fmt.name,
        "description": fmt.description,
        "container": table.kind if table is not None else "text",
        "detected": format is None,
        "holds": list(fmt.kinds),
        "size_bytes": sum(f.stat().st_size for f in files),
    }
    if table is not None and table.split is not None:
        report["split"] = table.split
    if PASSAGES in fmt.kinds:
        n, words, example = 0, 0, None
        for p in tqdm(
            iter_passages(path, fmt.name, chunk_words), desc="passages", unit=" psg", disable=None, file=sys.stderr
        ):
            n += 1
            words += len(p.text.split())
            example = example or p
        report["passages"] = n
        report["mean_passage_words"] = round(words / n, 1) if n else 0.0
        report["example_passage"] = (
            {"id": example.id, "title": example.title, "text": example.text} if example else None
        )
        if chunk_words:
            report["chunk_words"] = chunk_words
    if QUESTIONS in fmt.kinds:
        n, answers, example = 0, 0, None
        for q in tqdm(iter_questions(path, fmt.name), desc="questions", unit=" q", disable=None, file=sys.stderr):
            n += 1
            answers += len(q.answers)
            example = example or q
        report["questions"] = n
        report["mean_answers_per_question"] = round(answers / n, 2) if n else 0.0
        report["example_question"] = (
            {"id": example.id, "question": example.question, "answers": example.answers} if example else None
        )
    return report


def run_inspect(args: argparse.Namespace) -> int:
    from ragdistill.errors import InputError

    report = inspect_file(args.path, args.format, args.chunk_words)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        kinds = " and ".join("question set" if k == "questions" else "corpus" for k in report["holds"])
        how = "detected" if report["detected"] else "given with --format"
        print(f"{report['path']}")
        print(f"  format:    {report['format']} ({how}): {report['description']}")
        if report["container"] != "text":
            split = f", split {report['split']}" if report.get("split") else ""
            what = "Parquet file" if report["container"] == "parquet" else "datasets folder (save_to_disk)"
            print(f"  container: {what}, rows in the same layout{split}")
        print(f"  holds:     {kinds}")
        if "passages" in report:
            chunk = f", after chunking into {report['chunk_words']}-word passages" if report.get("chunk_words") else ""
            print(f"  passages:  {report['passages']:,} (mean {report['mean_passage_words']} words{chunk})")
        if "questions" in report:
            print(f"  questions: {report['questions']:,} (mean {report['mean_answers_per_question']} answers each)")
        if report.get("example_passage"):
            p = report["example_passage"]
            print(f"  example passage:  id={p['id']!r} title={p['title']!r} text={_short(p['text'])!r}")
        if report.get("example_question"):
            q = report["example_question"]
            print(
                f"  example question: id={q['id']!r} question={_short(q['question'])!r} answers={q['answers'][:5]!r}"
                + (f" (+{len(q['answers']) - 5} more)" if len(q["answers"]) > 5 else "")
            )
    if not report.get("passages") and not report.get("questions"):
        raise InputError("holds no records", args.path)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ragdistill.data.demo import write_demo_world
    from ragdistill.data.formats import iter_lines

    sizes = {
        k: getattr(args, k)
        for k in ("countries", "people", "companies", "rivers", "inventions", "questions_per_fact")
        if getattr(args, k) is not None
    }
    paths = write_demo_world(args.out, seed=args.seed, version=args.version, **sizes)
    print(f"demo world version {args.version} (seed {args.seed}) written to {args.out}:")
    for key, path in paths.items():
        n = sum(1 for _ in iter_lines(path)) - (1 if key == "corpus_tsv" else 0)
        what = "lines" if key in ("readme", "manifest") else "passages" if key.startswith("corpus") else "questions"
        print(f"  {path}  ({n:,} {what})")
    return 0

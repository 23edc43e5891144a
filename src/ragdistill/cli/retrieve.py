"""`ragdistill retrieve`: top-k passages for a question file, and HR@k."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Retrieve the top-k passages of an index for every question, write them (ids, titles,
scores, whether each contains an answer) as JSONL, and print HR@k: the share of
questions with an answer in the top k. Answers match DPR's way by default (normalised
token sequence); --match substring uses SQuAD-normalised substrings.

examples:
  ragdistill retrieve --index runs/index --questions data/demo/test.jsonl --k 5 --out retrieved.jsonl
  ragdistill retrieve --index runs/squad-index --questions ../shared/data/squad/dev-v1.1.json \\
      --limit 1000 --seed 0 --ks 1,5,20 --out squad.jsonl --json
"""


def _parse_ks(text: str) -> list[int]:
    from ragdistill.errors import ConfigError

    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError("--ks", f"expected comma-separated numbers like 1,5,20, got '{text}'") from None
    if not ks or any(k <= 0 for k in ks):
        raise ConfigError("--ks", f"every k must be a positive number, got '{text}'")
    return sorted(set(ks))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "retrieve",
        help="retrieve passages for questions and report HR@k",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", required=True, metavar="DIR", help="index directory written by `ragdistill index`")
    p.add_argument(
        "--questions",
        required=True,
        metavar="PATH",
        help="question file (JSONL with question/answers, NQ-open, TriviaQA, SQuAD JSON, QA TSV, ...)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="JSONL output: one record per question")
    p.add_argument("--k", type=int, default=5, metavar="N", help="passages written per question (default %(default)s)")
    p.add_argument(
        "--ks", default="1,5,20", metavar="LIST", help="HR@k cut-offs, comma-separated (default %(default)s)"
    )
    p.add_argument(
        "--retriever",
        default=None,
        metavar="NAME|DIR",
        help="query encoder: bundled name, HF id or trained retriever directory (default: the one the index "
        "was built with). It must embed passages as the index did, else the index is refused",
    )
    p.add_argument(
        "--match",
        choices=["token", "substring"],
        default="token",
        help="answer match: DPR's normalised token sequence (default) or SQuAD-normalised substring",
    )
    p.add_argument(
        "--match-title",
        action="store_true",
        help="also count an answer found in a passage's title (default: the text only, as DPR)",
    )
    p.add_argument("--format", default=None, metavar="F", help="question file format (default: detected)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate a seeded sample of N questions")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="questions per encoder batch (default %(default)s)"
    )
    p.add_argument(
        "--search-params",
        default=None,
        metavar="STR",
        help="FAISS search parameters for approximate indexes, e.g. nprobe=32 or efSearch=128",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the index files (large indexes)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="autocast precision for the query encoder: fp16/bf16 on GPU, bf16 also on CPU; default %(default)s",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a Markdown table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise here

    from ragdistill.data.questions import load_questions
    from ragdistill.errors import ConfigError, InputError
    from ragdistill.retrieval.evaluate import evaluate_retrieval, retrieval_record, sample_questions
    from ragdistill.retrieval.index import PassageIndex, built_with
    from ragdistill.retrieval.metrics import markdown_table
    from ragdistill.retrieval.retriever import BiEncoderRetriever
    from ragdistill.utils.io import atomic_file

    ks = _parse_ks(args.ks)
    if args.k <= 0:
        raise ConfigError("--k", f"must be a positive number of passages, got {args.k}")
    if args.batch_size <= 0:
        raise ConfigError("--batch-size", f"must be positive, got {args.batch_size}")
    questions = sample_questions(load_questions(args.questions, format=args.format), args.limit, args.seed)
    if not questions:
        raise InputError("no questions to retrieve for", args.questions)
    name, settings = args.retriever, {}
    if name is None:  # the retriever that built the index, with the settings it used (pooling, max_length, ...)
        name, settings = built_with(args.index)
    if name is None:
        PassageIndex.load(args.index, verify=False)  # raises the precise error
        raise InputError("the index manifest does not name its retriever: pass --retriever", args.index)
    retriever = BiEncoderRetriever.from_pretrained(name, device=args.device, precision=args.precision, **settings)
    index = PassageIndex.load(args.index, retriever=retriever, verify=not args.no_verify)
    if args.search_params:
        index.set_search_params(args.search_params)
    # One search of depth max(k, ks): HR@k uses max(ks) passages, the file keeps the top --k.
    metrics, results, flags = evaluate_retrieval(
        index,
        retriever,
        questions,
        ks=ks,
        match=args.match,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        depth=args.k,
        match_title=args.match_title,
    )
    with atomic_file(args.out) as f:
        for q, hits, fl in zip(questions, results, flags):
            f.write(json.dumps(retrieval_record(q, hits, fl, args.k), ensure_ascii=False) + "\n")
    report = {
        "questions": len(questions),
        "index": str(args.index),
        "retriever": name,
        "match": args.match,
        "match_title": args.match_title,
        **metrics,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(markdown_table(metrics, n_questions=len(questions), title=f"HR@k (%), {args.match} match"))
        print(f"\nwrote {len(questions)} records to {args.out}")
    index.close()
    return 0

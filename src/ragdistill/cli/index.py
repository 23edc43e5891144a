"""`ragdistill index`: embed a corpus with the retriever and build a FAISS index directory."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Embed every passage of a corpus with the retriever's passage encoder and write an
index directory (index.faiss, passages.sqlite, manifest.json). The corpus is streamed
in chunks, so its text never sits in memory. The directory appears only when the build
finishes; an interrupted build leaves nothing that loads (or the previous index intact).

examples:
  ragdistill index --corpus data/demo/corpus.jsonl --out runs/index
  ragdistill index --corpus ../shared/data/squad/dev-v1.1.json --out runs/squad-index
  ragdistill index --corpus psgs_w100.tsv --out runs/wiki --faiss-type IVF4096,PQ64 --batch-size 256
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "index",
        help="embed a corpus and build a FAISS passage index",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--corpus",
        required=True,
        metavar="PATH",
        help="corpus file: DPR psgs_w100 TSV, passages JSONL, FlashRAG JSONL, SQuAD JSON or DPR bi-encoder file",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="index directory to write (replaced whole if it already holds an index)",
    )
    p.add_argument(
        "--retriever",
        default="minilm-l6",
        metavar="NAME",
        help="bundled name (minilm-l6), Hugging Face id, encoder directory, or a trained retriever "
        "directory (save_pretrained); default: %(default)s",
    )
    p.add_argument(
        "--faiss-type",
        default="Flat",
        metavar="STR",
        help="'Flat' = exact inner product (default), or any faiss.index_factory string, e.g. "
        "'HNSW32', 'IVF1024,Flat', 'IVF4096,PQ64' (trained on a seeded sample)",
    )
    p.add_argument(
        "--chunk-words",
        type=int,
        default=None,
        metavar="N",
        help="split passages into chunks of N words (DPR uses 100); default: keep passages whole",
    )
    p.add_argument(
        "--format",
        default=None,
        metavar="F",
        help="corpus format (dpr-tsv, passages-jsonl, flashrag, squad, dpr-biencoder, ...); default: detected",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="passages per encoder batch (default %(default)s)"
    )
    p.add_argument(
        "--pooling",
        choices=["mean", "cls"],
        default=None,
        help="pooling of the encoder's hidden states (default: mean, or the trained retriever's)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        metavar="N",
        help="truncate passages to N tokens (default 256, or the trained retriever's)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="autocast precision for embedding: fp16/bf16 on GPU, bf16 also on CPU (fast with AMX); default %(default)s",
    )
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        metavar="N",
        help="passages sampled to train IVF/PQ indexes (default: max(65536, 256 x lists), capped at the corpus)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the training sample (default %(default)s)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise here

    from ragdistill.data.corpus import iter_passages
    from ragdistill.errors import ConfigError
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    if args.batch_size <= 0:
        raise ConfigError("--batch-size", f"must be positive, got {args.batch_size}")
    if args.chunk_words is not None and args.chunk_words <= 0:
        raise ConfigError("--chunk-words", f"must be positive, got {args.chunk_words}")
    passages = iter_passages(args.corpus, format=args.format, chunk_words=args.chunk_words)
    retriever = BiEncoderRetriever.from_pretrained(
        args.retriever, pooling=args.pooling, max_length=args.max_length, device=args.device, precision=args.precision
    )
    index = PassageIndex.build(
        passages,
        retriever,
        args.out,
        faiss_type=args.faiss_type,
        batch_size=args.batch_size,
        train_size=args.train_size,
        seed=args.seed,
        progress=not args.no_progress,
        corpus_path=args.corpus,
    )
    m = index.manifest
    print(
        f"indexed {m['passages']} passages ({m['faiss_class']}, dim {m['dim']}, {m['model']}, pooling {m['pooling']}, "
        f"normalize {m['normalize']}) into {args.out} in {m['build']['seconds']:.1f}s "
        f"({m['build']['passages_per_s']:.1f} passages/s)"
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "passages": m["passages"],
                "seconds": m["build"]["seconds"],
                "passages_per_s": m["build"]["passages_per_s"],
            }
        )
    )
    index.close()
    return 0

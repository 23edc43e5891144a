"""`ragdistill evaluate`: retrieval + generation over a question set -> HR@k, EM, F1."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """\
examples:
  ragdistill evaluate --corpus data/demo/corpus.jsonl --questions data/demo/test.jsonl --out runs/eval0
  ragdistill evaluate --reader runs/step1 --retriever runs/step2 --index runs/step2/index \\
      --questions data/demo/test.jsonl --out runs/eval2
  ragdistill evaluate --corpus ../shared/data/squad/dev-v1.1.json --questions ../shared/data/squad/dev-v1.1.json \\
      --limit 200 --seed 0 --out runs/squad

--reader / --retriever take a bundled name (smollm2-135m, minilm-l6), a Hugging Face id, a
model directory, a training run directory (its trained reader/ or retriever/, else the model
it started from) or a checkpoint directory (RUN/checkpoints/step-N).
Writes OUT/metrics.json {"n", "hr@1", "hr@5", "hr@20", "em", "f1"} (fractions),
OUT/predictions.jsonl (question, answers, prediction, retrieved ids, hit, em, f1) and
OUT/eval_info.json (models, k, wall time), and prints the metrics as a table (percent).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="HR@k, EM and F1 of a reader + retriever on a question set",
        description="Batched retrieval and generation: retrieve the top-k passages for each question, let the reader "
        "answer from them, and score with SQuAD's official EM/F1 and HR@k.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reader", default="smollm2-135m", metavar="NAME|CKPT", help="reader model (default: smollm2-135m)")
    p.add_argument(
        "--reader-kind",
        default="auto",
        choices=["auto", "decoder", "fid"],
        help="reader type (default: from the config)",
    )
    p.add_argument("--retriever", default="minilm-l6", metavar="NAME|CKPT", help="retriever model (default: minilm-l6)")
    p.add_argument(
        "--retriever-max-length",
        type=int,
        default=None,
        help="tokens per text for a base retriever (default 256; a saved retriever keeps its own; must match the index)",
    )
    p.add_argument(
        "--pooling", default=None, choices=["mean", "cls"], help="pooling of a base retriever (default: mean)"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", metavar="DIR", help="a built index (ragdistill index); must match --retriever")
    src.add_argument(
        "--corpus",
        metavar="PATH",
        help="a corpus file: an index is built with --retriever into OUT/index (reused on reruns)",
    )
    p.add_argument("--corpus-format", default=None, help="corpus format (default: detected from the content)")
    p.add_argument("--chunk-words", type=int, default=None, help="split corpus passages into chunks of this many words")
    p.add_argument(
        "--questions", required=True, metavar="PATH", help="question file (NQ-open, TriviaQA, SQuAD, DPR, JSONL, ...)"
    )
    p.add_argument("--questions-format", default=None, help="question file format (default: detected)")
    p.add_argument("--k", type=int, default=5, help="passages given to the reader (default: 5)")
    p.add_argument("--ks", default="1,5,20", help="HR@k cut-offs, comma-separated (default: 1,5,20)")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate a seeded random sample of N questions"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, help="questions per retrieval/generation batch (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="answer length limit in tokens (default: 16)")
    p.add_argument("--max-prompt-tokens", type=int, default=512, help="reader prompt budget in tokens (default: 512)")
    p.add_argument(
        "--match",
        default="token",
        choices=["token", "substring"],
        help="answer match for HR@k (default: DPR token match)",
    )
    p.add_argument(
        "--match-title",
        action="store_true",
        help="HR@k also counts an answer found in a passage's title (default: the text only, as DPR and "
        "`ragdistill retrieve`)",
    )
    p.add_argument("--no-generate", action="store_true", help="retrieval metrics only (no reader, no EM/F1)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow model code from the hub (only for models you trust)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)
    return p


def _run_config(run_dir: Path) -> dict:
    import yaml

    cfg_path = run_dir / "config.yaml"
    return (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}) if cfg_path.is_file() else {}


def resolve_model(arg: str, role: str) -> tuple[str, Path | None]:
    """(model name or directory to load, checkpoint dir whose `role` weights go on top, or None)."""
    from ragdistill.errors import InputError

    p = Path(arg).expanduser()
    if not p.is_dir():
        return arg, None
    if (p / "completed.json").is_file() or (p / "config.yaml").is_file() and (p / "checkpoints").is_dir():
        if (p / role).is_dir():
            return str(p / role), None
        done = p / "completed.json"
        if done.is_file():
            return json.loads(done.read_text())[role], None
        return _run_config(p).get(role, {}).get("name", arg), None
    if (p / "manifest.json").is_file() and (p / "state.json").is_file():  # a training checkpoint
        run_dir = p.parent.parent
        base = _run_config(run_dir).get(role, {}).get("name")
        if not base:
            raise InputError(f"cannot find the run's config.yaml to know the base {role} of this checkpoint", run_dir)
        return base, (p if (p / f"{role}.safetensors").is_file() else None)
    return arg, None


def run(args: argparse.Namespace) -> int:
    import random
    import time

    import torch

    from ragdistill.data.questions import load_questions
    from ragdistill.errors import ConfigError
    from ragdistill.evaluation.evaluate import evaluate_questions, format_table, write_eval
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.retriever import CONFIG_NAME, BiEncoderRetriever
    from ragdistill.training import checkpoint as ckpt
    from ragdistill.utils.seed import default_device

    if args.retriever_max_length is not None and args.retriever_max_length < 2:
        raise ConfigError("--retriever-max-length", f"must be at least 2, got {args.retriever_max_length}")
    for key, value in (
        ("--k", args.k),
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
        ("--max-prompt-tokens", args.max_prompt_tokens),
    ):
        if value <= 0:
            raise ConfigError(key, f"must be positive, got {value}")
    if args.limit is not None and args.limit <= 0:
        raise ConfigError("--limit", f"must be positive, got {args.limit}")
    try:
        ks = sorted({int(x) for x in args.ks.split(",") if x.strip()})
    except ValueError:
        raise ConfigError("--ks", f"expected comma-separated integers, got {args.ks!r}") from None
    if not ks or min(ks) <= 0:
        raise ConfigError("--ks", f"expected positive cut-offs, got {args.ks!r}")
    t0 = time.perf_counter()
    out = Path(args.out)
    device = default_device(args.device)
    progress = not args.no_progress

    questions = load_questions(args.questions, format=args.questions_format)
    n_all = len(questions)
    if args.limit is not None and args.limit < len(questions):
        rng = random.Random(args.seed)
        questions = [questions[i] for i in sorted(rng.sample(range(len(questions)), args.limit))]

    retr_name, retr_ckpt = resolve_model(args.retriever, "retriever")
    if (Path(retr_name) / CONFIG_NAME).is_file():
        retriever = BiEncoderRetriever.from_pretrained(retr_name, device=device)
    else:
        retriever = BiEncoderRetriever.from_pretrained(
            retr_name,
            device=device,
            trust_remote_code=args.trust_remote_code,
            max_length=args.retriever_max_length,
            pooling=args.pooling,
        )
    if retr_ckpt is not None:
        ckpt.load_module(retr_ckpt, "retriever", retriever)
    retriever.eval()

    t_index = time.perf_counter()
    if args.index:
        index = PassageIndex.load(args.index, retriever=retriever)
        index_path = args.index
    else:
        from ragdistill.data.corpus import iter_passages

        index_path = out / "index"
        index = None
        if (index_path / "manifest.json").is_file():
            try:
                index = PassageIndex.load(index_path, retriever=retriever)
            except Exception:  # noqa: BLE001 - stale or other retriever: rebuild below
                index = None
        if index is None:
            index = PassageIndex.build(
                iter_passages(args.corpus, format=args.corpus_format, chunk_words=args.chunk_words),
                retriever,
                index_path,
                batch_size=64,
                progress=progress,
                corpus_path=args.corpus,
            )
    t_index = time.perf_counter() - t_index

    reader = None
    reader_name = args.reader
    if not args.no_generate:
        from ragdistill.readers import get_reader

        reader_name, reader_ckpt = resolve_model(args.reader, "reader")
        reader = get_reader(
            reader_name,
            kind=args.reader_kind,
            device=device,
            max_new_tokens=args.max_new_tokens,
            max_prompt_tokens=args.max_prompt_tokens,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code,
        )
        if reader_ckpt is not None:
            ckpt.load_module(reader_ckpt, "reader", reader.model)
        reader.model.eval()

    with torch.inference_mode():
        result = evaluate_questions(
            reader,
            retriever,
            index,
            questions,
            k=args.k,
            ks=ks,
            batch_size=args.batch_size,
            match=args.match,
            generate=not args.no_generate,
            progress=progress,
            match_title=args.match_title,
        )
    wall = time.perf_counter() - t0
    info = {
        "questions": str(args.questions),
        "questions_total": n_all,
        "sample": len(questions),
        "seed": args.seed if args.limit else None,
        "reader": reader_name if reader is not None else None,
        "retriever": retr_name,
        "index": str(index_path),
        "k": args.k,
        "ks": ks,
        "match": args.match,
        "match_title": args.match_title,
        "max_new_tokens": args.max_new_tokens,
        "max_prompt_tokens": args.max_prompt_tokens,
        "index_seconds": round(t_index, 2),
        "wall_seconds": round(wall, 2),
        "device": str(device),
    }
    write_eval(out, result, info=info)
    print(format_table(result.metrics, title=f"{Path(args.questions).name}: {len(questions)} questions, k={args.k}"))
    print(
        f"wall time {wall:.1f}s (index {t_index:.1f}s, retrieval {result.timings['retrieve']:.1f}s, "
        f"generation {result.timings['generate']:.1f}s) -> {out}/metrics.json, predictions.jsonl"
    )
    return 0

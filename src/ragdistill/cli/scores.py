"""`ragdistill scores`: where does the reader look? Passage scores S_i and the target p_gold."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Score each passage of a file for one question and answer with the reader's supervision
signal (METHOD.md §3) and print S_i with the target distribution p_gold = softmax(S/τ_gold)
that the retriever would be trained towards. With the attention signal, the tokens of
each passage that received the most attention are listed too.

  attention   S_i = Σ_{t∈passage i} mean_{layers,heads,answer queries} α·‖v_t‖
  perplexity  S_i = −mean NLL of the answer given the question and passage i alone

The passages file is JSONL with {"id"?, "title", "text"} per line (or any corpus format
`ragdistill index` reads). All its passages go into one prompt unless --k limits them.

examples:
  ragdistill scores --question "What is the capital of Australia?" --answer Canberra \\
      --passages passages.jsonl
  ragdistill scores --question "..." --answer "..." --passages p.jsonl --signal perplexity --json
  ragdistill scores --question "..." --answer "..." --passages p.jsonl --layers 20,25,29 --no-value-norm
"""


def _parse_layers(text: str | None) -> list[int] | None:
    from ragdistill.errors import ConfigError

    if text is None:
        return None
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            "--layers", f"expected comma-separated layer indices like 0,1,2 or -1, got '{text}'"
        ) from None
    if not layers:
        raise ConfigError("--layers", "give at least one layer index")
    return layers


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scores",
        help="score passages with the reader's attention or perplexity signal",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--reader",
        default="smollm2-135m",
        metavar="NAME|DIR",
        help="reader model: bundled name, Hugging Face id or saved reader directory (default %(default)s)",
    )
    p.add_argument(
        "--kind",
        choices=["auto", "decoder", "fid"],
        default="auto",
        help="reader type: decoder-only or encoder-decoder (FiD); auto reads the model config (default)",
    )
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--answer", required=True, help="the answer whose prediction is scored (usually the gold answer)")
    p.add_argument("--passages", required=True, metavar="FILE", help="passages: JSONL with id, title, text per line")
    p.add_argument("--format", default=None, metavar="F", help="passages file format (default: detected)")
    p.add_argument("--k", type=int, default=None, metavar="N", help="use only the first N passages (default: all)")
    p.add_argument(
        "--signal",
        choices=["attention", "perplexity"],
        default="attention",
        help="supervision signal (default %(default)s)",
    )
    p.add_argument(
        "--layers",
        default=None,
        metavar="LIST",
        help="attention: comma-separated layer indices to average (negative counts from the top; default all)",
    )
    p.add_argument(
        "--no-value-norm",
        action="store_true",
        help="attention: use the attention probabilities alone, without weighting by ‖v_t‖",
    )
    p.add_argument(
        "--aggregation",
        choices=["sum", "mean"],
        default="sum",
        help="attention: sum (default) or mean of w_t over a passage's tokens",
    )
    p.add_argument(
        "--tau-gold",
        type=float,
        default=1.0,
        metavar="T",
        help="temperature of the target softmax(S/T) (default %(default)s)",
    )
    p.add_argument(
        "--mode",
        choices=["softmax", "normalize"],
        default="softmax",
        help="target: softmax(S/τ) (ATLAS, default) or S/ΣS (non-negative signals only)",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        metavar="N",
        help="decoder reader: prompt budget shared by the passages (default: no cut; the paper uses 128)",
    )
    p.add_argument(
        "--top-tokens",
        type=int,
        default=5,
        metavar="N",
        help="attention: list the N most attended tokens of each passage (0 hides them; default %(default)s)",
    )
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available, else CPU)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result to FILE (atomically)")
    p.set_defaults(func=run)
    return p


def _load_passages(path: str, fmt: str | None):
    """JSONL {id?, title?, text} read here (ids optional: the line number); other corpus formats via data.corpus."""
    import json
    from pathlib import Path

    from ragdistill.data.types import Passage
    from ragdistill.errors import InputError

    if not Path(path).is_file():
        raise InputError("the passages file does not exist", path)
    if fmt is not None or Path(path).suffix.lower() not in (".jsonl", ".jl", ".ndjson"):
        from ragdistill.data.corpus import iter_passages

        return list(iter_passages(path, format=fmt))
    from ragdistill.data.formats import iter_lines  # UTF-8 with or without BOM, CRLF, gzip; bad bytes name the line

    out = []
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg})", path, n) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not rec["text"].strip():
            raise InputError(
                'each line must be an object with a non-empty "text" string (and optionally "id" and "title")', path, n
            )
        title = rec.get("title") or ""
        if not isinstance(title, str):
            raise InputError('"title" must be a string', path, n)
        out.append(Passage(str(rec.get("id", n)), title, rec["text"]))
    return out


def _top_tokens(tokenizer, result, n: int) -> list[list[tuple[str, float]]]:
    out = []
    for start, end in result.passage_spans:
        w = result.token_scores[start:end]
        idx = w.argsort(descending=True)[:n].tolist()
        out.append([(tokenizer.decode([int(result.input_ids[start + i])]).strip(), float(w[i])) for i in idx])
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from ragdistill.errors import ConfigError, InputError
    from ragdistill.readers import detect_kind, get_reader
    from ragdistill.signals import get_signal, target
    from ragdistill.signals.targets import check_temperature
    from ragdistill.utils.io import atomic_write_json
    from ragdistill.utils.seed import default_device

    check_temperature(args.tau_gold, "--tau-gold")
    layers = _parse_layers(args.layers)
    if args.k is not None and args.k <= 0:
        raise ConfigError("--k", f"must be a positive number of passages, got {args.k}")
    if args.top_tokens < 0:
        raise ConfigError("--top-tokens", f"must be 0 or more, got {args.top_tokens}")
    if args.signal == "perplexity" and (layers is not None or args.no_value_norm or args.aggregation != "sum"):
        raise ConfigError("--signal", "--layers, --no-value-norm and --aggregation apply to the attention signal only")
    passages = _load_passages(args.passages, args.format)
    if args.k is not None:
        passages = passages[: args.k]
    if not passages:
        raise InputError("holds no passages", args.passages)

    kind = detect_kind(args.reader) if args.kind == "auto" else args.kind
    options = {"device": args.device or default_device()}
    if args.max_prompt_tokens is not None:
        if kind != "decoder":
            raise ConfigError("--max-prompt-tokens", "applies to decoder-only readers only")
        options["max_prompt_tokens"] = args.max_prompt_tokens
    reader = get_reader(args.reader, kind=kind, **options)

    top: list[list[tuple[str, float]]] | None = None
    if args.signal == "attention":
        result = reader.attention_scores(
            args.question,
            passages,
            args.answer,
            layers=layers,
            value_norm=not args.no_value_norm,
            aggregation=args.aggregation,
        )
        S = result.passage_scores
        if args.top_tokens:
            top = _top_tokens(reader.tokenizer, result, args.top_tokens)
    else:
        S = get_signal("perplexity")(reader, args.question, passages, args.answer)
    p = target(S.float().cpu(), args.tau_gold, args.mode)

    record = {
        "reader": args.reader,
        "kind": reader.kind,
        "signal": args.signal,
        "question": args.question,
        "answer": args.answer,
        "tau_gold": args.tau_gold,
        "mode": args.mode,
        "options": (
            {"layers": layers, "value_norm": not args.no_value_norm, "aggregation": args.aggregation}
            if args.signal == "attention"
            else {}
        ),
        "passages": [
            {
                "id": ps.id,
                "title": ps.title,
                "score": float(s),
                "target": float(q),
                **({"top_tokens": [[t, w] for t, w in top[i]]} if top else {}),
            }
            for i, (ps, s, q) in enumerate(zip(passages, S.tolist(), p.tolist()))
        ],
    }
    if args.out:
        atomic_write_json(args.out, record)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    print(
        f"question: {args.question}\nanswer:   {args.answer}\nsignal:   {args.signal} "
        f"(reader {args.reader}, {reader.kind}); target {args.mode}, tau_gold={args.tau_gold}\n"
    )
    head = "| # | id | title | S_i | p_gold |" + (" most attended tokens |" if top else "")
    print(head)
    print("|---|---|---|---:|---:|" + ("---|" if top else ""))
    best = int(p.argmax())
    for i, rec in enumerate(record["passages"]):
        title = (rec["title"] or "")[:40].replace("|", "/")
        mark = " *" if i == best else ""
        row = f"| {i + 1}{mark} | {rec['id']} | {title} | {rec['score']:.6g} | {rec['target']:.4f} |"
        if top:
            row += " " + ", ".join(f"{t!r} {w:.3g}" for t, w in top[i]).replace("|", "/") + " |"
        print(row)
    return 0

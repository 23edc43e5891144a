"""Retrieval speed and agreement: index build vs sentence-transformers, FAISS vs numpy search.

On SQuAD-open (the 2,067 SQuAD v1.1 dev paragraphs of ../shared/data as the knowledge base,
title + text), with the bundled retriever ``minilm-l6`` and the same batch size on both sides:

* index build: ``PassageIndex.build`` (tokenise, length-sorted batches, embed, FAISS add,
  SQLite passage store, checksums) against ``SentenceTransformer.encode`` of the same texts
  (embedding only), in passages/s and their ratio (> 1: the project is faster). The two run
  interleaved, round after round, after a warm-up; the best round of each is reported.
* agreement: HR@5 (and @1, @20) on a seeded sample of the questions, from the project's
  index against sentence-transformers embeddings + exact inner product (numpy).
* search: queries/s of the project's search (``PassageIndex.search`` over a FAISS
  ``IndexFlatIP``) against a plain numpy brute force (float32 matrix product + ``argpartition``
  + sort of the top k), on the real index and on a synthetic 100k x 384 one, measured exactly as
  bench_scale measures it (``bench.common.compare_search``: calls of ``SEARCH_BATCH`` = 64
  queries, FAISS and BLAS pinned to the same thread count, plus single-query latency); both
  must return the same top k.

    python bench/bench_retrieval.py                    # full run (several minutes on 2 CPU cores)
    python bench/bench_retrieval.py --quick --out retrieval.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    SEARCH_BATCH,
    SHARED_DATA,
    compare_search,
    numpy_topk,
    pin_search_threads,
    ratio,
    run_header,
    synthetic_passages,
)

RETRIEVER = "minilm-l6"


def _data(quick: bool):
    """(passages, questions, source): SQuAD dev paragraphs and questions, or synthetic stand-ins."""
    from ragdistill.data.types import Passage

    path = SHARED_DATA / "squad" / "dev-v1.1.json"
    if path.exists():
        from ragdistill.data.corpus import iter_passages
        from ragdistill.data.questions import load_questions

        passages = list(iter_passages(path))
        questions = load_questions(path)
        source = "SQuAD v1.1 dev paragraphs"
    else:
        passages = [Passage(str(i), t, x) for i, (t, x) in enumerate(synthetic_passages(2067, words=120))]
        questions = []
        source = "synthetic 120-word passages (../shared/data absent)"
    if quick:
        passages = passages[:256]
        if questions:  # keep the questions asked on those paragraphs (SQuAD lists them in paragraph order)
            import json

            paras = [p for a in json.loads(path.read_text())["data"] for p in a["paragraphs"]][:256]
            questions = questions[: sum(len(p["qas"]) for p in paras)]
    return passages, questions, source


def _search_row(name: str, index_search, q, d, k: int, repeats: int, threads: int) -> dict[str, Any]:
    """The project's search (`index_search`) against numpy brute force, timed as bench_scale times it."""
    c = compare_search(index_search, d, q, k, repeats=repeats)
    return {
        "measure": name,
        "queries": c["queries_timed"],
        "passages": int(d.shape[0]),
        "k": k,
        "batch": c["batch"],
        "threads": threads,
        "ours": c["ours_qps"],
        "ours_label": "PassageIndex.search (FAISS IndexFlatIP)",
        "baseline": c["numpy_qps"],
        "baseline_label": "numpy argpartition",
        "unit": "queries/s",
        "ratio": c["ratio"],
        "ours_single_ms": c["ours_single_ms"],
        "numpy_single_ms": c["numpy_single_ms"],
        "single_ratio": c["single_ratio"],
        "topk_overlap": c["topk_overlap"],
        "max_score_diff": c["max_score_diff"],
        "faiss": c["ours_timing"],
        "numpy": c["numpy_timing"],
    }


def run(
    quick: bool = False,
    batch_size: int = 64,
    rounds: int | None = None,
    questions_n: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Measure build speed, HR@k agreement and search speed; returns the suite's result dict."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from ragdistill.models import resolve
    from ragdistill.retrieval.evaluate import evaluate_retrieval, sample_questions
    from ragdistill.retrieval.index import PassageIndex
    from ragdistill.retrieval.metrics import hits_from_flags, passage_hit_flags
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    # torch, FAISS (OpenMP) and BLAS alike (bench_scale does the same): on a busy machine 1 thread can beat 2
    threads = pin_search_threads(threads)
    torch.set_num_threads(threads)
    rounds = rounds or (2 if quick else 1)  # full: one build of each kind (~1 min apiece) keeps `make bench` < 15 min
    questions_n = questions_n or (200 if quick else 1000)
    passages, questions, source = _data(quick)
    texts = [p.as_text() for p in passages]
    retriever = BiEncoderRetriever.from_pretrained(RETRIEVER, device=device)
    st = SentenceTransformer(resolve(RETRIEVER).path, device=device)
    st.max_seq_length = retriever.max_length

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        # warm-up both pipelines on a few passages (allocator, kernels, tokenizer caches)
        PassageIndex.build(passages[:64], retriever, Path(tmp) / "warm", batch_size=batch_size, progress=False)
        st.encode(texts[:64], batch_size=batch_size)
        ours_t, st_t = [], []
        index = st_emb = None
        for r in range(rounds):
            order = ("ours", "st") if r % 2 == 0 else ("st", "ours")
            for who in order:
                t0 = time.perf_counter()
                if who == "ours":
                    index = PassageIndex.build(
                        passages, retriever, Path(tmp) / f"idx{r}", batch_size=batch_size, progress=False
                    )
                    ours_t.append(time.perf_counter() - t0)
                else:
                    st_emb = st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
                    st_t.append(time.perf_counter() - t0)
            print(
                f"# round {r + 1}/{rounds}: ours {ours_t[-1]:.1f}s, sentence-transformers {st_t[-1]:.1f}s",
                file=sys.stderr,
            )
        n = len(passages)
        rows.append(
            {
                "measure": f"index build, {n} passages, batch {batch_size}",
                "ours": n / min(ours_t),
                "ours_label": "PassageIndex.build (embed + FAISS + SQLite)",
                "baseline": n / min(st_t),
                "baseline_label": "SentenceTransformer.encode",
                "unit": "passages/s",
                "ratio": ratio(min(st_t), min(ours_t)),
                "ours_seconds": ours_t,
                "baseline_seconds": st_t,
            }
        )
        our_emb = index.index.reconstruct_n(0, n)
        emb_diff = float(np.max(np.abs(our_emb - st_emb)))

        # the refresh's embedding under bf16 autocast (where bf16 is native) vs SentenceTransformer.encode (fp32)
        from ragdistill.utils.precision import bf16_supported

        if bf16_supported(device):
            fast = BiEncoderRetriever.from_pretrained(RETRIEVER, device=device, precision="bf16")
            fast.encode_passages(passages[:64], batch_size=batch_size)
            bf_t, st2_t = [], []
            bf_emb = None
            for r in range(max(1, rounds)):
                for who in ("bf16", "st") if r % 2 == 0 else ("st", "bf16"):
                    t0 = time.perf_counter()
                    if who == "bf16":
                        bf_emb = fast.encode_passages(passages, batch_size=batch_size)
                        bf_t.append(time.perf_counter() - t0)
                    else:
                        st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
                        st2_t.append(time.perf_counter() - t0)
            probe = our_emb[: min(200, n)]
            _, top32 = numpy_topk(our_emb, probe, 5)
            _, top16 = numpy_topk(bf_emb, probe, 5)
            overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top32.tolist(), top16.tolist())]))
            rows.append(
                {
                    "measure": f"refresh embedding (bf16 autocast), {n} passages, batch {batch_size}",
                    "ours": n / min(bf_t),
                    "ours_label": "BiEncoderRetriever.encode_passages, bf16",
                    "baseline": n / min(st2_t),
                    "baseline_label": "SentenceTransformer.encode, fp32",
                    "unit": "passages/s",
                    "ratio": ratio(min(st2_t), min(bf_t)),
                    "ours_seconds": bf_t,
                    "baseline_seconds": st2_t,
                    "topk_overlap_vs_fp32": overlap,
                    "max_abs_diff_vs_fp32": float(np.max(np.abs(bf_emb - our_emb))),
                }
            )
            notes.append(
                f"bf16 refresh embedding: top-5 overlap with the fp32 embeddings {overlap:.1%} "
                f"(200 passages as queries), max |diff| {rows[-1]['max_abs_diff_vs_fp32']:.2e}."
            )
        else:
            notes.append(
                f"bf16 refresh embedding not measured on {device}: no native bf16 (emulated bf16 is slower than "
                "fp32 there, and precision auto uses fp32)."
            )

        # HR@k agreement on a seeded question sample
        if questions:
            sample = sample_questions(questions, questions_n, seed)
            ks = (1, 5, 20)
            ours_m, _, _ = evaluate_retrieval(index, retriever, sample, ks=ks)
            q_st = st.encode([q.question for q in sample], batch_size=batch_size, convert_to_numpy=True)
            _, top = numpy_topk(st_emb, q_st, max(ks))
            flags = [passage_hit_flags([passages[i] for i in row], q.answers) for row, q in zip(top.tolist(), sample)]
            st_m = hits_from_flags(flags, ks)
            for k in ks:
                key = f"hr@{k}"
                rows.append(
                    {
                        "measure": f"HR@{k} (%), {len(sample)} questions",
                        "ours": 100 * ours_m[key],
                        "ours_label": "ragdistill index + retrieve",
                        "baseline": 100 * st_m[key],
                        "baseline_label": "sentence-transformers + exact IP",
                        "unit": "%",
                        "diff_points": 100 * (ours_m[key] - st_m[key]),
                    }
                )

        # search speed: real index (all questions as queries), then a synthetic 100k index
        qtexts = [q.question for q in questions] if questions else [p.text[:80] for p in passages]
        if quick:
            qtexts = qtexts[:1000]
        t0 = time.perf_counter()
        q_emb = retriever.encode_queries(qtexts, batch_size=256)
        notes.append(f"encoded {len(qtexts)} queries in {time.perf_counter() - t0:.1f}s for the search rows")
        rows.append(
            _search_row(f"search k=5, {n} passages", index.search, q_emb, our_emb, 5, repeats=5, threads=threads)
        )
        index.close()

    if not quick:
        import faiss

        rng = np.random.default_rng(seed)
        big = rng.standard_normal((100_000, retriever.dim), dtype=np.float32)
        big /= np.linalg.norm(big, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(retriever.dim)
        flat.add(big)
        qs = q_emb[:1024]
        rows.append(
            _search_row(
                "search k=5, 100k synthetic passages",
                PassageIndex(flat, None, {"model": "synthetic"}).search,
                qs,
                big,
                5,
                repeats=3,
                threads=threads,
            )
        )

    notes += [
        f"knowledge base: {source}; retriever {RETRIEVER} (mean pooling, L2-normalised as its modules.json says), "
        f"max {retriever.max_length} tokens; device {device}; torch threads {torch.get_num_threads()}.",
        f"build: best of {rounds} round(s) (order alternates between rounds) after a warm-up, the two builds back to back; ratio = baseline time / our time "
        "(> 1: ragdistill faster). Our time includes the SQLite store, FAISS add and sha256 checksums; the baseline only embeds.",
        f"max |embedding difference| ragdistill vs sentence-transformers: {emb_diff:.2e}.",
        f"search: calls of {SEARCH_BATCH} queries, medians of the timed repeats, {threads} thread(s) for FAISS and BLAS "
        "(as in the scale benchmark); ratio = ours / numpy queries/s; 1-query = median latency of single-query calls; "
        "topk_overlap = share of identical top-k rows.",
    ]
    ratios = {r["measure"]: r["ratio"] for r in rows if r.get("ratio") is not None}
    ratios.update(
        {r["measure"] + ", single query": r["single_ratio"] for r in rows if r.get("single_ratio") is not None}
    )
    ratios.update({r["measure"] + " diff (points)": r["diff_points"] for r in rows if "diff_points" in r})
    return {
        "title": "Retrieval: index build vs sentence-transformers, FAISS vs numpy search, HR@k agreement",
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| measure | ragdistill | baseline | ratio / diff |", "|---|---:|---:|---:|"]
    for r in result["rows"]:
        if r["unit"] == "%":
            last = f"{r['diff_points']:+.2f} points"
            ours, base = f"{r['ours']:.2f}", f"{r['baseline']:.2f}"
        else:
            last = "—" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
            if "topk_overlap" in r:
                last += f" (top-k overlap {100 * r['topk_overlap']:.2f}%)"
            if r.get("single_ratio") is not None:
                last += (
                    f"; 1 query: {r['ours_single_ms']:.3g} ms vs {r['numpy_single_ms']:.3g} ms "
                    f"({r['single_ratio']:.2f}x); batch {r['batch']}, {r['threads']} thread(s)"
                )
            ours, base = f"{r['ours']:,.1f} {r['unit']}", f"{r['baseline']:,.1f} {r['unit']}"
        lines.append(f"| {r['measure']} | {ours} ({r['ours_label']}) | {base} ({r['baseline_label']}) | {last} |")
    return "\n".join(lines + [""] + [f"- {n}" for n in result["notes"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="256 passages, 200 questions, no 100k search (a smoke run)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="encoder batch size on both sides (default %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved build rounds (default 1; quick 2)")
    parser.add_argument(
        "--questions", type=int, default=None, help="questions sampled for HR@k (default 1000; quick 200)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch and FAISS CPU threads (default: theirs)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    parser.add_argument("--out", default=None, help="write the results (with machine and versions) as JSON")
    args = parser.parse_args(argv)
    result = run(
        quick=args.quick,
        batch_size=args.batch_size,
        rounds=args.rounds,
        questions_n=args.questions,
        threads=args.threads,
        device=args.device,
    )
    print(markdown(result))
    if args.out:
        from ragdistill.utils.io import atomic_write_json

        atomic_write_json(args.out, {**run_header(argv), **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

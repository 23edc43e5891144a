"""How index and refresh costs grow toward Wikipedia size, and what that means at paper scale.

Measured on this machine, each configuration in a fresh process (so its peak RSS is its own):

* index build, refresh re-add and search time and memory for 10k, 100k and 1M passages with
  fixed-dimension synthetic embeddings (384-d like MiniLM; 768-d like Contriever at 100k),
  exact inner-product search (FAISS ``Flat``) vs a compressed index (``IVF{nlist},PQ{m}``
  trained on a sample), and FAISS search vs numpy brute force on the same queries;
* the embedding cost per passage with the real bundled MiniLM on real 100-word Wikipedia
  passages (../shared/data, synthetic 100-word text when absent), and with a randomly
  initialised BERT-base (Contriever's architecture: the cost does not depend on the weights).

Synthetic embeddings are a mixture of Gaussian clusters on the unit sphere; queries are
database vectors plus noise, so every query has a true nearest neighbour and the compressed
index's recall is meaningful (real embeddings compress better than this, so it is a
conservative figure). A refresh is re-embedding every passage plus re-adding the vectors to
an index whose coarse quantizer and codebooks are kept (``reset()`` + ``add()``).

`project()` turns these curves into the paper-scale figures (21M passages of 100 words,
768-d Contriever) of BENCHMARKS.md, marking which numbers are measured and which projected.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/bench_scale.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    SEARCH_BATCH,
    bench_devices,
    compare_search,
    current_rss_mb,
    device_label,
    load_real_passages,
    md_table,
    numpy_topk,
    pin_search_threads,
    ratio,
    run_isolated,
    synthetic_passages,
    timeit,
)

PAPER_PASSAGES = 21_015_324  # DPR's Wikipedia 2018-12-20 split into 100-word passages (psgs_w100)
CONTRIEVER_DIM = 768
GPU_PEAK_BF16 = {  # dense bf16 tensor-core peak, FLOP/s (vendor data sheets)
    "A100": 312e12,
    "H100 SXM": 989e12,
}
ASSUMED_ENCODER_MFU = 0.35  # share of that peak a BERT-base encoder reaches in bf16 with length-sorted batches
ALLGATHER_BYTES_PER_S = {"intra-node (NVLink)": 150e9, "inter-node (InfiniBand)": 20e9}
ASSUMED_STEP_S = 0.15  # one paper-scale training step (1B reader, batch 1 per GPU, K=5) on an H100: assumption
REFRESH_OVERHEAD_TARGET = 0.10  # refresh time kept at ≤ 10% of training time when choosing the interval
GPUS_PER_NODE = 8


# --------------------------------------------------------------------------- synthetic data


def synthetic_embeddings(n: int, d: int, seed: int = 0, n_clusters: int = 1024, noise: float = 1.0):
    """float32[n, d] unit vectors drawn around `n_clusters` random centres (chunked: no n×d temporaries)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    out = np.empty((n, d), dtype=np.float32)
    chunk = 65536
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        block = rng.standard_normal((end - start, d), dtype=np.float32)
        block *= noise
        block += centres[rng.integers(n_clusters, size=end - start)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:end] = block
    return out


def synthetic_queries(x, nq: int, seed: int = 1, noise: float = 0.3):
    """Perturbed copies of `nq` database rows: each query has a known nearest neighbour."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = rng.choice(x.shape[0], size=nq, replace=False)
    q = x[rows] + noise * rng.standard_normal((nq, x.shape[1]), dtype=np.float32) / math.sqrt(x.shape[1])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32)


def ivf_nlist(n: int, cap: int = 1024) -> int:
    """Coarse cells: a power of two ≤ cap with at least 39 training points per cell (FAISS's minimum)."""
    nlist = 1
    while nlist * 2 <= cap and nlist * 2 * 39 <= n:
        nlist *= 2
    return nlist


def index_bytes(index, kind: str, d: int, nlist: int = 0, pq_m: int = 0) -> int:
    """Bytes the index holds: vectors (or codes + ids), coarse centroids and PQ codebooks."""
    n = index.ntotal
    if kind == "Flat":
        return n * d * 4
    return n * (pq_m + 8) + nlist * d * 4 + d * 256 * 4


# --------------------------------------------------------------------------- one index configuration (child process)


def index_config(
    n: int,
    d: int,
    kind: str,
    nq: int = SEARCH_BATCH,
    k: int = 10,
    pq_m: int = 32,
    nprobe: int = 16,
    train_sample: int = 50_000,
    kmeans_iter: int = 10,
    readd: bool = True,
    repeats: int = 3,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Build, re-add and search one index; runs in a fresh process via `run_isolated`.

    Search goes through the project's path (`PassageIndex.search`) and is compared with numpy brute force
    by `bench.common.compare_search`, exactly as bench_retrieval does: batches of SEARCH_BATCH queries,
    FAISS and BLAS pinned to the same thread count, plus single-query latency.
    """
    import faiss
    import numpy as np

    from ragdistill.retrieval.index import PassageIndex

    threads = pin_search_threads(threads)

    t0 = time.perf_counter()
    x = synthetic_embeddings(n, d, seed=seed)
    q = synthetic_queries(x, nq)
    gen_s = time.perf_counter() - t0
    rss_before = current_rss_mb()

    row: dict[str, Any] = {"passages": n, "dim": d, "index": kind}
    nlist = 0
    train_s = 0.0
    if kind == "Flat":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = ivf_nlist(n)
        spec = f"IVF{nlist},PQ{pq_m}"
        row["index"] = spec
        index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.niter = kmeans_iter
        ivf.pq.cp.niter = kmeans_iter
        ivf.do_polysemous_training = (
            False  # FAISS's default trains polysemous codes: most of the training time, unused here
        )
        ivf.pq.cp.max_points_per_centroid = 64  # 16k points per 256-centroid codebook: plenty, and 4x faster training
        sample = x[np.random.default_rng(seed + 2).choice(n, size=min(n, train_sample), replace=False)]
        t = time.perf_counter()
        index.train(sample)
        train_s = time.perf_counter() - t
        ivf.nprobe = min(nprobe, nlist)
        row["nprobe"] = ivf.nprobe
        row["train_sample"] = len(sample)
        del sample
    t = time.perf_counter()
    index.add(x)
    add_s = time.perf_counter() - t
    rss_index = current_rss_mb() - rss_before
    if readd:
        t = time.perf_counter()
        index.reset()
        index.add(x)
        readd_s = time.perf_counter() - t
    else:
        readd_s = add_s  # the same operation; measured once to keep the largest configuration lean

    warm = 0 if n >= 1_000_000 else 1  # no JIT or caches to warm; the largest searches take seconds each
    ours = PassageIndex(index, None, {"model": "synthetic"})
    cmp = compare_search(
        ours.search, x, q, k, repeats=repeats, warmup=warm, max_seconds=20, single=3 if n >= 1_000_000 else 8
    )
    _, approx = ours.search(q, k)
    _, exact = numpy_topk(x, q, k)
    recall1 = float(np.mean([exact[i, 0] in approx[i] for i in range(nq)]))
    recall_k = float(np.mean([len(set(exact[i]) & set(approx[i])) / k for i in range(nq)]))

    nbytes = index_bytes(index, kind, d, nlist, pq_m)
    row.update(
        {
            "train_s": train_s,
            "add_s": add_s,
            "build_s": train_s + add_s,
            "readd_s": readd_s,
            "readd_measured": readd,
            "add_vectors_per_s": n / add_s if add_s > 0 else None,
            "faiss_qps": cmp["ours_qps"],
            "numpy_qps": cmp["numpy_qps"],
            "faiss_vs_numpy": cmp["ratio"],
            "faiss_single_ms": cmp["ours_single_ms"],
            "numpy_single_ms": cmp["numpy_single_ms"],
            "single_faiss_vs_numpy": cmp["single_ratio"],
            "batch": cmp["batch"],
            "threads": threads,
            "recall1_at_k": recall1,
            "recall_k_at_k": recall_k,
            "k": k,
            "queries": nq,
            "index_mb": nbytes / 2**20,
            "bytes_per_vector": nbytes / n,
            "index_rss_mb": rss_index,
            "data_gen_s": gen_s,
        }
    )
    return row


# --------------------------------------------------------------------------- embedding cost (child process)


def _texts(n: int) -> tuple[list[tuple[str, str]], str]:
    real = load_real_passages(limit=n)
    if len(real) >= n:
        return real[:n], "real 100-word Wikipedia passages (DPR, ../shared/data)"
    return synthetic_passages(n), "synthetic 100-word passages (../shared/data absent)"


def embed_config(
    model: str = "minilm-l6",
    n: int = 256,
    batch_size: int = 64,
    max_length: int = 256,
    device: str = "cpu",
    gemm_n: int = 1024,
) -> dict[str, Any]:
    """Passages/s of a bi-encoder on real-length passages, with its analytic FLOP rate; runs in a child.

    ``model="minilm-l6"`` uses the project's retriever (`BiEncoderRetriever.encode_passages`) when
    it exists, else the same encoder with mean pooling; ``model="bert-base"`` is a randomly
    initialised BERT-base (Contriever's architecture and cost) with MiniLM's WordPiece vocabulary.
    """
    import torch

    from bench.bench_gemm import gemm_probe
    from ragdistill.data.types import Passage
    from ragdistill.models import load_encoder

    pairs, source = _texts(n)
    passages = [Passage(id=str(i), title=t, text=x) for i, (t, x) in enumerate(pairs)]
    texts = [p.as_text() for p in passages]
    path = "transformers mean pooling"
    encode = None
    enc = tok = None
    if model == "minilm-l6":
        try:  # the project's own embedding path (length-sorted batches, its pooling)
            from ragdistill.retrieval.retriever import BiEncoderRetriever

            retriever = BiEncoderRetriever.from_pretrained("minilm-l6", max_length=max_length, device=device)
            enc, tok = retriever.passage_encoder, retriever.tokenizer
            encode = lambda: retriever.encode_passages(passages, batch_size=batch_size)  # noqa: E731
            path = "ragdistill BiEncoderRetriever.encode_passages"
        except (ImportError, AttributeError, TypeError):
            encode = None
    elif model != "bert-base":
        raise ValueError(f"unknown model {model!r}")
    if enc is None:
        enc, tok = load_encoder("minilm-l6")
        if model == "bert-base":
            from transformers import BertConfig, BertModel

            torch.manual_seed(0)
            enc = BertModel(BertConfig(vocab_size=tok.vocab_size), add_pooling_layer=False).eval()
        enc = enc.to(device)
        if device != "cpu":
            enc = enc.to(torch.bfloat16)
    base = getattr(enc, "base_model", enc)

    if encode is None:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

        def encode() -> None:
            with torch.inference_mode():
                for s in range(0, len(order), batch_size):
                    batch = [texts[i] for i in order[s : s + batch_size]]
                    b = tok(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
                    h = enc(**b).last_hidden_state
                    m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
                    (h * m).sum(1) / m.sum(1).clamp(min=1)

    with torch.inference_mode():  # one small forward: allocator and kernel warm-up stay out of the timed passes
        enc(**tok(texts[:4], padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device))
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    cfg = base.config
    layer_params = sum(m.weight.numel() for m in base.encoder.modules() if isinstance(m, torch.nn.Linear))
    flops = sum(2 * layer_params * t + 4 * cfg.num_hidden_layers * cfg.hidden_size * t * t for t in lengths)
    timing = timeit(encode, repeats=2, warmup=0, device=device)
    probe = gemm_probe(
        device, "float32" if device == "cpu" else "bfloat16", n=gemm_n if device == "cpu" else 8192, repeats=3
    )
    return {
        "model": model if model != "bert-base" else "bert-base (Contriever arch., random init)",
        "dim": cfg.hidden_size,
        "device": device_label(device),
        "passages": n,
        "batch_size": batch_size,
        "mean_tokens": sum(lengths) / len(lengths),
        "seconds": timing.median,
        "passages_per_s": n / timing.median,
        "gflop_per_passage": flops / n / 1e9,
        "flops_per_s": flops / timing.median,
        "gemm_flops_per_s": probe["flops_per_s"],
        "fraction_of_gemm": ratio(flops / timing.median, probe["flops_per_s"]),
        "code_path": path,
        "text_source": source,
    }


# --------------------------------------------------------------------------- growth and projection


def growth_exponents(
    rows: list[dict[str, Any]], metrics: tuple[str, ...] = ("build_s", "readd_s", "index_mb")
) -> list[dict[str, Any]]:
    """Log-log slope of each cost against the passage count (1 = linear), per index family at one dimension."""
    out = []
    families: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        families.setdefault(("Flat" if r["index"] == "Flat" else "IVF-PQ", r["dim"]), []).append(r)
    for (family, dim), rs in sorted(families.items()):
        rs = sorted(rs, key=lambda r: r["passages"])
        if len(rs) < 2:
            continue
        entry: dict[str, Any] = {
            "index": family,
            "dim": dim,
            "passages": f"{rs[0]['passages']:,}–{rs[-1]['passages']:,}",
        }
        for metric in (*metrics, "search_s_per_query"):
            xs, ys = [], []
            for r in rs:
                y = 1.0 / r["faiss_qps"] if metric == "search_s_per_query" else r.get(metric)
                if y and y > 0:
                    xs.append(math.log(r["passages"]))
                    ys.append(math.log(y))
            if len(xs) >= 2:
                mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
                den = sum((a - mx) ** 2 for a in xs)
                entry[f"slope_{metric}"] = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / den if den else None
        out.append(entry)
    return out


def _hours(seconds: float) -> float:
    return seconds / 3600


def project(
    index_rows: list[dict[str, Any]],
    embed_rows: list[dict[str, Any]],
    n: int = PAPER_PASSAGES,
    d: int = CONTRIEVER_DIM,
    pq_m: int = 64,
    nlist: int = 65536,
) -> list[dict[str, Any]]:
    """Paper-scale figures from the measured curves; every row says whether it is measured or projected."""
    rows: list[dict[str, Any]] = []

    def add(quantity: str, value: float | None, unit: str, basis: str) -> None:
        rows.append({"quantity": quantity, "value": value, "unit": unit, "basis": basis})

    # Memory: exact formulas, checked against the measured bytes/vector of the built indexes.
    flat_bpv = next((r["bytes_per_vector"] for r in index_rows if r["index"] == "Flat"), 4 * d)
    add(
        "flat index, float32 (21M × 768)",
        n * d * 4 / 2**30,
        "GiB",
        f"projected: 4·d bytes/vector (measured {flat_bpv:.0f} B at d=384 = 4·384)",
    )
    add("flat index, float16", n * d * 2 / 2**30, "GiB", "projected: 2·d bytes/vector")
    ivf_bytes = n * (pq_m + 8) + nlist * d * 4 + d * 256 * 4
    add(
        f"IVF{nlist},PQ{pq_m} index",
        ivf_bytes / 2**30,
        "GiB",
        f"projected: {pq_m}-byte code + 8-byte id per vector + centroids (same formula as the measured IVF-PQ rows)",
    )
    add("flat / IVF-PQ memory", (n * d * 4) / ivf_bytes, "×", "projected")

    # Embedding throughput: measured MiniLM and BERT-base rates on this machine.
    bert = [r for r in embed_rows if r["model"].startswith("bert-base")]
    mini = [r for r in embed_rows if r["model"] == "minilm-l6"]
    for r in mini + bert:
        label = "MiniLM-L6" if r in mini else "BERT-base (Contriever)"
        add(f"{label} passages/s, {r['device']}", r["passages_per_s"], "passages/s", "measured (this run)")
    cpu_bert = next((r for r in bert if r["device"].startswith("cpu")), None)
    gpu_bert = next((r for r in bert if r["device"].startswith("cuda")), None)
    if cpu_bert:
        add(
            "full re-embed of 21M passages, this CPU",
            _hours(n / cpu_bert["passages_per_s"]),
            "hours",
            "projected linearly from the measured BERT-base passages/s on this CPU",
        )
        gflop = cpu_bert["gflop_per_passage"]
        add(
            "Contriever FLOPs per passage",
            gflop,
            "GFLOP",
            f"measured token count ({cpu_bert['mean_tokens']:.0f} tokens), analytic FLOPs",
        )
        add(
            "Contriever encoder efficiency on this CPU",
            cpu_bert["fraction_of_gemm"],
            "of GEMM rate",
            "measured (this run)",
        )
        for gpu, peak in GPU_PEAK_BF16.items():
            rate = peak * ASSUMED_ENCODER_MFU / (gflop * 1e9)
            add(
                f"full re-embed of 21M passages, one {gpu}",
                _hours(n / rate),
                "hours",
                f"projected: {ASSUMED_ENCODER_MFU:.0%} of {peak / 1e12:.0f} TFLOP/s bf16 (assumption) at the measured FLOPs/passage",
            )
    if gpu_bert:
        add(
            f"full re-embed of 21M passages, {gpu_bert['device']}",
            _hours(n / gpu_bert["passages_per_s"]),
            "hours",
            "projected linearly from the BERT-base passages/s measured on this card",
        )

    # Index rebuild after re-embedding (refresh re-add), from the largest measured configuration.
    ivf = [r for r in index_rows if r["index"] != "Flat"]
    if ivf:
        big = max(ivf, key=lambda r: (r["passages"], r["dim"]))
        per_vec = big["readd_s"] / big["passages"] * (d / big["dim"])
        add(
            "IVF-PQ re-add of 21M vectors, this CPU",
            per_vec * n / 60,
            "minutes",
            f"projected from the measured re-add at {big['passages']:,}×{big['dim']}-d (linear in n and d)",
        )
    flat = [r for r in index_rows if r["index"] == "Flat"]
    if flat:
        big = max(flat, key=lambda r: (r["passages"], r["dim"]))
        per_q = 1.0 / big["faiss_qps"] * (n / big["passages"]) * (d / big["dim"])
        add(
            "flat exact search, 21M × 768, this CPU",
            per_q,
            "s/query",
            f"projected from measured FAISS flat qps at {big['passages']:,}×{big['dim']}-d (linear in n·d)",
        )
        per_q_np = 1.0 / big["numpy_qps"] * (n / big["passages"]) * (d / big["dim"])
        add("numpy brute-force search, 21M × 768, this CPU", per_q_np, "s/query", "projected the same way")
    if ivf:
        big = max(ivf, key=lambda r: (r["passages"], r["dim"]))
        scanned_then = big["passages"] * big["nprobe"] / ivf_nlist(big["passages"])
        scanned_now = n * 64 / nlist
        per_q = 1.0 / big["faiss_qps"] * (scanned_now / scanned_then) * (pq_m / 32)
        add(
            f"IVF{nlist},PQ{pq_m} search (nprobe 64), this CPU",
            per_q,
            "s/query",
            "projected from measured IVF-PQ qps scaled by codes scanned per query (coarse search not scaled)",
        )
    for link, bw in ALLGATHER_BYTES_PER_S.items():
        add(
            f"all-gather of float16 embeddings, {link}",
            n * d * 2 / bw,
            "s",
            f"projected: {n * d * 2 / 2**30:.0f} GiB at an assumed {bw / 1e9:.0f} GB/s",
        )
        add(f"all-gather of PQ{pq_m} codes, {link}", n * (pq_m + 8) / bw, "s", "projected: codes + ids only")
    return rows


def settings(
    embed_rows: list[dict[str, Any]],
    n: int = PAPER_PASSAGES,
    d: int = CONTRIEVER_DIM,
    gpu: str = "H100 SXM",
    gpu_counts: tuple[int, ...] = (1, 8, 64),
) -> list[dict[str, Any]]:
    """What to pick on 1, 8 and 64 GPUs: refresh time when sharded, the interval that keeps it ≤ 10%, the index.

    Refresh time on N GPUs = (21M passages / N) / per-GPU passages/s + the all-gather of the
    float16 embeddings; per-GPU passages/s comes from the measured FLOPs per passage at the
    assumed share of the card's peak (or from a measured GPU row when the suite ran on one).
    """
    bert = [r for r in embed_rows if r["model"].startswith("bert-base")]
    gpu_row = next((r for r in bert if r["device"].startswith("cuda")), None)
    cpu_row = next((r for r in bert if r["device"].startswith("cpu")), None)
    if gpu_row is not None:
        per_gpu, basis = gpu_row["passages_per_s"], f"measured on {gpu_row['device']}"
    elif cpu_row is not None:
        per_gpu = GPU_PEAK_BF16[gpu] * ASSUMED_ENCODER_MFU / (cpu_row["gflop_per_passage"] * 1e9)
        basis = f"projected: {gpu}, {ASSUMED_ENCODER_MFU:.0%} of bf16 peak"
    else:
        return []
    flat_gib = n * d * 4 / 2**30
    out = []
    for g in gpu_counts:
        link = ALLGATHER_BYTES_PER_S["intra-node (NVLink)" if g <= GPUS_PER_NODE else "inter-node (InfiniBand)"]
        gather = 0.0 if g == 1 else n * d * 2 / link
        refresh = n / g / per_gpu + gather
        interval = refresh / (REFRESH_OVERHEAD_TARGET * ASSUMED_STEP_S)
        if g == 1:
            ivf_gib = (n * 72 + 65536 * d * 4 + d * 256 * 4) / 2**30
            index = (
                f"IVF65536,PQ64 on the host (~{ivf_gib:.1f} GiB) or flat float16 on the GPU ({flat_gib / 2:.0f} GiB)"
            )
            advice = (
                "refresh at most a few times per run, or train the query side only (retriever.query_only: true, "
                "no refresh at all); K=5"
            )
        elif g <= GPUS_PER_NODE:
            index = (
                f"flat float16 sharded over the {g} GPUs ({flat_gib / 2 / g:.0f} GiB each, faiss-gpu), "
                "or IVF-PQ on the host"
            )
            advice = f"refresh every ~{_round_interval(interval):,} steps, sharded over the {g} ranks"
        else:
            index = f"flat float32 sharded over the {g} GPUs ({flat_gib / g:.1f} GiB each), exact search"
            advice = f"refresh every ~{_round_interval(interval):,} steps; shard the refresh over all ranks"
        out.append(
            {
                "gpus": g,
                "per_gpu_passages_per_s": per_gpu,
                "refresh_min": refresh / 60,
                "allgather_s": gather,
                "interval_for_10pct": interval,
                "index": index,
                "advice": advice,
                "basis": basis,
            }
        )
    return out


def _round_interval(steps: float) -> int:
    """A round refresh interval near `steps` (100, 200, 500, 1000, 2000, 5000, ...)."""
    for base in (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000):
        if base >= steps:
            return base
    return 1_000_000


# --------------------------------------------------------------------------- entry point


def run(quick: bool = False, sizes: list[int] | None = None, embed: bool = True) -> dict[str, Any]:
    """Index curves (isolated processes), embedding cost, growth exponents and the paper-scale projection.

    `sizes` replaces the corpus sizes (e.g. [2000] for a smoke run of the code); `embed=False` skips the
    embedding-cost rows.
    """
    sizes = sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000])
    configs: list[dict[str, Any]] = []
    for n in sizes:
        for kind in ("Flat", "IVF-PQ"):
            configs.append(
                {
                    "n": n,
                    "d": 384,
                    "kind": kind,
                    "readd": n < 1_000_000 or kind == "Flat",
                    "repeats": 3 if n < 1_000_000 else 2,
                }
            )
    if not quick and sizes == [
        10_000,
        100_000,
        1_000_000,
    ]:  # Contriever's dimension at 100k: checks that time and memory scale linearly in d
        configs.append({"n": 100_000, "d": 768, "kind": "Flat"})
        configs.append({"n": 100_000, "d": 768, "kind": "IVF-PQ", "pq_m": 64, "train_sample": 25_000})
    index_rows = []
    errors = []
    for cfg in configs:
        try:
            row = run_isolated("bench.bench_scale:index_config", cfg, timeout=900)
        except Exception as exc:  # one failed configuration must not lose the others
            errors.append(f"index {cfg}: {exc}")
            continue
        row["peak_rss_mb"] = row.pop("peak_rss_mb")
        row.pop("baseline_rss_mb", None)
        row.pop("peak_rss_delta_mb", None)
        index_rows.append(row)

    embed_rows = []
    for device in bench_devices() if embed else []:
        for model, n_cpu, n_quick in (("minilm-l6", 128, 32), ("bert-base", 16, 4)):
            n = (n_quick if quick else n_cpu) if device == "cpu" else 2048
            try:
                row = run_isolated(
                    "bench.bench_scale:embed_config",
                    {"model": model, "n": n, "device": device, "batch_size": 16 if device == "cpu" else 256},
                    timeout=900,
                )
            except Exception as exc:
                errors.append(f"embed {model} on {device}: {exc}")
                continue
            row.pop("baseline_rss_mb", None)
            row["peak_rss_delta_mb"] = row.pop("peak_rss_delta_mb")
            row.pop("peak_rss_mb", None)
            embed_rows.append(row)

    ratios: dict[str, float | None] = {}
    largest = max(sizes)
    flat_big = next(
        (r for r in index_rows if r["index"] == "Flat" and r["passages"] == largest and r["dim"] == 384), None
    )
    ivf_big = next(
        (r for r in index_rows if r["index"] != "Flat" and r["passages"] == largest and r["dim"] == 384), None
    )
    if flat_big:
        ratios[f"FAISS flat / numpy brute-force queries/s at {largest:,}"] = (
            flat_big["faiss_qps"] / flat_big["numpy_qps"]
        )
        ratios[f"FAISS flat / numpy brute-force single-query latency at {largest:,}"] = flat_big.get(
            "single_faiss_vs_numpy"
        )
    if flat_big and ivf_big:
        ratios[f"IVF-PQ / flat queries/s at {largest:,}"] = ivf_big["faiss_qps"] / flat_big["faiss_qps"]
        ratios[f"flat / IVF-PQ index memory at {largest:,}"] = flat_big["index_mb"] / ivf_big["index_mb"]
        ratios[f"IVF-PQ 1-recall@10 at {largest:,} (synthetic)"] = ivf_big["recall1_at_k"]
    mini = next((r for r in embed_rows if r["model"] == "minilm-l6" and r["device"].startswith("cpu")), None)
    bert = next((r for r in embed_rows if r["model"].startswith("bert-base") and r["device"].startswith("cpu")), None)
    if mini and bert:
        ratios["MiniLM-L6 / BERT-base passages/s (cpu)"] = mini["passages_per_s"] / bert["passages_per_s"]

    notes = [
        "Each index row ran in a fresh process; peak_rss_mb includes the float32 embeddings themselves "
        "(n·d·4 bytes), index_rss_mb is the growth while adding them to the index.",
        "readd_s = reset() + add() with the trained quantizer kept (the index half of a refresh); "
        "at 1M for IVF-PQ it equals the measured add (same operation, measured once to keep the suite lean).",
        "Synthetic clustered unit vectors; recall is against numpy exact search on the same queries.",
        f"Search: the project's PassageIndex.search vs numpy brute force (float32 GEMM + argpartition + sort of the k), "
        f"timed the same way as in the retrieval benchmark (bench.common.compare_search): calls of {SEARCH_BATCH} "
        "queries (q/s, medians), FAISS's OpenMP and every BLAS pinned to the same thread count (threads column); "
        "single = one query per call, median latency in ms. Flat indexes search with FAISS's BLAS kernel from 16 "
        "queries per call, its per-query scan below (faiss-cpu 1.15 ships a BLAS threshold of 128000 queries, so "
        "batches used to take the per-query scan).",
    ]
    return {
        "title": "Scale: index build, refresh and search vs corpus size; embedding cost; paper-scale projection",
        "index": index_rows,
        "growth": growth_exponents(index_rows),
        "embedding": embed_rows,
        "projection": project(index_rows, embed_rows),
        "settings": settings(embed_rows),
        "ratios": ratios,
        "notes": notes,
        "errors": errors,
    }


INDEX_COLUMNS = [
    ("passages", "passages"),
    ("dim", "dim"),
    ("index", "index"),
    ("train_s", "train s"),
    ("add_s", "add s"),
    ("readd_s", "refresh re-add s"),
    ("faiss_qps", "FAISS q/s"),
    ("numpy_qps", "numpy q/s"),
    ("faiss_vs_numpy", "FAISS/numpy"),
    ("faiss_single_ms", "FAISS 1-query ms"),
    ("numpy_single_ms", "numpy 1-query ms"),
    ("single_faiss_vs_numpy", "FAISS/numpy 1-query"),
    ("batch", "batch"),
    ("threads", "threads"),
    ("recall1_at_k", "1-recall@10"),
    ("recall_k_at_k", "10-recall@10"),
    ("index_mb", "index MiB"),
    ("bytes_per_vector", "bytes/vector"),
    ("peak_rss_mb", "peak RSS MiB"),
]
EMBED_COLUMNS = [
    ("model", "encoder"),
    ("dim", "dim"),
    ("device", "device"),
    ("passages", "passages"),
    ("mean_tokens", "tokens/passage"),
    ("passages_per_s", "passages/s"),
    ("gflop_per_passage", "GFLOP/passage"),
    ("flops_per_s", "achieved FLOP/s"),
    ("fraction_of_gemm", "fraction of GEMM"),
    ("peak_rss_delta_mb", "peak RSS delta MiB"),
    ("code_path", "code path"),
]


def markdown(result: dict[str, Any]) -> str:
    """Index curves, growth exponents and embedding cost (the projection is rendered by `projection_markdown`)."""
    growth_cols = [
        ("index", "index"),
        ("dim", "dim"),
        ("passages", "passages"),
        ("slope_build_s", "build"),
        ("slope_readd_s", "re-add"),
        ("slope_search_s_per_query", "search s/query"),
        ("slope_index_mb", "memory"),
    ]
    parts = [
        f"Index build, refresh re-add and search (top-10, calls of {SEARCH_BATCH} queries; single-query latency) "
        "vs corpus size:",
        "",
        md_table(result.get("index", []), INDEX_COLUMNS),
        "",
        "Growth exponents (log-log slope vs passages; 1 = linear):",
        "",
        md_table(result.get("growth", []), growth_cols),
        "",
        "Passage embedding cost (real-length passages):",
        "",
        md_table(result.get("embedding", []), EMBED_COLUMNS),
        "",
    ]
    parts += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(parts)


def projection_markdown(result: dict[str, Any]) -> str:
    """The paper-scale projection table (quantity, value, unit, measured or projected)."""
    return md_table(
        result.get("projection", []),
        [("quantity", "quantity"), ("value", "value"), ("unit", "unit"), ("basis", "measured / projected")],
    )


def settings_markdown(result: dict[str, Any]) -> str:
    """Settings per GPU count (refresh time when sharded, interval for ≤ 10% overhead, index, advice)."""
    return md_table(
        result.get("settings", []),
        [
            ("gpus", "GPUs"),
            ("per_gpu_passages_per_s", "passages/s per GPU"),
            ("refresh_min", "full refresh, min"),
            ("allgather_s", "all-gather s"),
            ("interval_for_10pct", "steps between refreshes for ≤10% overhead"),
            ("index", "index"),
            ("advice", "pick"),
            ("basis", "basis"),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k passages only, fewer passages embedded")
    parser.add_argument(
        "--sizes", default=None, metavar="N,N", help="corpus sizes instead (e.g. 2000 for a smoke run of the code)"
    )
    parser.add_argument("--no-embed", action="store_true", help="skip the embedding-cost rows")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
    print(json.dumps(run(quick=args.quick, sizes=sizes, embed=not args.no_embed), indent=2))
    print(f"# {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

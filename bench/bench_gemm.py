"""How close the reader's hot path runs to the hardware limit.

A `torch.matmul` probe measures the machine's achieved GEMM rate (FLOP/s) and, in the same
process run, the bundled SmolLM2 reader's forward and forward+backward are timed on a fixed
batch. Their FLOPs are counted analytically (the PaLM / nanoGPT convention):

* forward      = tokens · (2 · P_matmul + 4 · L · d_attn · T)
* fwd + bwd    = 3 · forward   (backward costs two forward-sized GEMMs per weight GEMM)

where P_matmul is the number of weights in every `nn.Linear` (the tied LM head included: it is
a V×d matmul on every token), L the layer count, d_attn = heads · head_dim and T the sequence
length (the attention scores QKᵀ and the weighted sum AV, counted over the full T×T square as
PaLM does; causal kernels may skip half of it, so the attention share is an upper bound).

The ratio `achieved reader FLOP/s / GEMM FLOP/s` is the fraction of the machine's dense
matmul rate the reader actually uses; the rest goes to attention kernels, norms,
activations, memory traffic and Python overhead.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/bench_gemm.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_devices, device_label, fmt_si, md_table, ratio, timeit  # noqa: E402

READER = "smollm2-135m"


def gemm_probe(device: str = "cpu", dtype: str = "float32", n: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """Achieved FLOP/s of an n×n×n `torch.matmul` (2·n³ FLOPs per call), median of `repeats`."""
    import torch

    torch_dtype = getattr(torch, dtype)
    if n is None:
        n = 2048 if device == "cpu" else 8192
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=torch_dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=torch_dtype)
    timing = timeit(lambda: torch.matmul(a, b), repeats=repeats, warmup=1, device=device)
    return {
        "device": device_label(device),
        "dtype": dtype,
        "n": n,
        "median_s": timing.median,
        "flops_per_s": 2 * n**3 / timing.median,
    }


def matmul_params(model) -> int:
    """Weights that take part in a matmul on every token: all `nn.Linear` layers (LM head included)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def reader_flops(model, batch: int, seq_len: int) -> dict[str, float]:
    """Analytic forward and forward+backward FLOPs of a decoder-only LM on a [batch, seq_len] input."""
    cfg = model.config
    layers = cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    d_attn = cfg.num_attention_heads * head_dim
    tokens = batch * seq_len
    dense = 2 * matmul_params(model) * tokens
    attention = 4 * layers * d_attn * seq_len * tokens
    forward = dense + attention
    return {"forward": float(forward), "forward_backward": float(3 * forward), "attention_share": attention / forward}


def measure(
    device: str = "cpu",
    batch: int = 1,
    seq_len: int = 512,
    rounds: int = 3,
    gemm_n: int | None = None,
    model_name: str = READER,
    precision: str = "fp32",
) -> dict[str, Any]:
    """GEMM probe, reader forward and reader forward+backward, interleaved round after round.

    Each round times one GEMM (best of 3 calls), one forward (inference mode) and one
    forward+backward (LM loss); medians over rounds. Interleaving keeps the machine's drifting
    load from favouring one side of the ratio.
    """
    import torch

    from ragdistill.models import load_causal_lm
    from ragdistill.utils.precision import autocast

    # fp32: float32 weights and GEMM; bf16: the training fast path -- float32 master weights under bf16
    # autocast -- against a bf16 GEMM probe
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    dtype_name = str(dtype).replace("torch.", "")
    n = gemm_n or (2048 if device == "cpu" else 8192)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    model, _ = load_causal_lm(model_name, dtype=torch.float32, device=device)
    flops = reader_flops(model, batch, seq_len)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=gen).to(device)

    def forward() -> None:
        with torch.inference_mode(), autocast(precision, device):
            model(input_ids=ids)

    def forward_backward() -> None:
        with autocast(precision, device):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    fns = {"gemm": lambda: torch.matmul(a, b), "forward": forward, "forward+backward": forward_backward}
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, rounds)):
        times["gemm"].append(timeit(fns["gemm"], repeats=3, warmup=0, device=device).min)
        for name in ("forward", "forward+backward"):
            times[name].append(timeit(fns[name], repeats=1, warmup=0, device=device).median)
    med = {k: statistics.median(v) for k, v in times.items()}
    gemm_rate = 2 * n**3 / med["gemm"]
    label = device_label(device)
    if precision == "bf16":
        dtype_name = "bfloat16 (autocast, fp32 weights)"
    gemm_row = {
        "device": label,
        "dtype": str(dtype).replace("torch.", ""),
        "n": n,
        "median_s": med["gemm"],
        "flops_per_s": gemm_rate,
        "rounds": rounds,
    }
    rows = []
    for name, key in (("forward", "forward"), ("forward+backward", "forward_backward")):
        rate = flops[key] / med[name]
        row: dict[str, Any] = {
            "pass": name,
            "device": label,
            "dtype": dtype_name,
            "batch": batch,
            "seq_len": seq_len,
            "tflop_per_call": flops[key] / 1e12,
            "median_s": med[name],
            "min_s": min(times[name]),
            "flops_per_s": rate,
            "tokens_per_s": batch * seq_len / med[name],
            "attention_share": flops["attention_share"],
            "fraction_of_gemm": ratio(rate, gemm_rate),
        }
        if device != "cpu":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        rows.append(row)
    model = None  # frees the weights before the next dtype (the closures hold the same cell)
    if device != "cpu":
        torch.cuda.empty_cache()
    return {"gemm": gemm_row, "reader": rows}


def run(quick: bool = False) -> dict[str, Any]:
    """GEMM probe and reader FLOP rate on every device present; the fraction is the headline."""
    gemm_rows: list[dict[str, Any]] = []
    reader_rows: list[dict[str, Any]] = []
    ratios: dict[str, float | None] = {}
    from ragdistill.utils.precision import bf16_supported

    skipped = []
    for device in bench_devices():
        batch, seq_len = (1, 256) if quick else (1, 512)
        precisions = ["fp32"]
        if bf16_supported(device):
            precisions.append("bf16")
        else:
            skipped.append(device_label(device))
        for precision in precisions:
            res = measure(
                device,
                batch=batch,
                seq_len=seq_len,
                rounds=2 if quick else 3,
                gemm_n=(1024 if quick else 2048) if device == "cpu" else 8192,
                precision=precision,
            )
            gemm_rows.append(res["gemm"])
            for row in res["reader"]:
                reader_rows.append(row)
                tag = "cpu" if device == "cpu" else "gpu"
                ratios[f"reader {row['pass']} / GEMM rate, {precision} ({tag})"] = row["fraction_of_gemm"]
    notes = [
        f"GEMM probe: torch.matmul n×n×n, 2n³ FLOPs per call (best of 3 per round); reader: {READER}, random token "
        "ids; GEMM, forward and forward+backward interleaved round after round, medians over rounds. FLOPs counted "
        "analytically (2·P_matmul·tokens + 4·L·d_attn·T·tokens forward, ×3 for forward+backward).",
    ]
    notes.append(
        "bf16 rows: the training fast path (runtime.precision bf16: float32 weights under bf16 autocast) "
        "against a bf16×bf16 GEMM probe; measured only where bf16 is native (CUDA with bf16, CPU with "
        "AVX512-BF16/AMX)"
        + (
            f"; skipped on {', '.join(skipped)} (no native bf16: emulated, many times slower "
            "than fp32, and runtime.precision auto uses fp32 there)"
            if skipped
            else ""
        )
        + "."
    )
    for probe in gemm_rows:
        notes.append(
            f"{probe['device']}: {fmt_si(probe['flops_per_s'], 'FLOP/s')} {probe['dtype']} GEMM (n={probe['n']})."
        )
    return {
        "title": "Reader FLOP rate vs the machine's GEMM rate",
        "gemm": gemm_rows,
        "reader": reader_rows,
        "ratios": ratios,
        "notes": notes,
    }


def markdown(result: dict[str, Any]) -> str:
    """The GEMM probe and the reader rows as one table (GFLOP/s and the fraction of the GEMM rate)."""
    rows = []
    for g in result.get("gemm", []):
        rows.append(
            {
                "what": f"torch.matmul {g['n']}×{g['n']}×{g['n']}",
                "device": g["device"],
                "dtype": g["dtype"],
                "seconds": g["median_s"],
                "gflops": g["flops_per_s"] / 1e9,
                "fraction": 1.0,
            }
        )
    for r in result.get("reader", []):
        rows.append(
            {
                "what": f"{READER} {r['pass']} (batch {r['batch']}×{r['seq_len']} tokens)",
                "device": r["device"],
                "dtype": r["dtype"],
                "seconds": r["median_s"],
                "gflops": r["flops_per_s"] / 1e9,
                "fraction": r.get("fraction_of_gemm"),
                "tokens_per_s": r["tokens_per_s"],
                "attention_share": r.get("attention_share"),
            }
        )
    table = md_table(
        rows,
        [
            ("what", "measure"),
            ("device", "device"),
            ("dtype", "dtype"),
            ("seconds", "median s"),
            ("gflops", "achieved GFLOP/s"),
            ("fraction", "fraction of GEMM rate"),
            ("tokens_per_s", "tokens/s"),
            ("attention_share", "attention share of FLOPs"),
        ],
    )
    return "\n".join([table, "", *[f"- {n}" for n in result.get("notes", [])]])


def main(argv: list[str] | None = None) -> int:
    from bench.common import script_main

    return script_main(run, __doc__, "smaller matrices and batch (about a minute on 2 cores)", argv)


if __name__ == "__main__":
    raise SystemExit(main())

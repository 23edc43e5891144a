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

import argparse
import json
import time
from typing import Any

from bench.common import bench_devices, device_label, fmt_si, md_table, ratio, timeit

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
        "device": device_label(device), "dtype": dtype, "n": n,
        "median_s": timing.median, "flops_per_s": 2 * n**3 / timing.median,
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


def reader_flop_rate(device: str = "cpu", batch: int = 2, seq_len: int = 512, repeats: int = 3,
                     model_name: str = READER) -> list[dict[str, Any]]:
    """Achieved FLOP/s of the reader's forward (inference mode) and forward+backward (LM loss)."""
    import torch

    from ragdistill.models import load_causal_lm

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model, _ = load_causal_lm(model_name, dtype=dtype, device=device)
    flops = reader_flops(model, batch, seq_len)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=gen).to(device)

    def forward() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    def forward_backward() -> None:
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    rows = []
    for name, fn, n_flops in (("forward", forward, flops["forward"]),
                              ("forward+backward", forward_backward, flops["forward_backward"])):
        timing = timeit(fn, repeats=repeats, warmup=1, device=device)
        row: dict[str, Any] = {
            "pass": name, "device": device_label(device), "dtype": str(dtype).replace("torch.", ""),
            "batch": batch, "seq_len": seq_len, "tflop_per_call": n_flops / 1e12,
            "median_s": timing.median, "flops_per_s": n_flops / timing.median,
            "tokens_per_s": batch * seq_len / timing.median,
        }
        if device != "cpu":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        rows.append(row)
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    for row in rows:
        row["attention_share"] = flops["attention_share"]
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    """GEMM probe and reader FLOP rate on every device present; the fraction is the headline."""
    gemm_rows: list[dict[str, Any]] = []
    reader_rows: list[dict[str, Any]] = []
    ratios: dict[str, float | None] = {}
    for device in bench_devices():
        dtype = "float32" if device == "cpu" else "bfloat16"
        probe = gemm_probe(device, dtype, n=(1024 if quick else 2048) if device == "cpu" else 8192,
                           repeats=3 if quick else 5)
        gemm_rows.append(probe)
        batch, seq_len = (1, 256) if quick else (1, 512)
        rows = reader_flop_rate(device, batch=batch, seq_len=seq_len, repeats=2 if quick else 3)
        for row in rows:
            row["fraction_of_gemm"] = ratio(row["flops_per_s"], probe["flops_per_s"])
            reader_rows.append(row)
            tag = "cpu" if device == "cpu" else "gpu"
            ratios[f"reader {row['pass']} / GEMM rate ({tag})"] = row["fraction_of_gemm"]
    notes = [
        f"GEMM probe: torch.matmul n×n×n, 2n³ FLOPs per call; reader: {READER}, random token ids, "
        "FLOPs counted analytically (2·P_matmul·tokens + 4·L·d_attn·T·tokens forward, ×3 for forward+backward).",
    ]
    for probe in gemm_rows:
        notes.append(f"{probe['device']}: {fmt_si(probe['flops_per_s'], 'FLOP/s')} {probe['dtype']} GEMM (n={probe['n']}).")
    return {
        "title": "Reader FLOP rate vs the machine's GEMM rate",
        "gemm": gemm_rows, "reader": reader_rows, "ratios": ratios, "notes": notes,
    }


def markdown(result: dict[str, Any]) -> str:
    """The GEMM probe and the reader rows as one table (GFLOP/s and the fraction of the GEMM rate)."""
    rows = []
    for g in result.get("gemm", []):
        rows.append({"what": f"torch.matmul {g['n']}×{g['n']}×{g['n']}", "device": g["device"], "dtype": g["dtype"],
                     "seconds": g["median_s"], "gflops": g["flops_per_s"] / 1e9, "fraction": 1.0})
    for r in result.get("reader", []):
        rows.append({"what": f"{READER} {r['pass']} (batch {r['batch']}×{r['seq_len']} tokens)", "device": r["device"],
                     "dtype": r["dtype"], "seconds": r["median_s"], "gflops": r["flops_per_s"] / 1e9,
                     "fraction": r.get("fraction_of_gemm"), "tokens_per_s": r["tokens_per_s"],
                     "attention_share": r.get("attention_share")})
    table = md_table(rows, [("what", "measure"), ("device", "device"), ("dtype", "dtype"), ("seconds", "median s"),
                            ("gflops", "achieved GFLOP/s"), ("fraction", "fraction of GEMM rate"),
                            ("tokens_per_s", "tokens/s"), ("attention_share", "attention share of FLOPs")])
    return "\n".join([table, "", *[f"- {n}" for n in result.get("notes", [])]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller matrices and batch (about a minute on 2 cores)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    print(json.dumps(run(quick=args.quick), indent=2))
    print(f"# {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

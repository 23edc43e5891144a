"""Cost of reading the reader's attention: answer-row capture vs a plain forward vs output_attentions.

For the bundled reader at several prompt lengths, with a 16-token answer, side by side:

* (a) the reader's plain forward (SDPA kernel; LM head on the answer rows only),
* (b) the same forward with the project's score extraction (``DecoderReader`` attention
  capture: the answer rows' A×T probabilities × value norms, per layer, next to SDPA),
* (c) the naive route: eager attention with ``output_attentions=True`` (every layer's
  H×T×T probabilities kept) plus hooks on the value projections, w_t computed from them.

Timing: after a warm-up, (a) and (b) alternate round after round (a, b, a, b, ...) so drifting
load on a shared machine favours neither; (c) is timed after them (its gigabytes of attention
maps would slow whatever runs next). Medians of the rounds are reported, with the process CPU
time next to the wall time on CPU (on a busy machine wall time mostly measures the other jobs).

Peak memory: each prompt length runs in a fresh child process. On CPU the child runs with
``MALLOC_MMAP_THRESHOLD_=65536`` so glibc serves every large tensor by mmap and returns it to
the OS when freed (resident memory then tracks live tensors instead of a malloc arena's
high-water mark). Before each measured forward the kernel's peak-RSS counter is reset
(``echo 5 > /proc/self/clear_refs``); the peak is VmHWM after the forward minus VmRSS before
it: the extra memory that forward needed. On CUDA it is ``max_memory_allocated`` growth.
(c) is skipped where its attention maps alone (L·H·T²·4 bytes) would not fit in the memory
limit (``--naive-limit-gb``, default half of the available memory); the table says so.

    python bench/bench_attention.py                       # 512, 2048, 4096 tokens on CPU
    python bench/bench_attention.py --device cuda --out attention.json
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_label, ratio, run_header, run_isolated, timeit  # noqa: E402

READER = "smollm2-135m"
QUESTION = "Which of these documents tells where the river that flows through the old city begins?"
CONFIGS = ("a_sdpa", "b_extract", "c_naive")
LABELS = {"a_sdpa": "(a) SDPA forward", "b_extract": "(b) + score extraction", "c_naive": "(c) output_attentions"}


# --------------------------------------------------------------------------- memory probes (child side)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb(fn, device: str) -> float | None:
    """Extra memory (MiB) one call of fn needed at its peak; None where it cannot be measured."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = _status_kb("VmRSS")
    if base is None or not _reset_peak_rss():
        return None
    fn()
    peak = _status_kb("VmHWM")
    return None if peak is None else max(0.0, (peak - base) / 1024)


def _available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


# --------------------------------------------------------------------------- one prompt length (child)


def _passages(length: int, k: int = 5):
    """K passages long enough that the budget cuts them to exactly `length` prompt tokens."""
    from bench.common import load_real_passages, synthetic_passages
    from ragdistill.data.types import Passage

    pool = load_real_passages(200) or synthetic_passages(200)
    words_needed = int(length / k * 1.2) + 50
    out, j = [], 0
    for i in range(k):
        title, words = pool[j % len(pool)][0], []
        while len(words) < words_needed:
            words.extend(pool[j % len(pool)][1].split())
            j += 1
        out.append(Passage(str(i), title, " ".join(words)))
    return out


def measure_length(
    length: int,
    answer_tokens: int = 16,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    naive_limit_gb: float | None = None,
    reader: str = READER,
    part: str = "both",
    budget_s: float = 20.0,
) -> dict[str, Any]:
    """Peak memory ('memory'), times ('time') or both of (a), (b), (c) at one prompt length, in this (fresh) process."""
    import torch

    from ragdistill.readers.decoder import DecoderReader

    if threads:
        torch.set_num_threads(threads)
    r = DecoderReader(reader, device=device, max_prompt_tokens=length)
    model = r.model
    cfg = model.config
    answer = " ".join(["the river begins in the northern hills above the old mill town"] * 4)

    def item_for(n_tokens: int):
        it = r._item(QUESTION, _passages(n_tokens), answer)
        it.answer_ids = it.answer_ids[:answer_tokens]
        return it

    item, warm_item = item_for(length), item_for(256)
    assert len(item.prompt_ids) == length, (len(item.prompt_ids), length)

    def plain(it=item):
        with torch.no_grad():
            return r._forward([it], None)

    def extract(it=item):
        with torch.no_grad():
            _, _, w = r._forward([it], dict(layers=None, value_norm=True))
            return r._results([it], w, "sum")[0]

    values: dict[int, torch.Tensor] = {}
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads

    def naive(it=item):
        """w_t from output_attentions=True (eager) and value-projection hooks: the route (b) replaces."""
        ids = torch.tensor([it.ids], device=r.device)
        rows = torch.tensor(it.rows, device=r.device)
        hooks = [
            layer.self_attn.v_proj.register_forward_hook(lambda m, i, o, k=k: values.__setitem__(k, o))
            for k, layer in enumerate(model.model.layers)
        ]
        try:
            with torch.no_grad():
                out = model(ids, output_attentions=True, use_cache=False, logits_to_keep=rows)
                w = torch.zeros(ids.shape[1], device=r.device)
                for k, att in enumerate(out.attentions):
                    v = values[k][0].view(-1, n_kv, head_dim).transpose(0, 1)
                    vn = v.norm(dim=-1).repeat_interleave(n_heads // n_kv, dim=0)
                    w += (att[0][:, rows, :] * vn[:, None, :]).mean(dim=(0, 1))
                w /= len(out.attentions)
        finally:
            for h in hooks:
                h.remove()
            values.clear()
        return w

    def with_eager(fn):
        def run(*a):
            model.set_attn_implementation("eager")
            try:
                return fn(*a)
            finally:
                model.set_attn_implementation("sdpa")

        return run

    naive_gb = cfg.num_hidden_layers * n_heads * length**2 * 4 / 2**30
    limit = naive_limit_gb if naive_limit_gb is not None else _available_gb() / 2
    fns = {"a_sdpa": plain, "b_extract": extract}
    skipped = None
    if naive_gb <= limit:
        fns["c_naive"] = with_eager(naive)
    else:
        skipped = f"(c) skipped: its attention maps need ≈{naive_gb:.1f} GiB, above the {limit:.1f} GiB limit"

    for _name, fn in fns.items():  # warm-up at a short length: kernels, lazy inits
        fn(warm_item)
    result: dict[str, Any] = {
        "length": length,
        "answer_tokens": answer_tokens,
        "device": device_label(device),
        "naive_attention_maps_gb": naive_gb,
        "skipped": skipped,
        "configs": {},
    }
    for name in fns:
        result["configs"][name] = {}
    if part not in ("memory", "time", "both"):
        raise ValueError(f"part must be memory, time or both, got {part!r}")
    if part in ("memory", "both"):
        for name, fn in fns.items():
            result["configs"][name]["peak_mb"] = _peak_mb(fn, device)
    if part == "memory":
        return result
    # timing: (a) and (b) alternate round after round; (c) comes after them, because its gigabytes of
    # attention maps leave the allocator and caches in a state that would slow whatever runs next
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu_times: dict[str, list[float]] = {name: [] for name in fns}
    phases = [[n for n in ("a_sdpa", "b_extract") if n in fns], [n for n in ("c_naive",) if n in fns]]
    # the extraction's own share of (b), timed inside the same forward: immune to drifting machine load
    import ragdistill.readers.eq1 as attention_mod

    inner = attention_mod.row_attention_scores
    spent = [0.0]

    def timed_rows(*a, **kw):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        spent[0] += time.perf_counter() - t0
        return out

    shares: list[float] = []
    attention_mod.row_attention_scores = timed_rows
    try:
        for phase in phases:
            # at least `repeats` rounds; short prompts get more (until ~budget_s of timing) because a few
            # hundred milliseconds per forward on a shared VM drift by several percent from round to round
            t_phase = time.perf_counter()
            rounds = 0
            while rounds < repeats or (time.perf_counter() - t_phase < budget_s and rounds < 6 * repeats):
                rounds += 1
                for name in phase:
                    spent[0] = 0.0
                    c0 = time.process_time()
                    times[name].extend(timeit(fns[name], repeats=1, warmup=0, device=device).times)
                    cpu_times[name].append(time.process_time() - c0)
                    if name == "b_extract":
                        shares.append(spent[0] / times[name][-1])
    finally:
        attention_mod.row_attention_scores = inner
    result["extraction_share_of_b"] = statistics.median(shares) if shares else None
    if times.get("a_sdpa") and times.get("b_extract"):  # (a) and (b) ran in pairs: the median of the pair ratios
        result["paired_b_over_a"] = statistics.median(b / a for a, b in zip(times["a_sdpa"], times["b_extract"]))
    result["rounds"] = {name: len(t) for name, t in times.items()}
    for name in fns:
        result["configs"][name].update(median_s=statistics.median(times[name]), times_s=times[name])
        if not device.startswith("cuda"):
            result["configs"][name].update(median_cpu_s=statistics.median(cpu_times[name]), cpu_times_s=cpu_times[name])
    # the two score routes must agree
    if "c_naive" in fns:
        w_b = extract().token_scores[:length]
        w_c = fns["c_naive"]().float().cpu()[:length]
        result["max_rel_diff_b_vs_c"] = float(((w_b - w_c).abs().max() / w_c.abs().max()).item())
    return result


# --------------------------------------------------------------------------- driver


def _row_ratios(res: dict[str, Any]) -> dict[str, float | None]:
    c = res["configs"]
    a, b, n = c.get("a_sdpa", {}), c.get("b_extract", {}), c.get("c_naive", {})
    return {
        "b/a CPU time": ratio(b.get("median_cpu_s"), a.get("median_cpu_s")),
        "c/b CPU time": ratio(n.get("median_cpu_s"), b.get("median_cpu_s")) if n else None,
        "b/a time": res.get("paired_b_over_a") or ratio(b.get("median_s"), a.get("median_s")),
        "b/a peak memory": ratio(b.get("peak_mb"), a.get("peak_mb")),
        "c/b time": ratio(n.get("median_s"), b.get("median_s")) if n else None,
        "c/b peak memory": ratio(n.get("peak_mb"), b.get("peak_mb")) if n else None,
    }


def run(
    quick: bool = False,
    lengths: list[int] | None = None,
    answer_tokens: int = 16,
    repeats: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    naive_limit_gb: float | None = None,
    reader: str = READER,
    partial_out: str | None = None,
) -> dict[str, Any]:
    """All lengths, each in fresh child processes; returns rows, ratios and notes (the suite's format).

    `partial_out`: rewrite this JSON file after each length, so a long run keeps what it measured.
    """
    if device is None:
        from ragdistill.utils.seed import default_device

        device = str(default_device())
    lengths = lengths or ([256, 512] if quick else [512, 2048, 4096])
    repeats = repeats or (2 if quick else 5)
    rows = []
    for length in lengths:
        t0 = time.perf_counter()
        kwargs = dict(
            length=length,
            answer_tokens=answer_tokens,
            repeats=repeats,
            device=device,
            threads=threads,
            naive_limit_gb=naive_limit_gb,
            reader=reader,
        )
        if device.startswith("cuda"):
            res = run_isolated("bench.bench_attention:measure_length", {**kwargs, "part": "both"}, threads=threads)
        else:
            # memory in its own child with a fixed mmap threshold (large tensors mmapped and unmapped on free,
            # so resident memory tracks live tensors); timing in a child with the default allocator
            old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
            os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
            try:
                mem = run_isolated(
                    "bench.bench_attention:measure_length", {**kwargs, "part": "memory"}, threads=threads
                )
            finally:
                if old is None:
                    os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
                else:
                    os.environ["MALLOC_MMAP_THRESHOLD_"] = old
            res = run_isolated("bench.bench_attention:measure_length", {**kwargs, "part": "time"}, threads=threads)
            for name, cfg in mem["configs"].items():
                res["configs"].setdefault(name, {})["peak_mb"] = cfg.get("peak_mb")
        res["ratios"] = _row_ratios(res)
        res["wall_s"] = time.perf_counter() - t0
        rows.append(res)
        print(f"# {length} tokens done in {res['wall_s']:.0f} s", file=sys.stderr)
        if partial_out:
            from ragdistill.utils.io import atomic_write_json

            atomic_write_json(partial_out, {"rows": rows, "partial": True})
    ratios = {}
    for res in rows:
        for key, val in res["ratios"].items():
            ratios[f"{key} @ {res['length']}"] = val
    notes = [
        f"reader {reader}, batch 1, prompt of exactly N tokens (5 passages cut by the budget), {answer_tokens}-token answer; "
        f"at least {repeats} rounds after a warm-up (more for short prompts, up to ~20 s of timing per config), (a) and (b) "
        "alternating, (c) after them; times are medians, (b)/(a) time is the median of the per-round ratios (each pair "
        "ran back to back, so drift cancels). On CPU the process CPU time (all threads) is reported too: on a shared "
        "machine wall time mostly measures the other jobs.",
        "peak = extra resident memory of one forward (CPU: VmHWM reset via /proc/self/clear_refs, glibc mmap threshold "
        "64 KiB, fresh process per length; CUDA: max_memory_allocated growth).",
        "extraction share of (b): wall time spent computing the answer rows' scores inside (b)'s forward, over (b)'s "
        "wall time, median over rounds; measured inside one forward, it does not drift with the machine's load.",
        "targets: (b)/(a) ≤ 1.05 in time and peak memory at every length; (c)/(b) ≥ 3 in time at 2048 tokens.",
    ]
    notes += [r["skipped"] for r in rows if r.get("skipped")]
    return {
        "title": "Attention score extraction: answer rows vs plain forward vs output_attentions",
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
    }


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(result: dict[str, Any]) -> str:
    """Wall seconds (and, on CPU, process CPU seconds: robust to other jobs on a shared machine), peaks, ratios."""
    lines = [
        "| prompt tokens | device | (a) SDPA s | (b) +extract s | (c) output_attentions s | (b)/(a) time | (c)/(b) time "
        "| (b)/(a) CPU time | extraction share of (b) | (c)/(b) CPU time | (a) peak MiB | (b) peak MiB | (c) peak MiB | (b)/(a) mem | max rel. diff b vs c |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        c = r["configs"]
        q = r["ratios"]

        def get(name: str, key: str, spec: str, c: dict = c) -> str:
            if name not in c:
                return "skipped"
            return _fmt(c[name].get(key), spec)

        naive_peak = get("c_naive", "peak_mb", ".0f")
        if naive_peak == "skipped":
            naive_peak = "skipped (maps alone ≈%.0f)" % (r["naive_attention_maps_gb"] * 1024)
        lines.append(
            f"| {r['length']} | {r['device']} | {get('a_sdpa', 'median_s', '.3f')} | {get('b_extract', 'median_s', '.3f')} "
            f"| {get('c_naive', 'median_s', '.3f')} | {_fmt(q['b/a time'], '.3f')} | {_fmt(q['c/b time'], '.2f')} "
            f"| {_fmt(q.get('b/a CPU time'), '.3f')} | {_fmt(r.get('extraction_share_of_b'), '.2%')} "
            f"| {_fmt(q.get('c/b CPU time'), '.2f')} "
            f"| {get('a_sdpa', 'peak_mb', '.1f')} | {get('b_extract', 'peak_mb', '.1f')} | {naive_peak} "
            f"| {_fmt(q['b/a peak memory'], '.3f')} | {_fmt(r.get('max_rel_diff_b_vs_c'), '.1e')} |"
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in result["notes"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths", default=None, help="prompt lengths in tokens, comma-separated (default 512,2048,4096)"
    )
    parser.add_argument("--answer-tokens", type=int, default=16, help="answer length in tokens (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds (default 5; quick 2)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in the children")
    parser.add_argument(
        "--naive-limit-gb",
        type=float,
        default=None,
        help="skip (c) where its attention maps exceed this many GiB (default: half the available memory)",
    )
    parser.add_argument("--reader", default=READER, help="reader model (default %(default)s; Llama-family for (c))")
    parser.add_argument("--quick", action="store_true", help="256 and 512 tokens, 2 rounds (a smoke run)")
    parser.add_argument("--out", default=None, help="write the results (with machine and versions) as JSON")
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else None
    result = run(
        quick=args.quick,
        lengths=lengths,
        answer_tokens=args.answer_tokens,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
        naive_limit_gb=args.naive_limit_gb,
        reader=args.reader,
        partial_out=args.out,
    )
    print(markdown(result))
    if args.out:
        from ragdistill.utils.io import atomic_write_json

        atomic_write_json(args.out, {**run_header(argv), **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

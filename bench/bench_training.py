"""Training step throughput per regime, with the per-phase split, and step time vs K and prompt length.

Uses the project's own training loop (`ragdistill.training.loop.Trainer`) on the generated
demo world with the demo configs (configs/demo/*.yaml), a handful of steps each:

* per regime (joint = off-the-shelf distillation, reader = fine-tuned step 1, retriever =
  fine-tuned step 2 with the bundled reader, FiD joint and FiD perplexity distillation):
  examples/s, reader tokens/s (counted by a forward pre-hook on the reader: every token the
  reader reads in the step, prompt and answer) and the loop's own per-phase seconds per step
  (retrieve, reader, signal, retriever, backward, optim); a full index refresh is timed once
  per regime that trains the retriever and shown both per refresh and amortised over the
  config's refresh interval;
* speed-up table: per regime (joint, reader, retriever, FiD joint), the plain path (fp32, batch 2,
  prompt budget 256, per-parameter Adam loop, one signal forward per question: the path before
  the fast one) and the fast path (the demo config as shipped: ``runtime.precision: auto``,
  its batch and prompt budget, ``optim.impl: auto``) built side by side in one process and
  stepped alternately (A B A B ...), examples/s the median over rounds;
* joint regime, in one process: step time vs K (1, 5, 20 passages, prompt budget large
  enough to hold them all) and vs the prompt budget (128, 256, 512 tokens at K = 5).

Each regime runs in a fresh process (peak RSS is its own); on a machine with CUDA the
regimes run again on the GPU, marked with the card.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/bench_training.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, bench_devices, device_label, md_table, run_isolated  # noqa: E402

REGIMES = {
    # label: (config file, extra overrides)
    "joint (off-the-shelf distillation)": ("offshelf_distill.yaml", []),
    "reader (fine-tuned step 1)": ("finetuned_step1.yaml", []),
    "retriever (fine-tuned step 2)": ("finetuned_step2.yaml", ["reader.name=smollm2-135m"]),
    "FiD joint (encoder-decoder distillation)": ("encdec_distill.yaml", []),
    "FiD perplexity distillation": ("perplexity_distill.yaml", []),
}
QUICK_REGIMES = ("joint (off-the-shelf distillation)",)
LOOP_PHASES = ("retrieve", "reader", "signal", "retriever", "backward", "optim")
BENCH_OVERRIDES = [  # no evaluation, checkpoints or monitor inside the measured steps
    "eval.every=0",
    "eval.final=false",
    "train.save_every=0",
    "monitor.every=0",
    "train.log_every=1000000",
    "train.steps=1000000",
]


class _TokenCounter:
    """Counts every token the reader's model reads (forward pre-hook): the reader's share of the work."""

    def __init__(self, model):
        self.tokens = 0
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None:
            self.tokens += int(mask.sum())
        elif ids is not None:
            self.tokens += int(ids.numel())
        self.calls += 1

    def take(self) -> tuple[int, int]:
        out = (self.tokens, self.calls)
        self.tokens, self.calls = 0, 0
        return out


def _trainer(config: str, overrides: list[str], device: str, out: Path):
    from ragdistill.config import load_config
    from ragdistill.training.loop import Trainer

    cfg = load_config(ROOT / "configs" / "demo" / config, [*BENCH_OVERRIDES, f"runtime.device={device}", *overrides])
    trainer = Trainer(cfg, out, progress=False)
    trainer.setup()
    trainer.phases.take()  # drop setup time (initial index build)
    return trainer


def _measure_steps(trainer, counter: _TokenCounter, steps: int) -> dict[str, Any]:
    """Run `steps` training steps; wall time, per-phase seconds per step, examples/s, reader tokens/s."""
    trainer.phases.take()
    counter.take()
    ex0 = trainer.state.examples
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    wall = time.perf_counter() - t0
    phases = trainer.phases.take()
    tokens, calls = counter.take()
    examples = trainer.state.examples - ex0
    row: dict[str, Any] = {
        "steps": steps,
        "step_s": wall / steps,
        "examples_per_s": examples / wall,
        "reader_tokens_per_s": tokens / wall,
        "reader_tokens_per_example": tokens / max(1, examples),
    }
    for p in LOOP_PHASES:
        row[f"{p}_s"] = phases.get(p, 0.0) / steps
    row["refresh_in_steps_s"] = phases.get("refresh", 0.0) / steps
    return row


def regime_config(label: str, device: str = "cpu", steps: int = 2, warmup: int = 1) -> dict[str, Any]:
    """One regime in this (fresh) process: setup, `warmup` steps, `steps` measured steps, one timed refresh."""
    import torch

    from ragdistill.retrieval.refresh import RefreshSchedule

    config, overrides = REGIMES[label]
    with tempfile.TemporaryDirectory(prefix="ragdistill-bench-train-") as tmp:
        t0 = time.perf_counter()
        trainer = _trainer(config, overrides, device, Path(tmp))
        setup_s = time.perf_counter() - t0
        counter = _TokenCounter(trainer.reader.model)
        for _ in range(warmup):
            trainer.train_step()
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats(device)
        row = {
            "regime": label,
            "device": device_label(device),
            "batch_size": trainer.cfg.train.batch_size,
            "k": trainer.cfg.train.k,
            "setup_s": setup_s,
        }
        row.update(_measure_steps(trainer, counter, steps))
        if trainer.cfg.trains_retriever:
            with trainer.phases("refresh"):
                info = (
                    trainer._refresh_index()
                    if hasattr(trainer, "_refresh_index")
                    else trainer.index.refresh(trainer.retriever)
                )
            refresh_s = trainer.phases.take()["refresh"]
            interval = _interval(RefreshSchedule.parse(trainer.cfg.index.refresh, key="index.refresh"))
            row.update(
                {
                    "refresh_s": refresh_s,
                    "passages": len(trainer.index),
                    "refresh_passages_per_s": len(trainer.index) / refresh_s if refresh_s else None,
                    "refresh_every": interval,
                    "refresh_amortised_s": refresh_s / interval if interval else None,
                }
            )
            row["refresh_info"] = {k: v for k, v in (info or {}).items() if isinstance(v, (int, float, str))}
        if device != "cpu":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        counter.handle.remove()
    return row


SPEEDUP_REGIMES = (
    "joint (off-the-shelf distillation)",
    "reader (fine-tuned step 1)",
    "retriever (fine-tuned step 2)",
    "FiD joint (encoder-decoder distillation)",
)
PLAIN_OVERRIDES = ["runtime.precision=fp32", "train.batch_size=2", "train.grad_accum=1", "optim.impl=loop"]
PLAIN_DECODER_BUDGET = "reader.max_prompt_tokens=256"  # the demo decoder configs' budget before the paper's 128


def _path_info(trainer) -> dict[str, Any]:
    group = trainer.optimizer.param_groups[0]
    impl = "fused" if group.get("fused") else "foreach" if group.get("foreach") else "loop"
    return {
        "precision": trainer.dist.precision,
        "batch_size": trainer.cfg.train.batch_size * trainer.cfg.train.grad_accum,
        "prompt_budget": trainer.cfg.reader.max_prompt_tokens,
        "optimizer": f"{trainer.cfg.optim.name} ({impl})",
        "signal": "per question" if trainer.signal.batch is None else "batched",
    }


def speedup_config(label: str, device: str = "cpu", rounds: int = 3, steps: int = 1) -> dict[str, Any]:
    """Plain vs fast path of one regime, in this process, stepped alternately; examples/s medians and their ratio."""
    import dataclasses
    import statistics

    config, overrides = REGIMES[label]
    plain_over = [*overrides, *PLAIN_OVERRIDES]
    if not config.startswith(("encdec", "perplexity")):
        plain_over.append(PLAIN_DECODER_BUDGET)
    with tempfile.TemporaryDirectory(prefix="ragdistill-bench-speedup-") as tmp:
        plain = _trainer(config, plain_over, device, Path(tmp) / "plain")
        plain.signal = dataclasses.replace(plain.signal, batch=None)  # one signal forward per question, as before
        fast = _trainer(config, list(overrides), device, Path(tmp) / "fast")
        runs = {"plain": plain, "fast": fast}
        rates: dict[str, list[float]] = {"plain": [], "fast": []}
        step_s: dict[str, list[float]] = {"plain": [], "fast": []}
        for t in runs.values():
            t.train_step()  # warm-up
        for r in range(rounds):
            order = ("plain", "fast") if r % 2 == 0 else ("fast", "plain")
            for name in order:
                t = runs[name]
                ex0, t0 = t.state.examples, time.perf_counter()
                for _ in range(steps):
                    t.train_step()
                wall = time.perf_counter() - t0
                rates[name].append((t.state.examples - ex0) / wall)
                step_s[name].append(wall / steps)
        rows = []
        for name, t in runs.items():
            row = {
                "regime": label.split(" (")[0],
                "path": name,
                "device": device_label(device),
                **_path_info(t),
                "step_s": statistics.median(step_s[name]),
                "examples_per_s": statistics.median(rates[name]),
                "rounds": rounds,
            }
            rows.append(row)
        rows[1]["speedup"] = rows[1]["examples_per_s"] / rows[0]["examples_per_s"]
        rows[1]["speedup_rounds"] = [f / p for f, p in zip(rates["fast"], rates["plain"])]
    return {"rows": rows}


def _interval(schedule) -> int | None:
    """Steps between refreshes at the start of training (the first step that is due after step 0)."""
    for step in range(1, 100_001):
        if schedule.is_due(step):
            return step
    return None


def sweep_config(
    device: str = "cpu", ks: tuple[int, ...] = (1, 5, 20), budgets: tuple[int, ...] = (128, 256, 512), steps: int = 2
) -> dict[str, Any]:
    """Joint regime in one process: step time vs K (ample prompt budget) and vs the prompt budget at K = 5."""
    label = "joint (off-the-shelf distillation)"
    config, overrides = REGIMES[label]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ragdistill-bench-sweep-") as tmp:
        trainer = _trainer(config, [*overrides, f"train.k={max(ks)}"], device, Path(tmp))
        counter = _TokenCounter(trainer.reader.model)
        builder = trainer.reader.prompt
        trainer.train_step()  # warm-up
        points = [("K", k, k, 4096) for k in ks] + [("prompt budget", b, 5, b) for b in budgets]
        for sweep, value, k, budget in points:
            trainer.cfg.train.k = k
            builder.max_prompt_tokens = budget
            row = {"sweep": sweep, "value": value, "k": k, "prompt_budget": budget, "device": device_label(device)}
            row.update(_measure_steps(trainer, counter, steps))
            row["prompt_tokens_per_example"] = row["reader_tokens_per_example"]
            rows.append(row)
        counter.handle.remove()
    return {"rows": rows}


def run(quick: bool = False) -> dict[str, Any]:
    """Every regime (quick: two) and the K / prompt-length sweep, on CPU and, when present, on the GPU."""
    regimes: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    errors: list[str] = []
    labels = QUICK_REGIMES if quick else tuple(REGIMES)
    for device in bench_devices():
        gpu = device != "cpu"
        for label in labels:
            try:
                row = run_isolated(
                    "bench.bench_training:regime_config",
                    {"label": label, "device": device, "steps": 1 if quick else (4 if gpu else 2)},
                    timeout=1200,
                )
            except Exception as exc:
                errors.append(f"{label} on {device}: {exc}")
                continue
            row.pop("baseline_rss_mb", None)
            row.pop("peak_rss_delta_mb", None)
            if gpu:
                row.pop("peak_rss_mb", None)
            regimes.append(row)
        try:
            res = run_isolated(
                "bench.bench_training:sweep_config",
                {
                    "device": device,
                    "ks": [1, 5] if quick else [1, 5, 20],
                    "budgets": [] if quick else [128, 256, 512],
                    "steps": 1 if quick else 2,
                },
                timeout=1200,
            )
            sweep.extend(res["rows"])
        except Exception as exc:
            errors.append(f"sweep on {device}: {exc}")

    speedup: list[dict[str, Any]] = []
    for device in bench_devices():
        for label in QUICK_REGIMES if quick else SPEEDUP_REGIMES:
            try:
                res = run_isolated(
                    "bench.bench_training:speedup_config",
                    {"label": label, "device": device, "rounds": 1 if quick else 3},
                    timeout=1800,
                )
                speedup.extend(res["rows"])
            except Exception as exc:
                errors.append(f"speed-up {label} on {device}: {exc}")

    ratios: dict[str, float | None] = {}
    for r in speedup:
        if r.get("speedup") is not None:
            tag = "cpu" if r["device"].startswith("cpu") else "gpu"
            ratios[f"training examples/s fast / plain, {r['regime']} ({tag})"] = r["speedup"]
    k_rows = {r["value"]: r for r in sweep if r["sweep"] == "K" and r["device"].startswith("cpu")}
    if 1 in k_rows and max(k_rows) > 1:
        kmax = max(k_rows)
        ratios[f"step time K={kmax} / K=1 (cpu)"] = k_rows[kmax]["step_s"] / k_rows[1]["step_s"]
    for r in regimes:
        if r["device"].startswith("cpu") and r.get("refresh_s"):
            ratios[f"refresh / step time, {r['regime'].split(' (')[0]} (cpu)"] = r["refresh_s"] / r["step_s"]
    joint = next((r for r in regimes if r["regime"].startswith("joint") and r["device"].startswith("cpu")), None)
    if joint:
        ratios["reader+backward share of a joint step (cpu)"] = (joint["reader_s"] + joint["backward_s"]) / joint[
            "step_s"
        ]
    notes = [
        "Demo world and demo configs (configs/demo), the project's Trainer.train_step; evaluation, checkpoints "
        "and the monitor are off during the measured steps. Phases are the loop's own timers, in seconds per step.",
        "reader tokens = every token the reader model reads in the step (prompts and answers; FiD: encoder inputs).",
        "refresh_s = one full re-embedding of the demo corpus with the current retriever; refresh_amortised_s "
        "spreads it over the config's refresh interval.",
        "speed-up: plain = fp32, batch 2, prompt budget 256 (decoder readers; FiD keeps its 96 per passage), "
        "per-parameter Adam loop, one signal forward per question; fast = the demo config as shipped "
        "(runtime.precision auto -> bf16 only where the hardware has native bf16, else fp32; its batch size and "
        "prompt budget; optim.impl auto -> fused). Both built in one process and stepped alternately, one step per "
        "round after a warm-up step; examples/s is the median over rounds, speed-up = fast / plain. Where the "
        "config's prompt budget differs from the plain path's, the reader tokens per example differ too and are "
        "part of the speed-up (the decoder demo configs use 256: the same on both paths).",
    ]
    return {
        "title": "Training step throughput per regime, per-phase split, and step time vs K and prompt length",
        "regimes": regimes,
        "sweep": sweep,
        "speedup": speedup,
        "ratios": ratios,
        "notes": notes,
        "errors": errors,
    }


def markdown(result: dict[str, Any]) -> str:
    """Per-regime throughput and phase split, then the K / prompt-budget sweep."""
    regime_cols = [
        ("regime", "regime"),
        ("device", "device"),
        ("batch_size", "batch"),
        ("k", "K"),
        ("step_s", "step s"),
        ("examples_per_s", "examples/s"),
        ("reader_tokens_per_s", "reader tokens/s"),
        ("retrieve_s", "retrieve s"),
        ("reader_s", "reader s"),
        ("signal_s", "signal s"),
        ("retriever_s", "retriever s"),
        ("backward_s", "backward s"),
        ("optim_s", "optim s"),
        ("refresh_s", "refresh s (one)"),
        ("refresh_every", "refresh every"),
        ("refresh_amortised_s", "refresh s/step"),
        ("peak_rss_mb", "peak RSS MiB"),
        ("peak_mem_mb", "GPU peak MiB"),
    ]
    regimes = result.get("regimes", [])
    regime_cols = [c for c in regime_cols if any(r.get(c[0]) is not None for r in regimes)]
    sweep_cols = [
        ("sweep", "sweep"),
        ("value", "value"),
        ("device", "device"),
        ("prompt_tokens_per_example", "reader tokens/example"),
        ("step_s", "step s"),
        ("examples_per_s", "examples/s"),
        ("reader_tokens_per_s", "reader tokens/s"),
        ("retrieve_s", "retrieve s"),
        ("reader_s", "reader s"),
        ("retriever_s", "retriever s"),
        ("backward_s", "backward s"),
        ("optim_s", "optim s"),
    ]
    speed_cols = [
        ("regime", "regime"),
        ("path", "path"),
        ("device", "device"),
        ("precision", "precision"),
        ("batch_size", "batch"),
        ("prompt_budget", "prompt budget"),
        ("optimizer", "optimiser"),
        ("signal", "signal"),
        ("step_s", "step s"),
        ("examples_per_s", "examples/s"),
        ("speedup", "examples/s vs plain"),
    ]
    parts = ["Per regime (seconds per step by phase):", "", md_table(regimes, regime_cols), ""]
    if result.get("speedup"):
        parts += [
            "Speed-up of the fast path (same run, stepped alternately):",
            "",
            md_table(result["speedup"], speed_cols),
            "",
        ]
    parts += ["Step time vs K and prompt budget (joint regime):", "", md_table(result.get("sweep", []), sweep_cols), ""]
    parts += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    from bench.common import script_main

    return script_main(run, __doc__, "the joint regime only, one step, K in (1, 5)", argv)


if __name__ == "__main__":
    raise SystemExit(main())

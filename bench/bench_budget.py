"""What one unit of each demo setting costs on this machine: the measurements the demo budgets are chosen from.

For every demo config (configs/demo) on demo world v2: seconds per optimiser step (median of the steps after the
first, at the config's batch, prompt budget and precision), one full index refresh, and the per-question cost of
the final evaluation (HR@k retrieval and greedy generation) and of the analysis (token scores per instance; the
perplexity signal by adaptive integrated gradients). Each measurement is one `ragdistill` command, run one after
the other on an otherwise idle machine, so the figures are what `make demo` will pay.

    python -m bench.bench_budget                    # ~15 minutes on 2 cores; writes bench/results/<date>-budget.json
    python -m bench.bench_budget --parts=eval,analysis   # only the evaluation and analysis costs
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, md_table  # noqa: E402

CONFIGS = {  # setting: (config, overrides that make it runnable on its own)
    "offshelf_distill": ("offshelf_distill.yaml", []),
    "finetuned_step1": ("finetuned_step1.yaml", []),
    "finetuned_step2": ("finetuned_step2.yaml", ["reader.name=smollm2-135m"]),
    "fid_reader_fit": ("fid_reader_fit.yaml", []),
    "encdec_distill": ("encdec_distill.yaml", []),
    "perplexity_distill": ("perplexity_distill.yaml", []),
}
STEPS = 6  # the first step (allocator warm-up, lazy init) is dropped from the median


def _ragdistill(*args: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "ragdistill", *args, *(["--no-progress"] if args[0] != "data" else [])]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def _prompt_budget(config: str) -> int:
    """The reader's prompt budget in a demo config: the evaluation is timed at what the demo runs."""
    from ragdistill.config import load_config

    return int(load_config(ROOT / "configs" / "demo" / config).reader.max_prompt_tokens)


def _steps(run: Path) -> dict[str, Any]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r.get("kind") == "train"][1:]
    step_s = statistics.median(1.0 / r["steps_per_s"] for r in train)
    phases = {
        k[5:]: statistics.median(r[k] for r in train) for k in train[0] if k.startswith("time/") and k != "time/refresh"
    }
    return {"step_s": step_s, "phases": phases, "peak_mem_mb": max(r.get("peak_mem_mb", 0) for r in train)}


def run(quick: bool = False, parts: tuple[str, ...] = ("train", "eval", "analysis")) -> dict[str, Any]:
    out: dict[str, Any] = {"settings": {}, "steps_timed": STEPS - 1}
    with tempfile.TemporaryDirectory(prefix="ragdistill-budget-") as tmp:
        tmp = Path(tmp)
        world = tmp / "world"
        _ragdistill("data", "demo", "--out", str(world))
        index = tmp / "index"
        out["index_build_s"] = _ragdistill(
            "index", "--corpus", str(world / "corpus.jsonl"), "--out", str(index), "--max-length", "128"
        )
        data = [
            f"data.corpus={world / 'corpus.jsonl'}",
            f"data.train={world / 'train.jsonl'}",
            f"data.dev={world / 'dev.jsonl'}",
            f"data.test={world / 'test.jsonl'}",
            f"index.dir={index}",
        ]
        for name, (config, extra) in CONFIGS.items():
            if "train" not in parts and name != "fid_reader_fit":  # the FiD reader the evaluation needs
                continue
            if quick and name not in ("offshelf_distill", "fid_reader_fit"):
                continue
            run_dir = tmp / name
            sets = [
                *data,
                *extra,
                f"train.steps={STEPS}",
                "train.log_every=1",
                "train.save_every=0",
                "eval.every=0",
                "eval.final=false",
                "index.refresh=-1",
                "runtime.log_with=[]",
            ]
            args = ["train", "--config", str(ROOT / "configs" / "demo" / config), "--out", str(run_dir)]
            for s in sets:
                args += ["--set", s]
            wall = _ragdistill(*args)
            m = _steps(run_dir)
            m["wall_s"] = wall
            out["settings"][name] = m
            print(f"{name}: {m['step_s']:.2f} s/step ({wall:.0f} s for {STEPS} steps + start-up)", flush=True)
        # one refresh re-embeds the corpus with the retriever: what building the index above cost
        out["refresh_s"] = out["index_build_s"]
        if "eval" not in parts and "analysis" not in parts:
            return out
        index256 = tmp / "index256"  # `ragdistill analyze` embeds with the retriever's own 256-token limit
        _ragdistill("index", "--corpus", str(world / "corpus.jsonl"), "--out", str(index256))
        n_eval = 48
        evaluations = (
            ()
            if "eval" not in parts
            else (
                ("smollm2-135m", "decoder", _prompt_budget("offshelf_distill.yaml")),
                (str(tmp / "fid_reader_fit" / "reader"), "fid", _prompt_budget("encdec_distill.yaml")),
            )
        )
        for reader, kind, budget in evaluations:
            if not Path(reader).exists() and kind == "fid":
                continue
            ev = tmp / f"eval-{kind}"
            gen = _ragdistill(
                "evaluate", "--reader", reader, "--reader-kind", kind, "--index", str(index),
                "--questions", str(world / "test.jsonl"), "--limit", str(n_eval), "--max-prompt-tokens", str(budget),
                "--retriever-max-length", "128",
                "--max-new-tokens", "8", "--out", str(ev),
            )  # fmt: skip
            ret = _ragdistill(
                "evaluate", "--no-generate", "--index", str(index), "--questions", str(world / "test.jsonl"),
                "--retriever-max-length", "128",
                "--out", str(tmp / f"ret-{kind}"),
            )  # fmt: skip
            out[f"eval_{kind}"] = {"questions": n_eval, "with_generation_s": gen, "retrieval_only_all_test_s": ret}
            print(f"evaluate {kind}: {gen:.0f} s for {n_eval} questions with generation", flush=True)
        n_an = 24
        analyses = (
            ()
            if "analysis" not in parts
            else (
                ("smollm2-135m", "decoder", "attention"),
                (str(tmp / "fid_reader_fit" / "reader"), "fid", "attention"),
                (str(tmp / "fid_reader_fit" / "reader"), "fid", "perplexity"),
            )
        )
        for reader, kind, signal in analyses:
            if kind == "fid" and not Path(reader).exists():
                continue
            an = _ragdistill(
                "analyze", "--reader", reader, "--reader-kind", kind, "--signal", signal, "--index", str(index256),
                "--questions", str(world / "test.jsonl"), "--n", str(n_an), "--out", str(tmp / f"an-{kind}-{signal}"),
            )  # fmt: skip
            out[f"analysis_{kind}_{signal}"] = {"instances": n_an, "seconds": an}
            print(f"analyze {kind} {signal}: {an:.0f} s for {n_an} instances", flush=True)
    return out


def markdown(result: dict[str, Any]) -> str:
    rows = [
        {
            "setting": name,
            "s/step": m["step_s"],
            **{
                f"{p} s": m["phases"].get(p, 0.0)
                for p in ("retrieve", "reader", "signal", "retriever", "backward", "optim")
            },
            "peak RSS MiB": m["peak_mem_mb"],
        }
        for name, m in result["settings"].items()
    ]
    lines = [md_table(rows), ""]
    lines.append(
        f"- index build (2,913 passages, minilm-l6) {result['index_build_s']:.0f} s; one refresh {result['refresh_s']:.0f} s"
    )
    for kind in ("decoder", "fid"):
        if (e := result.get(f"eval_{kind}")) is not None:
            lines.append(
                f"- evaluation, {kind} reader: {e['with_generation_s'] / e['questions']:.2f} s per question with generation "
                f"(command of {e['questions']} questions, start-up included); retrieval-only on all test questions "
                f"{e['retrieval_only_all_test_s']:.0f} s"
            )
    for key, a in result.items():
        if key.startswith("analysis_"):
            lines.append(
                f"- {key[9:].replace('_', ' ')} analysis: {a['seconds'] / a['instances']:.2f} s per instance "
                f"(command of {a['instances']}, start-up included)"
            )
    lines.append(
        f"- s/step: median over the {result['steps_timed']} steps after the first, at each config's batch, prompt budget and precision"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    parts = tuple(a.split("=", 1)[1].split(",") for a in args if a.startswith("--parts="))
    result = run(quick="--quick" in args, **({"parts": parts[0]} if parts else {}))
    path = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-budget.json"
    if path.is_file():  # a run of some --parts adds to (and replaces its own keys of) the same day's results
        earlier = json.loads(path.read_text())
        result = {**earlier, **result, "settings": {**earlier.get("settings", {}), **result["settings"]}}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

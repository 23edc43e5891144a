"""Shared helpers of the benchmark suite: timing, peak memory, machine and version info.

Benchmarks here always time the project and its comparison in the same process run and
report ratios: the machines are shared, so absolute times drift between runs while ratios
measured side by side stay meaningful.

Nothing heavy is imported at module level (torch, faiss, numpy are imported where used) so
that ``python -m bench --help`` and the isolated child processes start fast.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAGDISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Packages whose versions go into every results file (distribution names).
VERSION_PACKAGES = (
    "ragdistill",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "sentence-transformers",
    "faiss-cpu",
    "faiss-gpu",
    "faiss-gpu-cu12",
    "faiss",
    "numpy",
    "scipy",
)


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall-clock seconds of `repeats` calls (after `warmup` untimed ones)."""

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def min(self) -> float:
        return min(self.times) if self.times else float("nan")

    @property
    def max(self) -> float:
        return max(self.times) if self.times else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "repeats": len(self.times)}


def _cuda_sync(device: Any = None) -> None:
    if device is None or str(device).startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()


def timeit(
    fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: Any = None, max_seconds: float | None = None
) -> Timing:
    """Median-friendly timing: `warmup` untimed calls, then `repeats` timed ones.

    On CUDA the device is synchronised around each call so kernel time is counted.
    `max_seconds` stops early (after at least one timed call) when the budget is spent,
    which keeps the slow configurations of a sweep from dominating the suite's run time.
    """
    for _ in range(max(0, warmup)):
        fn()
        _cuda_sync(device)
    timing = Timing()
    start_all = time.perf_counter()
    for _ in range(max(1, repeats)):
        _cuda_sync(device)
        t0 = time.perf_counter()
        fn()
        _cuda_sync(device)
        timing.times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start_all > max_seconds:
            break
    return timing


@contextlib.contextmanager
def stopwatch(store: dict[str, float], key: str, device: Any = None):
    """Add the block's wall-clock seconds to `store[key]` (per-phase splits of a step)."""
    _cuda_sync(device)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _cuda_sync(device)
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


# --------------------------------------------------------------------------- memory


def current_rss_mb() -> float:
    """Resident set size of this process now, MiB (Linux /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cuda_peak_mb(fn: Callable[[], Any], device: Any = "cuda") -> tuple[Any, float]:
    """(fn(), peak CUDA memory allocated during the call in MiB)."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    return out, (torch.cuda.max_memory_allocated(device) - base) / 2**20


class IsolatedRunError(RuntimeError):
    """A benchmark configuration failed inside its child process."""


def run_isolated(
    target: str, kwargs: dict[str, Any] | None = None, timeout: float | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a fresh Python process and return its dict result.

    The child adds ``peak_rss_mb`` (its whole-life peak RSS), ``baseline_rss_mb`` (RSS
    after imports, before the function ran) and ``peak_rss_delta_mb`` (their difference:
    the memory the configuration itself needed). A fresh process per configuration is the
    only honest way to read a CPU peak: the allocator never returns all freed memory.
    """
    kwargs = kwargs or {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="ragdistill-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.common",
            "--call",
            target,
            "--kwargs",
            json.dumps(kwargs),
            "--out",
            str(out),
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            raise IsolatedRunError(f"{target}({kwargs}) failed with status {proc.returncode}:\n" + "\n".join(tail))
        return json.loads(out.read_text())


def _child_main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="internal: run one benchmark configuration and report peak RSS")
    parser.add_argument("--call", required=True, help="module:function")
    parser.add_argument("--kwargs", default="{}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    module_name, func_name = args.call.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    baseline = current_rss_mb()
    result = func(**json.loads(args.kwargs))
    result = dict(result or {})
    peak = peak_rss_mb()
    result.update(peak_rss_mb=peak, baseline_rss_mb=baseline, peak_rss_delta_mb=peak - baseline)
    Path(args.out).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    return None


def gpu_info() -> dict[str, Any] | None:
    """Name, count and memory of the CUDA devices, or None without one (imports torch)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "memory_gb": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
    }


def device_label(device: Any) -> str:
    """'cpu (Intel Xeon ..., 2 threads)' or 'cuda (NVIDIA H100 80GB HBM3)': marks every row with its card."""
    if str(device).startswith("cuda"):
        import torch

        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = os.cpu_count()
    return f"cpu ({threads} threads)"


def bench_devices(include_gpu: bool = True) -> list[str]:
    """Devices the GPU-aware benchmarks run on: always 'cpu', plus 'cuda' when present."""
    devices = ["cpu"]
    if include_gpu:
        with contextlib.suppress(ImportError):
            import torch

            if torch.cuda.is_available():
                devices.append("cuda")
    return devices


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def git_info() -> dict[str, Any]:
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["dirty"] = bool(status.stdout.strip())
    return info


def machine_info(with_gpu: bool = True) -> dict[str, Any]:
    """Everything needed to read a results file later: CPU, cores, memory, GPU, OS."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info = {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gb": _mem_total_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "gpu": gpu_info() if with_gpu else None,
    }
    with contextlib.suppress(ImportError):
        import torch

        info["torch_threads"] = torch.get_num_threads()
    return info


def run_header(argv: list[str] | None = None) -> dict[str, Any]:
    """The head of a results file: when, where, with what, by which command."""
    now = _dt.datetime.now().astimezone()
    return {
        "schema": 1,
        "date": now.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]).strip(),
        "machine": machine_info(),
        "versions": package_versions(),
        "git": git_info(),
    }


# --------------------------------------------------------------------------- small utilities


def load_real_passages(limit: int | None = None) -> list[tuple[str, str]]:
    """(title, text) of the real 100-word Wikipedia passages in ../shared/data (DPR file), deduplicated.

    Returns [] when the shared data is absent; callers fall back to synthetic text.
    """
    path = SHARED_DATA / "dpr" / "nq-dev-biencoder-tiny.jsonl"
    if not path.exists():
        return []
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            for key in ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs"):
                for ctx in rec.get(key, []):
                    pid = str(ctx.get("passage_id") or ctx.get("title", "") + ctx.get("text", "")[:40])
                    if pid in seen:
                        continue
                    seen.add(pid)
                    out.append((ctx.get("title", ""), ctx.get("text", "")))
                    if limit is not None and len(out) >= limit:
                        return out
    return out


def synthetic_passages(n: int, words: int = 100, seed: int = 0) -> list[tuple[str, str]]:
    """(title, text) passages of `words` words drawn from a fixed English vocabulary (real-length stand-ins)."""
    import random

    vocab = (
        "the of and to in a is was for on as by with he that at from his it an were are which this be "
        "also has had first one their its new after who they two her she been other when there all time "
        "during into school more may years over only year most would world city some where between later "
        "three state such then national used made known under many university united while part season "
        "team these american than film second born south became states war through being including both "
        "history north until each county music album series river football church government"
    ).split()
    rng = random.Random(seed)
    return [(f"Title {i}", " ".join(rng.choice(vocab) for _ in range(words))) for i in range(n)]


def fmt_si(value: float, unit: str = "") -> str:
    """12345678 -> '12.3 M' (for FLOP/s and counts in notes)."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when undefined (keeps NaN/inf out of the JSON)."""
    if not denominator or numerator is None:
        return None
    value = numerator / denominator
    return value if value == value and abs(value) != float("inf") else None


# --------------------------------------------------------------------------- Markdown


def fmt_value(value: Any) -> str:
    """A table cell: 3 significant figures for small floats, thousands separators for big ones, '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "—"
        a = abs(value)
        if a >= 1000:
            return f"{value:.3g}" if a >= 1e9 else f"{value:,.0f}"
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        if a == 0:
            return "0"
        return f"{value:.3g}" if a >= 1e-3 else f"{value:.2e}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]] | None = None) -> str:
    """A Markdown table of `rows`; `columns` = [(key, header)], default: every key in first-seen order.

    Numeric columns are right-aligned; nested values (dicts, lists) are left out of the default columns.
    """
    if not rows:
        return "_(no rows)_"
    if columns is None:
        keys: list[str] = []
        for row in rows:
            for key, value in row.items():
                if key not in keys and not isinstance(value, (dict, list)):
                    keys.append(key)
        columns = [(k, k) for k in keys]
    numeric = [
        all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows)
        and any(isinstance(r.get(k), (int, float)) for r in rows)
        for k, _ in columns
    ]
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    body = ["| " + " | ".join(fmt_value(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


__all__ = [
    "Timing",
    "timeit",
    "stopwatch",
    "current_rss_mb",
    "peak_rss_mb",
    "cuda_peak_mb",
    "run_isolated",
    "IsolatedRunError",
    "machine_info",
    "gpu_info",
    "device_label",
    "bench_devices",
    "package_versions",
    "git_info",
    "run_header",
    "load_real_passages",
    "synthetic_passages",
    "fmt_si",
    "ratio",
    "fmt_value",
    "md_table",
]


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))


def script_main(
    run: Callable[..., dict[str, Any]], doc: str | None, quick_help: str, argv: list[str] | None = None
) -> int:
    """The command line of a single benchmark script: ``--quick``, the result as JSON on stdout, the wall time."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    print(json.dumps(run(quick=args.quick), indent=2))
    print(f"# {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- exact search comparison (retrieval, scale)

SEARCH_BATCH = 64  # queries per search call in both search benchmarks (retrieval and scale): one definition


def pin_search_threads(threads: int | None = None) -> int:
    """Give FAISS (OpenMP) and every BLAS library (numpy's, FAISS's) the same thread count; returns it.

    Default: the CPUs this process may use. Without this FAISS and numpy each pick their own, and on a
    machine shared with other jobs a comparison would measure the thread counts, not the code.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = threads or usable
    faiss.omp_set_num_threads(n)
    threadpool_limits(limits=n)  # applies now, for the rest of the process
    return n


def numpy_topk(x, q, k: int):
    """Exact inner-product top-k by brute force: one float32 GEMM, argpartition, sort of the k (the baseline)."""
    import numpy as np

    scores = q @ x.T
    part = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


def compare_search(
    ours: Callable[[Any, int], Any],
    x,
    q,
    k: int,
    repeats: int = 3,
    warmup: int = 1,
    max_seconds: float = 20,
    batch: int = SEARCH_BATCH,
    single: int = 8,
) -> dict[str, Any]:
    """Time `ours(queries, k)` against `numpy_topk(x, queries, k)` the same way; check they agree.

    batched: the queries in calls of `batch` (the first len(q) // batch * batch of them), queries/s;
    single: one query per call, the median latency over `single` different queries.
    """
    import numpy as np

    batch = max(1, min(batch, len(q)))
    nb = len(q) // batch
    blocks = [np.ascontiguousarray(q[i * batch : (i + 1) * batch]) for i in range(nb)]
    nq = sum(len(b) for b in blocks)
    t_ours = timeit(lambda: [ours(b, k) for b in blocks], repeats=repeats, warmup=warmup, max_seconds=max_seconds)
    t_np = timeit(
        lambda: [numpy_topk(x, b, k) for b in blocks], repeats=repeats, warmup=warmup, max_seconds=max_seconds
    )
    ones = [np.ascontiguousarray(q[i : i + 1]) for i in range(min(single, len(q)))]
    lat_ours = statistics.median(timeit(lambda o=o: ours(o, k), repeats=1, warmup=0).min for o in ones)
    lat_np = statistics.median(timeit(lambda o=o: numpy_topk(x, o, k), repeats=1, warmup=0).min for o in ones)
    s1, r1 = ours(blocks[0], k)
    s2, r2 = numpy_topk(x, blocks[0], k)
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(np.asarray(r1).tolist(), r2.tolist())]))
    return {
        "batch": batch,
        "queries_timed": nq,
        "k": k,
        "ours_qps": nq / t_ours.median,
        "numpy_qps": nq / t_np.median,
        "ratio": ratio(t_np.median, t_ours.median),
        "ours_single_ms": 1e3 * lat_ours,
        "numpy_single_ms": 1e3 * lat_np,
        "single_ratio": ratio(lat_np, lat_ours),
        "topk_overlap": overlap,
        "max_score_diff": float(np.max(np.abs(np.asarray(s1) - s2))),
        "ours_timing": t_ours.as_dict(),
        "numpy_timing": t_np.as_dict(),
    }

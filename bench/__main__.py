"""Run the benchmark suite: ``python -m bench [--quick] [--only NAME,...] [--out bench/results]``.

Every benchmark times the project and its comparison side by side in the same run and
reports ratios (shared machines drift; ratios measured together do not). The suite writes
``<out>/<date>-<host>.json`` atomically (``-quick`` added for quick runs) and regenerates the
generated blocks of BENCHMARKS.md: the results tables, the paper-scale projection and the
key ratios. A benchmark that fails is recorded with its error and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import json
import math
import re
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name -> (module, what it compares); run in this order
BENCHMARKS: dict[str, tuple[str, str]] = {
    "gemm": ("bench.bench_gemm", "reader forward/backward FLOP rate vs a torch.matmul GEMM probe"),
    "retrieval": ("bench.bench_retrieval", "passage embedding vs sentence-transformers; FAISS vs numpy search"),
    "attention": ("bench.bench_attention", "attention score extraction vs SDPA forward vs output_attentions"),
    "training": ("bench.bench_training", "training step throughput per regime and phase; step time vs K and prompt"),
    "scale": ("bench.bench_scale", "index build/refresh/search vs corpus size; embedding cost; paper-scale projection"),
    "generation": ("bench.bench_generation", "answer generation for evaluation vs a plain batched model.generate"),
    "budget": ("bench.bench_budget", "what one step, refresh, answer and analysed instance of each demo setting costs"),
    "ig": ("bench.bench_ig", "perplexity analysis (integrated gradients): the K passages pooled vs one at a time"),
}
GPU_AWARE = ("attention",)  # benchmarks whose run() takes `device`: run again on CUDA when present
BEGIN = "<!-- BEGIN GENERATED: {name} (python -m bench rewrites this block) -->"
END = "<!-- END GENERATED: {name} -->"


# --------------------------------------------------------------------------- running


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, unknown objects -> str: the results file must be strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _merge_device_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from per-device runs of the same benchmark: rows concatenated, ratios tagged with the device."""
    if len(results) == 1:
        return results[0]
    merged: dict[str, Any] = {"title": results[0].get("title"), "rows": [], "ratios": {}, "notes": []}
    for dev_result, tag in zip(results, ("cpu", "gpu")):
        merged["rows"].extend(dev_result.get("rows", []))
        for key, value in (dev_result.get("ratios") or {}).items():
            merged["ratios"][f"{key} ({tag})"] = value
        for note in dev_result.get("notes", []):
            if note not in merged["notes"]:
                merged["notes"].append(note)
    return merged


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Import and run one benchmark; never raises (an error is recorded in the entry)."""
    module_name, _ = BENCHMARKS[name]
    t0 = time.perf_counter()
    entry: dict[str, Any] = {"status": "ok", "quick": quick}
    try:
        module = importlib.import_module(module_name)
        run = module.run
        if name in GPU_AWARE and "device" in inspect.signature(run).parameters:
            from bench.common import bench_devices

            entry["result"] = _merge_device_results([run(quick=quick, device=d) for d in bench_devices()])
        else:
            entry["result"] = run(quick=quick)
    except Exception as exc:  # a broken benchmark must not lose the others' results
        entry["status"] = "error"
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc(limit=8)
        print(f"bench {name}: FAILED: {entry['error']}", file=sys.stderr)
    entry["seconds"] = time.perf_counter() - t0
    return entry


def results_path(out_dir: Path, quick: bool, now: _dt.datetime | None = None) -> Path:
    now = now or _dt.datetime.now()
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()) or "host"
    return out_dir / f"{now:%Y-%m-%d}-{host}{'-quick' if quick else ''}.json"


def load_results(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def newest_first(out_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """(path, its results) of every results file, the latest run first: by the date each records (a fresh clone
    gives every file the same mtime), files without one (e.g. a budget probe's) after them by mtime."""
    if not out_dir.is_dir():
        return []
    runs = [(path, load_results(path)) for path in out_dir.glob("*.json")]

    def key(run: tuple[Path, dict[str, Any] | None]) -> tuple[str, float]:
        recorded = (run[1] or {}).get("date")
        return (recorded if isinstance(recorded, str) else "", run[0].stat().st_mtime)

    return sorted(runs, key=key, reverse=True)


def merged_view(current: dict[str, Any], out_dir: Path, current_path: Path | None = None) -> dict[str, Any]:
    """The current run plus, for benchmarks it did not run, the latest non-quick result in `out_dir`.

    Lets ``--only scale`` refresh one section of BENCHMARKS.md without dropping the others;
    borrowed entries keep their own date and command.
    """
    view = dict(current)
    benches = {
        k: dict(v, run=v.get("run") or {"date": current.get("date"), "command": current.get("command")})
        for k, v in current.get("benchmarks", {}).items()
    }
    runs = newest_first(out_dir)
    for want_quick in (False, True):  # full results first; a quick one only where no full one exists (marked)
        for path, old in runs:
            if current_path is not None and path.resolve() == current_path.resolve():
                continue
            if not old or bool(old.get("quick")) != want_quick:
                continue
            for name, entry in old.get("benchmarks", {}).items():
                if name not in benches and entry.get("status") == "ok":
                    run = dict(entry.get("run") or {"date": old.get("date"), "command": old.get("command")})
                    run["file"] = path.name
                    benches[name] = dict(entry, run=run, quick=entry.get("quick", want_quick))
    view["benchmarks"] = {name: benches[name] for name in BENCHMARKS if name in benches}
    return view


# --------------------------------------------------------------------------- Markdown


def _render_generic(result: dict[str, Any]) -> str:
    """Tables for every list of row dicts in a result, then its notes (for benchmarks without `markdown`)."""
    from bench.common import md_table

    parts = []
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            parts += [f"{key}:", "", md_table(value), ""]
    parts += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(parts)


def render_benchmark(name: str, entry: dict[str, Any]) -> str:
    """One benchmark's section: its title, when it ran, its tables (the module's `markdown` when it has one)."""
    result = entry.get("result") or {}
    title = result.get("title") or BENCHMARKS.get(name, ("", name))[1]
    lines = [f"### {name}: {title}", ""]
    run = entry.get("run") or {}
    meta = [f"{entry.get('seconds', 0):.0f} s"]
    if entry.get("quick"):
        meta.append("quick run")
    if run.get("file"):
        meta.append(f"from {run['file']} ({run.get('date', '?')})")
    lines += [f"_{', '.join(meta)}_", ""]
    if entry.get("status") != "ok":
        lines += [f"**failed:** `{entry.get('error', 'unknown error')}`", ""]
        return "\n".join(lines)
    body = None
    module_name = BENCHMARKS.get(name, (None,))[0]
    if module_name:
        try:
            module = importlib.import_module(module_name)
            if hasattr(module, "markdown"):
                body = module.markdown(result)
        except Exception as exc:  # a renderer bug must not hide the numbers
            body = f"_(renderer failed: {type(exc).__name__}: {exc})_\n\n" + _render_generic(result)
    lines.append(body if body is not None else _render_generic(result))
    for err in result.get("errors", []) or []:
        lines.append(f"- **error:** {str(err).splitlines()[0]}")
    lines.append("")
    return "\n".join(lines)


def key_ratios(view: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(benchmark, ratio name, value) for every ratio every benchmark reported."""
    out = []
    for name, entry in view.get("benchmarks", {}).items():
        for key, value in ((entry.get("result") or {}).get("ratios") or {}).items():
            out.append((name, key, value))
    return out


def render_results(view: dict[str, Any]) -> str:
    """The generated results block of BENCHMARKS.md: machine, versions, command, every benchmark's tables."""
    from bench.common import fmt_value

    m = view.get("machine", {})
    v = view.get("versions", {})
    git = view.get("git", {})
    gpu = m.get("gpu")
    lines = [
        f"Run {view.get('date', '?')} on `{m.get('host', '?')}`: {m.get('cpu', '?')}, {m.get('cores', '?')} cores "
        f"({m.get('usable_cores', '?')} usable, torch uses {m.get('torch_threads', '?')} threads), "
        f"{m.get('memory_gb', '?')} GB RAM; GPU: "
        + (f"{gpu['name']} ×{gpu['count']} ({gpu['memory_gb']} GB, CUDA {gpu['cuda']})" if gpu else "none")
        + ".",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"Command: `{view.get('command', 'python -m bench')}`"
        + (
            f" at commit `{git['commit'][:12]}`{' (with local changes)' if git.get('dirty') else ''}"
            if git.get("commit")
            else ""
        )
        + ".",
        "",
        "#### All ratios (project vs comparison, measured side by side in the same run)",
        "",
        "| benchmark | ratio | value |",
        "|---|---|---:|",
    ]
    for name, key, value in key_ratios(view):
        lines.append(f"| {name} | {fmt_value(key)} | {fmt_value(value)} |")
    lines.append("")
    for name, entry in view.get("benchmarks", {}).items():
        lines.append(render_benchmark(name, entry))
    return "\n".join(lines).rstrip() + "\n"


def render_projection(view: dict[str, Any], which: str = "projection") -> str:
    """The paper-scale projection (`which="projection"`) or the 1/8/64-GPU settings table (`"settings"`)."""
    entry = view.get("benchmarks", {}).get("scale")
    if not entry or entry.get("status") != "ok":
        return "_(run `python -m bench --only scale` to fill this table)_\n"
    from bench import bench_scale

    render = bench_scale.projection_markdown if which == "projection" else bench_scale.settings_markdown
    return render(entry["result"]) + "\n"


# Ratios quoted in the closing note (substring match on the ratio names), in this order.
CLOSING_RATIOS = (
    ("retrieval", "build"),
    ("retrieval", "search"),
    ("attention", "b/a time @ 2048"),
    ("attention", "c/b time @ 2048"),
    ("attention", "b/a peak memory @ 4096"),
    ("gemm", "forward / GEMM"),
    ("gemm", "forward+backward / GEMM"),
    ("training", "K="),
    ("training", "reader+backward share"),
    ("training", "refresh / step time, joint"),
    ("scale", "FAISS flat / numpy"),
    ("scale", "IVF-PQ / flat queries"),
    ("scale", "flat / IVF-PQ index memory"),
    ("scale", "1-recall"),
    ("scale", "MiniLM-L6 / BERT-base"),
)


def render_closing(view: dict[str, Any]) -> str:
    from bench.common import fmt_value

    seen = set()
    lines = []
    ratios = key_ratios(view)
    for bench_name, needle in CLOSING_RATIOS:
        for name, key, value in ratios:
            if name == bench_name and needle in key and (name, key) not in seen:
                seen.add((name, key))
                lines.append(f"- {name}: {key} = **{fmt_value(value)}**")
    if not lines:
        return "_(no ratios yet: run `python -m bench`)_\n"
    return "\n".join(lines) + "\n"


def replace_block(text: str, name: str, body: str) -> str:
    """Replace the generated block `name` in `text` (append it at the end when the markers are missing)."""
    begin, end = BEGIN.format(name=name), END.format(name=name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip() + "\n\n" + block + "\n"


def update_markdown(path: Path, view: dict[str, Any]) -> None:
    """Rewrite the generated blocks of BENCHMARKS.md (the hand-written prose around them is kept)."""
    from ragdistill.utils.io import atomic_write_text

    text = path.read_text() if path.exists() else "# Benchmarks\n"
    text = replace_block(text, "results", render_results(view))
    text = replace_block(text, "projection", render_projection(view))
    text = replace_block(text, "settings", render_projection(view, "settings"))
    text = replace_block(text, "closing", render_closing(view))
    atomic_write_text(path, text)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {n:<10} {d}" for n, (_, d) in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run ragdistill's benchmark suite; write the results as JSON and regenerate BENCHMARKS.md.\n\n"
        f"Benchmarks:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats (about two minutes on 2 cores): a smoke run. Its JSON gets a "
        "-quick suffix and BENCHMARKS.md is left alone unless --update-table is given",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="NAME,...",
        help="run only these benchmarks (comma-separated names from the list above); the table keeps "
        "the latest full results of the others",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results"),
        metavar="DIR",
        help="directory of the results JSON, named <date>-<host>.json (default: bench/results)",
    )
    parser.add_argument(
        "--table",
        default=str(ROOT / "BENCHMARKS.md"),
        metavar="PATH",
        help="Markdown file whose generated blocks are rewritten (default: BENCHMARKS.md)",
    )
    parser.add_argument("--no-table", action="store_true", help="do not touch the Markdown file")
    parser.add_argument("--update-table", action="store_true", help="with --quick: rewrite the Markdown file anyway")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: regenerate the Markdown from the latest results in --out",
    )
    return parser


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(BENCHMARKS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"python -m bench: error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    names = parse_only(args.only)
    out_dir = Path(args.out)
    table = Path(args.table)
    from bench.common import run_header
    from ragdistill.utils.io import atomic_write_json

    if args.render_only:
        view = merged_view({"benchmarks": {}}, out_dir)
        latest = next(iter(newest_first(out_dir)), None)
        if latest is not None:
            head = latest[1] or {}
            view.update({k: head[k] for k in ("date", "command", "machine", "versions", "git") if k in head})
        update_markdown(table, view)
        print(f"rewrote {table}")
        return 0

    results = {**run_header(argv), "quick": args.quick, "benchmarks": {}}
    if args.only:
        results["only"] = names
    path = results_path(out_dir, args.quick)
    t_all = time.perf_counter()
    for name in names:
        print(f"== bench {name}: {BENCHMARKS[name][1]}", file=sys.stderr, flush=True)
        entry = run_one(name, args.quick)
        results["benchmarks"][name] = entry
        print(f"== bench {name}: {entry['status']} in {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
        results["seconds"] = time.perf_counter() - t_all
        # written after each benchmark, so an interrupted suite keeps what it measured
        atomic_write_json(path, _json_safe(_merge_previous(path, results)))
    print(f"wrote {path} ({results['seconds']:.0f} s)")
    if not args.no_table and (not args.quick or args.update_table):
        written = load_results(path) or _json_safe(results)
        view = _json_safe(merged_view(written, out_dir, current_path=path))
        update_markdown(table, view)
        print(f"rewrote the generated blocks of {table}")
    view = _json_safe(results)
    print()
    print(render_closing(view))
    failed = [n for n, e in results["benchmarks"].items() if e["status"] != "ok"]
    if failed:
        print(f"python -m bench: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _merge_previous(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """With --only, keep the other benchmarks already in today's file for this host (each with its own run info)."""
    if not results.get("only"):
        return results
    old = load_results(path)
    if not old:
        return results
    merged = dict(results)
    benches = {}
    for name, entry in old.get("benchmarks", {}).items():
        benches[name] = dict(entry, run=entry.get("run") or {"date": old.get("date"), "command": old.get("command")})
    for name, entry in results["benchmarks"].items():
        benches[name] = dict(entry, run={"date": results.get("date"), "command": results.get("command")})
    merged["benchmarks"] = {n: benches[n] for n in BENCHMARKS if n in benches}
    return merged


if __name__ == "__main__":
    raise SystemExit(main())

"""Figures (Figure 1, the histograms), the environment, and the notes on the readers used."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragdistill.experiments.report.format import _pct, _row_label
from ragdistill.experiments.report.load import _read_json
from ragdistill.experiments.settings import ITEMS_BY_NAME as BY_NAME
from ragdistill.utils.io import atomic_file, atomic_write_json


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure1(rows: Sequence[dict[str, Any]], path: Path, dataset: str) -> str | None:
    """HR@5 on the held-out questions over training steps, one line per training setting."""
    curves = [(r, r["curve"]) for r in rows if r["curve"]]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = "osD^v<>px*"
    for i, (r, pts) in enumerate(curves):
        xs, ys = zip(*sorted(pts))
        style = "-" if BY_NAME[r["name"]].trains_retriever else ":"
        ax.plot(
            xs,
            [100 * y for y in ys],
            style,
            marker=markers[i % len(markers)],
            label=f"{r['number']} {r['name']}" + ("" if BY_NAME[r["name"]].trains_retriever else " (retriever fixed)"),
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("HR@5 on held-out questions (%)")
    ax.set_title(f"Figure 1 — held-out HR@5 over training ({dataset})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return str(path)


def histograms(rows: Sequence[dict[str, Any]], fig_dir: Path, dataset: str) -> list[str]:
    """Per-setting histograms and per-group comparison figures (ragdistill.analysis.figures)."""
    from ragdistill.analysis.figures import write_figures

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        for signal, a in r["analyses"].items():
            if r["analysis_same_as"] or not a["measures"]:
                continue
            groups.setdefault((r["family"], signal), {})[_row_label(r, signal)] = a["measures"]
    out = []
    for (family, signal), per_reader in groups.items():
        d = fig_dir / f"{dataset}_{family}_{signal}"
        # the figures of a group are redrawn only when its analyses changed (a rerun that reuses them is quick)
        sources = sorted(
            str(Path(r["analyses"][signal]["dir"]) / "instances.jsonl")
            for r in rows
            if signal in r["analyses"] and not r["analysis_same_as"] and r["family"] == family
        )
        stamp = {
            "labels": sorted(per_reader),
            "sources": {p: Path(p).stat().st_mtime_ns for p in sources if Path(p).is_file()},
        }
        cached = _read_json(d / "figures.json")
        if (
            cached
            and cached.get("stamp") == stamp
            and all((fig_dir / Path(w).relative_to("figures")).is_file() for w in cached.get("written", []))
        ):
            out += cached["written"]
            continue
        written = [f"figures/{w}" for w in write_figures(per_reader, d)]
        atomic_write_json(d / "figures.json", {"stamp": stamp, "written": written})
        out += written
    return out


def environment() -> dict[str, Any]:
    """Hardware and library versions for the report."""
    import importlib.metadata as md

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass
    try:
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    for pkg in (
        "ragdistill",
        "torch",
        "transformers",
        "faiss-cpu",
        "faiss-gpu",
        "accelerate",
        "sentence-transformers",
        "numpy",
        "scipy",
        "spacy",
        "matplotlib",
    ):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except Exception:  # noqa: BLE001 - the report must not fail on an odd torch
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        env["memory_gb"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return env


def _reader_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    notes = []
    names = {r["reader"] for r in rows if r["family"] == "fid"}
    fit = next((r for r in rows if r["name"] == "fid_reader_fit"), None)
    if fit is not None:
        names = set()  # the fit's note names the reader; the generic BERT-to-BERT note below would repeat it
        if fit["status"] == "not run":
            notes.append(
                "The FiD rows (1b, 5, 6) read the offline `minilm-bert2bert` fitted first as a reader "
                f"(`fid_reader_fit`, reader only, on the training split); it did not run here ({fit['reason']}), "
                "so its EM is not known."
            )
        else:
            ref = next(
                (r for r in rows if r["name"] == "offshelf_checkpoint_fid" and r["dataset"] == fit["dataset"]), None
            )
            em = (ref or {}).get("metrics", {}).get("em")
            notes.append(
                "The FiD rows (1b, 5, 6) read the offline `minilm-bert2bert` **fitted first** as a reader "
                f"(`fid_reader_fit`: {fit['steps'] if fit['steps'] is not None else '?'} steps, reader only, on the "
                f"training split, retriever fixed; {fit['status']}). It stands in for the "
                "study's pre-trained T5-large: settings 5 and 6 start from it. Its EM on the test questions before "
                f"settings 5 and 6 start (row 1b): {_pct(em)} %"
                + (
                    ""
                    if em is None
                    else (
                        " (the demo's target is ≥ 30 %)"
                        if em >= 0.30
                        else " — **below the demo's 30 % target**: the "
                        "encoder-decoder rows' indicators say little about a reader that does not read"
                    )
                )
                + "."
            )
    if "minilm-bert2bert" in names:
        notes.append(
            "The FiD rows (1b, 5, 6) use the offline default `minilm-bert2bert`: a BERT-to-BERT "
            "encoder-decoder warm-started from MiniLM-L6 whose cross-attention layers are random — it reads "
            "nothing until fine-tuned, so its off-the-shelf EM/F1 are ~0 and its attention starts as noise. "
            "The study used T5-large; pass `--encdec-reader google-t5/t5-large` (or a local T5 checkpoint) "
            "to run these rows with a real encoder-decoder."
        )
    if any(r["reader"] == "smollm2-135m" for r in rows):
        notes.append(
            "The decoder-only rows use the bundled SmolLM2-135M-Instruct (the study: Falcon-1B); the "
            "retriever is MiniLM-L6 (the study: Contriever). Pass `--reader` / `--retriever` to change them."
        )
    return notes

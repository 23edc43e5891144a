"""`ragdistill reproduce`: every setting of the study, end to end — the runner.

The plan (:mod:`ragdistill.experiments.plan`) says what runs; the runner (`run_plan`) walks it in order:

* reference rows (off-the-shelf checkpoints): evaluate HR@k / EM / F1 on the test questions;
* training rows: ``ragdistill.training.loop.Trainer`` into the row's run directory
  (resumed from its last checkpoint when an interrupted run with the same config is there);
* every row: the attention-quality analysis of its final reader (``ragdistill.analysis``)
  on the same sampled test instances (retrieved with the initial retriever), with the
  row's teacher signal; the verdict against the reference row of the same reader family is
  computed by the report.

Each row's directory holds its resolved ``config.yaml`` and a completion marker
(:mod:`ragdistill.experiments.markers`); a finished row is reused as
:func:`~ragdistill.experiments.markers.decide_reuse` decides, the decision the plan showed.
``--force`` re-runs the selected rows. `reproduce` plans, runs and writes the report.
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import logging
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ragdistill.analysis.run import (
    analyze_reader,
    build_indicators,
    build_instances,
    ig_settings,
    sample_questions,
    write_outputs,
)
from ragdistill.data.corpus import iter_passages
from ragdistill.data.questions import load_questions
from ragdistill.errors import RagdistillError
from ragdistill.evaluation.evaluate import evaluate_questions, write_eval
from ragdistill.experiments.markers import Marker, analysis_key, decide_reuse, read_marker
from ragdistill.experiments.plan import Options, Plan, PlannedSetting, build_plan, format_plan, planned_status
from ragdistill.experiments.report import write_report
from ragdistill.models import load_spacy
from ragdistill.retrieval.index import MANIFEST_NAME, PassageIndex
from ragdistill.training.build import build_reader, build_retriever
from ragdistill.training.loop import train
from ragdistill.training.rundir import COMPLETED
from ragdistill.utils.io import atomic_write_text
from ragdistill.utils.seed import default_device

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the runner shares between rows of one dataset: instances, indexes."""

    options: Options
    instances: dict[tuple, Any] = field(default_factory=dict)   # (dataset, index, k) -> list[Instance]
    nlp: Any = None


def _say(msg: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    except ImportError:  # pragma: no cover
        print(msg, flush=True)


def _device(cfg):
    return default_device(None if cfg.runtime.device == "auto" else cfg.runtime.device)


def ensure_index(cfg, progress: bool = True):
    """(retriever, index) of the initial retriever: load the shared index, building it on first use."""
    device = _device(cfg)
    retriever = build_retriever(cfg, device)
    retriever.eval()
    path = Path(cfg.index.dir)
    if (path / MANIFEST_NAME).is_file():
        try:
            return retriever, PassageIndex.load(path, retriever=retriever)
        except RagdistillError as exc:
            log.warning("rebuilding the shared index %s: %s", path, exc)
            shutil.rmtree(path)
    _say(f"  building the initial index {path} ({cfg.retriever.name})")
    PassageIndex.build(iter_passages(cfg.data.corpus, format=cfg.data.corpus_format, chunk_words=cfg.data.chunk_words),
                       retriever, path, faiss_type=cfg.index.faiss_type, batch_size=cfg.index.batch_size,
                       progress=progress, corpus_path=cfg.data.corpus)
    return retriever, PassageIndex.load(path, retriever=retriever)


def _load_split(cfg, split: str):
    qs = load_questions(getattr(cfg.data, split), format=cfg.data.questions_format)
    limit = getattr(cfg.data, f"max_{split}")
    return qs[:limit] if limit else qs


def evaluate_reference(item: PlannedSetting, options: Options) -> dict[str, Any]:
    """A reference row: evaluate the off-the-shelf reader and retriever on the test questions."""
    cfg = item.config
    run_dir = item.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    retriever, index = ensure_index(cfg, options.progress)
    reader = build_reader(cfg, _device(cfg))
    questions = _load_split(cfg, cfg.eval.final_split)
    out = evaluate_questions(reader, retriever, index, questions, k=cfg.train.k, ks=cfg.eval.ks,
                             batch_size=cfg.eval.batch_size, match=cfg.eval.match, generate=True,
                             progress=options.progress, desc=f"evaluate {item.setting.name}")
    write_eval(run_dir / "eval", out, info={"split": cfg.eval.final_split, "step": 0, "k": cfg.train.k,
                                            "reader": cfg.reader.name, "retriever": cfg.retriever.name})
    del reader, retriever, index
    gc.collect()
    return {"final_eval": out.metrics, "reader": cfg.reader.name, "retriever": cfg.retriever.name, "steps": 0}


def train_setting(item: PlannedSetting, options: Options) -> dict[str, Any]:
    """A training row: the training loop into the row's directory (resuming an interrupted run of the same config)."""
    cfg = item.config
    run_dir = item.run_dir
    ensure_index(cfg, options.progress)  # the shared initial index (built once per dataset and retriever)
    gc.collect()
    resume = False
    saved = run_dir / "config.yaml"
    if run_dir.exists():
        same = saved.is_file() and saved.read_text(encoding="utf-8") == cfg.to_yaml()
        has_ckpt = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        if same and has_ckpt and not (run_dir / COMPLETED).is_file() and not options.force:
            resume = True
            _say(f"  resuming the interrupted run in {run_dir}")
        else:
            shutil.rmtree(run_dir)
    summary = train(cfg, run_dir, resume=resume, progress=options.progress, config_source=str(item.config_path))
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    if not options.keep_checkpoints and (run_dir / "checkpoints").is_dir():
        # the finished run's reader/ and retriever/ are saved apart; the resumable states (optimizer included,
        # gigabytes per setting) only matter until the run completes
        shutil.rmtree(run_dir / "checkpoints")
    gc.collect()
    return summary


def _instances(ctx: Context, item: PlannedSetting):
    """The analysed instances of a dataset: N sampled test questions, top-K from the initial retriever."""
    label = (item.dataset.label, item.config.index.dir, item.config.train.k)
    if label in ctx.instances:
        return ctx.instances[label]
    ref_name = item.setting.reference or item.setting.name
    cfg = item.config
    qs = load_questions(cfg.data.test, format=cfg.data.questions_format)
    sample, _ = sample_questions(qs, ctx.options.analysis_n, ctx.options.analysis_seed, "gold")
    retriever, index = ensure_index(cfg, ctx.options.progress)
    if ctx.nlp is None:
        ctx.nlp = load_spacy()
    inst = build_instances(sample, index, retriever, cfg.train.k, ctx.nlp)
    del retriever, index
    gc.collect()
    ctx.instances[label] = inst
    log.debug("analysis instances of %s built for %s", label[0], ref_name)
    return inst


def analyse_setting(item: PlannedSetting, reader_path: str, ctx: Context) -> dict[str, Any]:
    """Attention-quality analysis of the row's final reader, one directory per analysed signal."""
    cfg = copy.deepcopy(item.config)
    cfg.reader.name = reader_path
    instances = _instances(ctx, item)
    reader = build_reader(cfg, _device(cfg))
    out: dict[str, Any] = {}
    try:
        for signal in item.signals:
            ra = analyze_reader(reader, instances, name=item.setting.name, signal=signal, answer="gold",
                                attention_options={"layers": cfg.signal.layers, "value_norm": cfg.signal.value_norm,
                                                   "aggregation": cfg.signal.aggregation} if signal == "attention" else None,
                                ig_steps=ctx.options.ig_steps, progress=ctx.options.progress,
                                ig_tolerance=ctx.options.ig_tolerance, ig_max_steps=ctx.options.ig_max_steps)
            settings = {"signal": signal, "answer": "gold", "n_requested": ctx.options.analysis_n,
                        "n_instances": len(instances), "k": cfg.train.k, "seed": ctx.options.analysis_seed,
                        "questions": cfg.data.test, "retriever": item.config.retriever.name, "reader": reader_path,
                        "instances_retrieved_with": "the initial retriever (same instances for every setting)"}
            if signal == "perplexity":
                settings.update(ig_settings([ra], ctx.options.ig_steps, ctx.options.ig_tolerance, ctx.options.ig_max_steps))
            indicators = build_indicators([ra], None, settings=settings)
            d = item.run_dir / "analysis" / signal
            write_outputs(d, indicators, [ra])
            out[signal] = str(d)
    finally:
        del reader
        gc.collect()
    return out


@dataclass
class RunResult:
    item: PlannedSetting
    status: str               # ran | reused | not run | failed
    marker: dict[str, Any] | None = None   # the row's marker as written (Marker.to_dict()), what the report reads
    error: str = ""


def run_plan(plan: Plan, say: Callable[[str], None] = _say) -> list[RunResult]:
    """Run (or reuse) every row of the plan in order; failures are recorded and their dependants skipped."""
    options = plan.options
    ctx = Context(options)
    run_ids: dict[str, str] = {}
    results: list[RunResult] = []
    failed: dict[str, str] = {}
    todo = [it for it in plan.items if it.status in ("run", "reuse")]
    for it in plan.items:
        if it.status == "not run":
            results.append(RunResult(it, "not run"))
            continue
        pos = f"[{todo.index(it) + 1}/{len(todo)}]"
        marker = read_marker(it.run_dir)
        bad_dep = next((d for d in it.setting.depends_on if f"{it.dataset.label}/{d}" in failed), None)
        if bad_dep:
            results.append(RunResult(it, "not run", error=f"its dependency {bad_dep} failed"))
            failed[it.key] = f"dependency {bad_dep} failed"
            continue
        deps = {d: run_ids.get(f"{it.dataset.label}/{d}", "") for d in it.setting.depends_on}
        decision = decide_reuse(it, marker, deps, options)
        if not it.selected:
            if decision.reuse:  # --only: an unselected row is shown from its earlier run, never redone for a config change
                if decision.other_config:
                    it.reason = "not selected by --only; shown from an earlier run made with a different config"
                results.append(RunResult(it, "reused", marker.to_dict()))
                run_ids[it.key] = marker.run_id
                say(f"{pos} {it.key}: shown from its earlier run (not selected by --only)")
                continue
            if decision.changed_deps:
                say(f"{pos} {it.key}: re-run although not selected by --only: {', '.join(decision.changed_deps)} "
                    "re-ran, and it reads its output")
        try:
            if decision.reuse:
                say(f"{pos} {it.key}: reusing the finished run in {it.run_dir}")
                status = "reused"
            else:
                what = "evaluating the off-the-shelf checkpoint" if not it.setting.trains else \
                    f"training ({it.setting.what_trains}, {it.config.train.steps} steps)"
                say(f"{pos} {it.key} — {it.setting.title}: {what}")
                t0 = time.perf_counter()
                summary = evaluate_reference(it, options) if not it.setting.trains else train_setting(it, options)
                marker = Marker(setting=it.setting.name, dataset=it.dataset.label, train_key=decision.key,
                                run_id=uuid.uuid4().hex, completed=True, seconds=round(time.perf_counter() - t0, 1),
                                finished_at=_dt.datetime.now().isoformat(timespec="seconds"),
                                final_eval=summary.get("final_eval", {}), reader=summary.get("reader"),
                                retriever=summary.get("retriever"), steps=summary.get("steps", 0),
                                skipped_steps=summary.get("skipped_steps", 0), refreshes=summary.get("refreshes", 0),
                                config_sha256=it.config.fingerprint(), deps=deps, analysis={})
                marker.write(it.run_dir)
                status = "ran"
            run_ids[it.key] = marker.run_id
            akey = analysis_key(it, marker.run_id, options)
            if marker.analysis.get("key") != akey:
                reader_path = _final_reader(it, marker)
                same = _same_reader_analysis(it, plan, reader_path, results)
                if same is not None:
                    say(f"{pos} {it.key}: its reader is {same['setting']}'s (frozen): same attention-quality analysis")
                    marker.analysis = {"key": akey, "dirs": same["dirs"], "reader": reader_path, "seconds": 0.0,
                                       "same_as": same["setting"]}
                else:
                    say(f"{pos} {it.key}: attention-quality analysis of {reader_path} "
                        f"({', '.join(it.signals)}; {options.analysis_n} instances)")
                    t0 = time.perf_counter()
                    dirs = analyse_setting(it, reader_path, ctx)
                    marker.analysis = {"key": akey, "dirs": dirs, "reader": reader_path,
                                       "seconds": round(time.perf_counter() - t0, 1)}
                marker.write(it.run_dir)
            results.append(RunResult(it, status, marker.to_dict()))
        except KeyboardInterrupt:
            raise
        except RagdistillError as exc:
            failed[it.key] = str(exc)
            say(f"{pos} {it.key}: FAILED — {exc}")
            results.append(RunResult(it, "failed", marker and marker.to_dict(), str(exc)))
        except Exception as exc:  # noqa: BLE001 - one row failing must not lose the others; the report shows it
            failed[it.key] = f"{type(exc).__name__}: {exc}"
            log.error("setting %s failed:\n%s", it.key, traceback.format_exc())
            say(f"{pos} {it.key}: FAILED — {type(exc).__name__}: {exc}")
            results.append(RunResult(it, "failed", marker and marker.to_dict(), f"{type(exc).__name__}: {exc}"))
    return results


def _same_reader_analysis(item: PlannedSetting, plan: Plan, reader_path: str,
                          results: list[RunResult]) -> dict[str, Any] | None:
    """The analysis of the row this row's (frozen) reader came from, when it covers the same signals."""
    src = item.setting.reader_from
    if not src:
        return None
    for r in results:
        if r.item.dataset is item.dataset and r.item.setting.name == src and r.marker:
            a = r.marker.get("analysis") or {}
            if a.get("dirs") and set(item.signals) <= set(a["dirs"]) and str(a.get("reader")) == reader_path:
                return {"setting": src, "dirs": {s: a["dirs"][s] for s in item.signals}}
    return None


def _final_reader(item: PlannedSetting, marker: Marker) -> str:
    """The reader a row ends with: its trained reader, the reader it was given (step 2), or the checkpoint."""
    reader = marker.reader or item.config.reader.name
    if item.setting.trains_reader:
        saved = item.run_dir / "reader"
        if saved.is_dir():
            return str(saved)
    return str(reader)


def reproduce(options: Options, say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Plan, run, and write the report; returns the report object (also DIR/report.json)."""
    t0 = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(options, write=True)
    planned_status(plan)
    atomic_write_text(options.out / "plan.md", format_plan(plan, estimates=False))
    n_run = sum(1 for it in plan.items if it.status == "run")
    n_reuse = sum(1 for it in plan.items if it.status == "reuse")
    n_not = sum(1 for it in plan.items if it.status == "not run")
    say(f"ragdistill reproduce: {len(plan.items)} settings — {n_run} to run, {n_reuse} to reuse, {n_not} not run "
        f"(see {options.out / 'plan.md'})")
    for it in plan.items:
        if it.status == "not run":
            say(f"  not run: {it.key} — {it.reason}" + (f" → {it.flag}" if it.flag else ""))
    results = run_plan(plan, say)
    report = write_report(plan, results, wall_seconds=time.perf_counter() - t0)
    return report


__all__ = ["Context", "RunResult", "analyse_setting", "ensure_index", "evaluate_reference", "reproduce", "run_plan",
           "train_setting"]

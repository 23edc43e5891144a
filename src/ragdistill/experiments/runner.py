"""`ragdistill reproduce`: every setting of the study, end to end — the runner.

The plan (:mod:`ragdistill.experiments.plan`) says what runs; the runner (`run_plan`) walks it in order:

* reference rows (off-the-shelf checkpoints): evaluate HR@k / EM / F1 on the test questions;
* training rows: ``ragdistill.training.loop.Trainer`` into the row's run directory
  (resumed from its last checkpoint when an interrupted run with the same config is there);
* the FiD reader fit (when settings 1b/5/6 would read the untrained offline BERT2BERT): a
  reader-only training run whose reader/ those rows start from;
* every row: the attention-quality analysis of its final reader (``ragdistill.analysis``) with
  the row's teacher signal, in two views over the same sampled test questions (issue 14 §3):
  *own* — the top-K passages of the row's own final retriever (an index of its passage
  embeddings: the shared initial index when the passage side did not change, else the corpus
  re-embedded once into ``RUN/index-final``); *controlled* — the initial retriever's passages,
  the same instances for every row. Where the two coincide (the retriever did not train) one
  analysis serves both; step 2's controlled view is step 1's (same frozen reader). The
  verdict against the reference row of the same reader family is computed by the report.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragdistill.analysis.run import (
    analyze_reader,
    build_indicators,
    build_instances,
    ig_settings,
    sample_questions,
    write_outputs,
)
from ragdistill.config import check_trackers
from ragdistill.data.corpus import iter_passages
from ragdistill.data.questions import load_questions
from ragdistill.errors import ModelError, RagdistillError
from ragdistill.evaluation.evaluate import evaluate_questions, write_eval
from ragdistill.experiments.estimate import estimate_line
from ragdistill.experiments.markers import Marker, analysed, analysis_key, decide_reuse, read_marker
from ragdistill.experiments.plan import Options, Plan, PlannedSetting, build_plan, format_plan, planned_status
from ragdistill.experiments.report import write_report
from ragdistill.models import load_spacy
from ragdistill.retrieval.index import MANIFEST_NAME, PassageIndex
from ragdistill.training.build import build_reader, build_retriever
from ragdistill.training.loop import train
from ragdistill.training.rundir import COMPLETED, RunLock, same_saved_config
from ragdistill.training.stop import RunStopped, StopRequest
from ragdistill.utils.io import atomic_write_text
from ragdistill.utils.progress import say as print_progress
from ragdistill.utils.seed import default_device

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the runner shares between rows of one dataset: instances, indexes."""

    options: Options
    instances: dict[tuple, Any] = field(
        default_factory=dict
    )  # (dataset, view, index or retriever, k) -> list[Instance]
    samples: dict[tuple, Any] = field(default_factory=dict)  # (dataset, test file) -> the sampled questions
    own_indexes: dict[str, str] = field(default_factory=dict)  # row key -> the index its own view retrieved from
    nlp: Any = None
    stop: StopRequest | None = None  # asked between analysed instances, so a signal ends a long analysis there


def ensure_index(cfg, progress: bool = True):
    """(retriever, index) of the initial retriever: load the shared index, building it on first use."""
    device = default_device(cfg.runtime.device)
    retriever = build_retriever(cfg, device)
    retriever.eval()
    path = Path(cfg.index.dir)
    if (path / MANIFEST_NAME).is_file():
        try:
            return retriever, PassageIndex.load(path, retriever=retriever)
        except RagdistillError as exc:
            log.warning("rebuilding the shared index %s: %s", path, exc)
            shutil.rmtree(path)
    print_progress(f"  building the initial index {path} ({cfg.retriever.name})")
    PassageIndex.build(
        iter_passages(cfg.data.corpus, format=cfg.data.corpus_format, chunk_words=cfg.data.chunk_words),
        retriever,
        path,
        faiss_type=cfg.index.faiss_type,
        batch_size=cfg.index.batch_size,
        progress=progress,
        corpus_path=cfg.data.corpus,
    )
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
    reader = build_reader(cfg, default_device(cfg.runtime.device))
    questions = _load_split(cfg, cfg.eval.final_split)
    out = evaluate_questions(
        reader,
        retriever,
        index,
        questions,
        k=cfg.train.k,
        ks=cfg.eval.ks,
        batch_size=cfg.eval.batch_size,
        match=cfg.eval.match,
        generate=True,
        progress=options.progress,
        desc=f"evaluate {item.setting.name}",
        generate_sample=cfg.eval.max_generate,
    )
    write_eval(
        run_dir / "eval",
        out,
        info={
            "split": cfg.eval.final_split,
            "step": 0,
            "k": cfg.train.k,
            "reader": cfg.reader.name,
            "retriever": cfg.retriever.name,
        },
    )
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
        same = same_saved_config(saved, cfg)  # --log-with may change between the two
        has_ckpt = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        if same and has_ckpt and not (run_dir / COMPLETED).is_file() and not options.force:
            resume = True
            print_progress(f"  resuming the interrupted run in {run_dir}")
        else:
            shutil.rmtree(run_dir)
    summary = train(
        cfg,
        run_dir,
        resume=resume,
        progress=options.progress,
        config_source=str(item.config_path),
        deadline=options.deadline,
    )
    if summary.get("interrupted"):  # SIGINT/SIGTERM/SIGUSR1/--max-time: checkpoint saved, no marker written
        raise RunStopped(summary.get("reason") or "interrupted", summary.get("step"))
    if not options.keep_checkpoints and (run_dir / "checkpoints").is_dir():
        # the finished run's reader/ and retriever/ are saved apart; the resumable states (optimizer included,
        # gigabytes per setting) only matter until the run completes
        shutil.rmtree(run_dir / "checkpoints")
    gc.collect()
    return summary


OWN_INDEX = "index-final"  # a row's cached index of its final retriever's passage embeddings


def _sample(ctx: Context, cfg):
    """The analysed test questions of a dataset: N sampled with the analysis seed, the same for every row and view."""
    label = (str(cfg.data.test), ctx.options.analysis_n, ctx.options.analysis_seed)
    if label not in ctx.samples:
        qs = load_questions(cfg.data.test, format=cfg.data.questions_format)
        ctx.samples[label] = sample_questions(qs, ctx.options.analysis_n, ctx.options.analysis_seed, "gold")[0]
    return ctx.samples[label]


def _retrieve_instances(ctx: Context, cfg, retriever, index):
    if ctx.nlp is None:
        ctx.nlp = load_spacy()
    return build_instances(_sample(ctx, cfg), index, retriever, cfg.train.k, ctx.nlp)


def _instances(ctx: Context, item: PlannedSetting):
    """The controlled view's instances: the sampled test questions, top-K from the initial retriever."""
    label = (item.dataset.label, "initial", item.config.index.dir, item.config.train.k)
    if label in ctx.instances:
        return ctx.instances[label]
    retriever, index = ensure_index(item.config, ctx.options.progress)
    inst = _retrieve_instances(ctx, item.config, retriever, index)
    del retriever, index
    gc.collect()
    ctx.instances[label] = inst
    log.debug("analysis instances of %s built (initial retriever)", label[0])
    return inst


def own_index(item: PlannedSetting, retriever, options: Options):
    """(index, its directory) of the row's final retriever: its passage embeddings, re-embedded at most once.

    The training loop's last re-embedding (its final evaluation's fresh index) lives in memory only, so it is
    not on disk to reuse. The shared initial index serves when the passage side did not change (query_only, or
    a retriever that did not train); otherwise the corpus is re-embedded once into ``RUN/index-final`` and that
    directory is reused while it matches the retriever's passage-encoder weights (a re-run clears the run dir).
    """
    from ragdistill.retrieval.index import PassageIndex

    cfg = item.config
    shared = Path(cfg.index.dir)
    if not (shared / MANIFEST_NAME).is_file():
        ensure_index(cfg, options.progress)
    try:
        return PassageIndex.load(shared, retriever=retriever), shared
    except ModelError:
        pass  # the passage encoder moved on
    cache = item.run_dir / OWN_INDEX
    if (cache / MANIFEST_NAME).is_file():
        try:
            return PassageIndex.load(cache, retriever=retriever), cache
        except RagdistillError as exc:
            log.warning("re-embedding %s: %s", cache, exc)
            shutil.rmtree(cache)
    elif cache.exists():
        shutil.rmtree(cache)
    print_progress(
        f"  re-embedding the corpus with {item.key}'s final retriever into {cache} (once; reused afterwards)"
    )
    index = PassageIndex.load(shared)
    index.refresh(retriever, batch_size=cfg.index.batch_size, progress=options.progress, save_to=cache)
    return index, cache


def _own_instances(ctx: Context, item: PlannedSetting, retriever_path: str):
    """The own view's instances: the same sampled questions, top-K from the row's final retriever and its index."""
    label = (item.dataset.label, "own", retriever_path, item.config.train.k)
    if label in ctx.instances:
        return ctx.instances[label]
    cfg = copy.deepcopy(item.config)
    cfg.retriever.name = retriever_path
    retriever = build_retriever(cfg, default_device(cfg.runtime.device))
    retriever.eval()
    index, path = own_index(item, retriever, ctx.options)
    ctx.own_indexes[item.key] = str(path)
    inst = _retrieve_instances(ctx, cfg, retriever, index)
    del retriever, index
    gc.collect()
    ctx.instances[label] = inst
    return inst


VIEW_DIRS = {"own": "analysis", "controlled": "analysis-controlled"}


def analyse_setting(
    item: PlannedSetting, reader_path: str, ctx: Context, view: str = "own", retriever: str | None = None
) -> dict[str, Any]:
    """Attention-quality analysis of the row's final reader, one directory per analysed signal.

    ``view="own"`` with ``retriever`` (the row's final retriever, when it differs from the initial one): the
    instances that retriever retrieves; otherwise the initial retriever's (the controlled view). The own view
    writes ``RUN/analysis/<signal>``, a separate controlled view ``RUN/analysis-controlled/<signal>``.
    """
    cfg = copy.deepcopy(item.config)
    cfg.reader.name = reader_path
    own = view == "own" and retriever is not None and retriever != item.config.retriever.name
    instances = _own_instances(ctx, item, retriever) if own else _instances(ctx, item)
    reader = build_reader(cfg, default_device(cfg.runtime.device))
    out: dict[str, Any] = {}
    try:
        for signal in item.signals:
            ra = analyze_reader(
                reader,
                instances,
                name=item.setting.name,
                signal=signal,
                answer="gold",
                attention_options={
                    "layers": cfg.signal.layers,
                    "value_norm": cfg.signal.value_norm,
                    "aggregation": cfg.signal.aggregation,
                }
                if signal == "attention"
                else None,
                ig_steps=ctx.options.ig_steps,
                progress=ctx.options.progress,
                ig_tolerance=ctx.options.ig_tolerance,
                ig_max_steps=ctx.options.ig_max_steps,
                should_stop=ctx.stop.reason_now if ctx.stop else None,
            )
            settings = {
                "signal": signal,
                "answer": "gold",
                "n_requested": ctx.options.analysis_n,
                "n_instances": len(instances),
                "k": cfg.train.k,
                "seed": ctx.options.analysis_seed,
                "questions": cfg.data.test,
                "retriever": retriever if own else item.config.retriever.name,
                "reader": reader_path,
                "view": "own" if (own or view == "own") else "controlled",
                "instances_retrieved_with": (
                    f"the row's own final retriever ({retriever}; index {ctx.own_indexes.get(item.key)})"
                )
                if own
                else "the initial retriever (same instances for every setting)",
            }
            if signal == "perplexity":
                settings.update(
                    ig_settings([ra], ctx.options.ig_steps, ctx.options.ig_tolerance, ctx.options.ig_max_steps)
                )
            indicators = build_indicators([ra], None, settings=settings)
            d = item.run_dir / VIEW_DIRS["own" if view == "own" else "controlled"] / signal
            write_outputs(d, indicators, [ra])
            out[signal] = str(d)
    finally:
        del reader
        gc.collect()
    return out


def _analyse_views(
    it: PlannedSetting,
    marker: Marker,
    akey: str,
    plan: Plan,
    results: list,
    ctx: Context,
    pos: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The row's analysis record: the own view (dirs) and the controlled view (controlled_dirs), shared where equal."""
    options = plan.options
    if not analysed(it):
        why = (
            "the FiD reader fit: row 1b analyses the fitted reader"
            if it.setting.name == "fid_reader_fit"
            else "a --seeds repeat: the indicators are measured on the first seed's run"
        )
        return {"key": akey, "dirs": {}, "controlled_dirs": {}, "skipped": why, "seconds": 0.0}
    reader_path = _final_reader(it, marker)
    retriever_path = _final_retriever(it, marker)
    own_is_controlled = retriever_path == it.config.retriever.name
    same = _same_reader_analysis(it, plan, reader_path, results)
    info: dict[str, Any] = {"key": akey, "reader": reader_path, "retriever": retriever_path}
    t0 = time.perf_counter()
    if own_is_controlled and same is not None:
        say(f"{pos} {it.key}: its reader is {same['setting']}'s (frozen): same attention-quality analysis")
        info.update(dirs=same["dirs"], controlled_dirs=same["dirs"], same_as=same["setting"])
    elif own_is_controlled:
        say(
            f"{pos} {it.key}: attention-quality analysis of {reader_path} "
            f"({', '.join(it.signals)}; {options.analysis_n} instances; its retriever is the initial one, so its own "
            "view is the controlled view)"
        )
        dirs = analyse_setting(it, reader_path, ctx)
        info.update(dirs=dirs, controlled_dirs=dirs)
    else:
        say(
            f"{pos} {it.key}: attention-quality analysis of {reader_path} "
            f"({', '.join(it.signals)}; {options.analysis_n} instances retrieved by its own final retriever)"
        )
        info["dirs"] = analyse_setting(it, reader_path, ctx, view="own", retriever=retriever_path)
        info["index"] = ctx.own_indexes.get(it.key)
        if same is not None:
            say(
                f"{pos} {it.key}: controlled view (initial retriever's passages) = {same['setting']}'s analysis "
                "(same frozen reader)"
            )
            info.update(controlled_dirs=same["dirs"], controlled_same_as=same["setting"])
        else:
            say(
                f"{pos} {it.key}: attention-quality analysis of {reader_path}, controlled view "
                f"({options.analysis_n} instances retrieved by the initial retriever)"
            )
            info["controlled_dirs"] = analyse_setting(it, reader_path, ctx, view="controlled")
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return info


@dataclass
class RunResult:
    item: PlannedSetting
    status: str  # ran | reused | not run | failed
    marker: dict[str, Any] | None = None  # the row's marker as written (Marker.to_dict()), what the report reads
    error: str = ""


def run_plan(
    plan: Plan, say: Callable[[str], None] = print_progress, stop: StopRequest | None = None
) -> list[RunResult]:
    """Run (or reuse) every row of the plan in order; failures are recorded and their dependants skipped."""
    options = plan.options
    ctx = Context(options, stop=stop)
    run_ids: dict[str, str] = {}
    results: list[RunResult] = []
    failed: dict[str, str] = {}
    todo = [it for it in plan.items if it.status in ("run", "reuse")]
    for it in plan.items:
        if it.status == "not run":
            results.append(RunResult(it, "not run"))
            continue
        if stop is not None and (stop.reason or stop.time_is_up()):  # between settings (inside one, the loop stops)
            raise RunStopped(stop.reason)
        t_item = time.perf_counter()
        pos = f"[{todo.index(it) + 1}/{len(todo)}]"
        marker = read_marker(it.run_dir)
        bad_dep = next((d for d in it.depends_on if it.dep_keys[d] in failed), None)
        if bad_dep:
            results.append(RunResult(it, "not run", error=f"its dependency {bad_dep} failed"))
            failed[it.key] = f"dependency {bad_dep} failed"
            continue
        deps = {d: run_ids.get(it.dep_keys[d], "") for d in it.depends_on}
        decision = decide_reuse(it, marker, deps, options)
        if not it.selected:
            if (
                decision.reuse
            ):  # --only: an unselected row is shown from its earlier run, never redone for a config change
                if decision.other_config:
                    it.reason = "not selected by --only; shown from an earlier run made with a different config"
                results.append(RunResult(it, "reused", marker.to_dict()))
                run_ids[it.key] = marker.run_id
                say(f"{pos} {it.key}: shown from its earlier run (not selected by --only)")
                continue
            if decision.changed_deps:
                say(
                    f"{pos} {it.key}: re-run although not selected by --only: {', '.join(decision.changed_deps)} "
                    "re-ran, and it reads its output"
                )
        try:
            if decision.reuse:
                say(f"{pos} {it.key}: reusing the finished run in {it.run_dir}")
                status = "reused"
            else:
                what = (
                    "evaluating the off-the-shelf checkpoint"
                    if not it.setting.trains
                    else f"training ({it.setting.what_trains}, {it.config.train.steps} steps)"
                )
                say(f"{pos} {it.key} — {it.setting.title}: {what}")
                t0 = time.perf_counter()
                summary = evaluate_reference(it, options) if not it.setting.trains else train_setting(it, options)
                marker = Marker(
                    setting=it.setting.name,
                    dataset=it.dataset.label,
                    train_key=decision.key,
                    run_id=uuid.uuid4().hex,
                    completed=True,
                    seconds=round(time.perf_counter() - t0, 1),
                    finished_at=_dt.datetime.now().isoformat(timespec="seconds"),
                    final_eval=summary.get("final_eval", {}),
                    reader=summary.get("reader"),
                    retriever=summary.get("retriever"),
                    steps=summary.get("steps", 0),
                    skipped_steps=summary.get("skipped_steps", 0),
                    refreshes=summary.get("refreshes", 0),
                    config_sha256=it.config.fingerprint(),
                    deps=deps,
                    analysis={},
                )
                marker.write(it.run_dir)
                status = "ran"
            run_ids[it.key] = marker.run_id
            akey = analysis_key(it, marker.run_id, options)
            if marker.analysis.get("key") != akey:
                marker.analysis = _analyse_views(it, marker, akey, plan, results, ctx, pos, say)
                marker.write(it.run_dir)
            results.append(RunResult(it, status, marker.to_dict()))
            if stop is not None:
                stop.observe_step(time.perf_counter() - t_item)
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


def _same_reader_analysis(
    item: PlannedSetting, plan: Plan, reader_path: str, results: list[RunResult]
) -> dict[str, Any] | None:
    """The analysis of the row this row's (frozen) reader came from, when it covers the same signals."""
    src = item.setting.reader_from
    if not src:
        return None
    want = getattr(item, "dep_keys", {}).get(src, f"{item.dataset.label}/{src}")
    for r in results:
        if r.item.key == want and r.marker:
            a = r.marker.get("analysis") or {}
            dirs = a.get("controlled_dirs") or a.get("dirs")
            if dirs and set(item.signals) <= set(dirs) and str(a.get("reader")) == reader_path:
                return {"setting": src, "dirs": {s: dirs[s] for s in item.signals}}
    return None


def _final_reader(item: PlannedSetting, marker: Marker) -> str:
    """The reader a row ends with: its trained reader, the reader it was given (step 2), or the checkpoint."""
    reader = marker.reader or item.config.reader.name
    if item.setting.trains_reader:
        saved = item.run_dir / "reader"
        if saved.is_dir():
            return str(saved)
    return str(reader)


def _final_retriever(item: PlannedSetting, marker: Marker) -> str:
    """The retriever a row ends with: its trained retriever/ when it trained one, else the initial retriever."""
    if item.setting.trains_retriever:
        saved = item.run_dir / "retriever"
        if saved.is_dir():
            return str(saved)
    return str(item.config.retriever.name)


def reproduce(options: Options, say: Callable[[str], None] = print_progress) -> dict[str, Any]:
    """Plan, run, and write the report; returns the report object (also DIR/report.json)."""
    t0 = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(options, write=True)
    planned_status(plan)
    for it in plan.items:  # a tracker that cannot log here stops the command before any setting runs
        if it.status == "run" and it.setting.trains:
            check_trackers(it.config.runtime.log_with)
    atomic_write_text(options.out / "plan.md", format_plan(plan, estimates=False))
    n_run = sum(1 for it in plan.items if it.status == "run")
    n_reuse = sum(1 for it in plan.items if it.status == "reuse")
    n_not = sum(1 for it in plan.items if it.status == "not run")
    say(
        f"ragdistill reproduce: {len(plan.items)} settings — {n_run} to run, {n_reuse} to reuse, {n_not} not run "
        f"(see {options.out / 'plan.md'})"
    )
    for it in plan.items:
        if it.status == "not run":
            say(f"  not run: {it.key} — {it.reason}" + (f" → {it.flag}" if it.flag else ""))
    if (line := estimate_line(plan)) is not None:
        say(line)
    # one reproduce per output directory; signals between settings stop it there (inside a training setting
    # the loop's own handler saves a checkpoint first); the interrupted setting's marker is not written
    stop = StopRequest(options.deadline)
    with RunLock(options.out, "ragdistill reproduce"), stop.installed():
        results = run_plan(plan, say, stop)
    report = write_report(plan, results, wall_seconds=time.perf_counter() - t0)
    return report


__all__ = [
    "Context",
    "OWN_INDEX",
    "RunResult",
    "analyse_setting",
    "ensure_index",
    "evaluate_reference",
    "own_index",
    "reproduce",
    "run_plan",
    "train_setting",
]

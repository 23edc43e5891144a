"""Running the sweep: the baseline, the teachers' sources (step 1, the FiD fit, re-initialised readers), each
teacher's analysis and step-2 run, then the report."""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragdistill.errors import ConfigError
from ragdistill.experiments.sweep.markers import finished, write_marker
from ragdistill.experiments.sweep.options import SweepOptions
from ragdistill.experiments.sweep.plan import (
    SweepPlan,
    _reinit_name,
    build_sweep_plan,
    format_sweep_plan,
    snapshot_dir,
    teacher_reader,
    teacher_step2_config,
    unit_dir,
)
from ragdistill.experiments.sweep.teachers import DECODER, FID, Teacher, reinit_top_layers
from ragdistill.utils.io import atomic_write_text
from ragdistill.utils.progress import say as print_progress
from ragdistill.utils.seed import default_device

log = logging.getLogger(__name__)


def _train(cfg, run_dir: Path, force: bool, progress: bool) -> dict[str, Any]:
    """train(cfg, run_dir), resuming an interrupted run of the same config."""
    from ragdistill.training.loop import train
    from ragdistill.training.rundir import COMPLETED, same_saved_config

    resume = False
    saved = run_dir / "config.yaml"
    if run_dir.exists():
        same = same_saved_config(saved, cfg)
        ck = run_dir / "checkpoints"
        if same and ck.is_dir() and any(ck.iterdir()) and not (run_dir / COMPLETED).is_file() and not force:
            resume = True
        else:
            shutil.rmtree(run_dir)
    summary = train(cfg, run_dir, resume=resume, progress=progress)
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    return summary


def _hits(pred_path: Path, ks=(1, 5)) -> dict[str, dict[str, bool]]:
    """{question id: {"hr@1": bool, "hr@5": bool}} from an evaluation's predictions.jsonl."""
    out: dict[str, dict[str, bool]] = {}
    for line in Path(pred_path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        flags = r.get("hit_flags") or []
        out[str(r["id"])] = {f"hr@{k}": bool(any(flags[:k])) for k in ks}
    return out


class _Run:
    """The state one sweep run shares: plan, instances, loaded retrieval."""

    def __init__(self, plan: SweepPlan, say: Callable[[str], None]):
        self.plan, self.say = plan, say
        self.instances = None
        self.nlp = None

    # -- baseline ---------------------------------------------------------------
    def baseline(self) -> dict[str, Any]:
        from ragdistill.evaluation.evaluate import evaluate_questions, write_eval
        from ragdistill.experiments.runner import ensure_index

        plan = self.plan
        d = unit_dir(plan, "baseline")
        m = finished(d, plan.keys["baseline"], plan.options.force)
        if m:
            return m
        cfg = plan.configs["step2"]
        self.say(f"baseline: the initial retriever {cfg.retriever.name} on the test questions")
        retriever, index = ensure_index(cfg, plan.options.progress)
        qs = _load_split(cfg, cfg.eval.final_split)
        out = evaluate_questions(
            None,
            retriever,
            index,
            qs,
            k=cfg.train.k,
            ks=cfg.eval.ks,
            batch_size=cfg.eval.batch_size,
            match=cfg.eval.match,
            generate=False,
            progress=plan.options.progress,
        )
        write_eval(d / "eval", out, info={"split": cfg.eval.final_split, "retriever": cfg.retriever.name})
        del retriever, index
        gc.collect()
        return write_marker(
            d, plan.keys["baseline"], metrics=out.metrics, predictions=str(d / "eval" / "predictions.jsonl")
        )

    # -- sources ----------------------------------------------------------------
    def step1(self) -> dict[str, Any]:
        from ragdistill.training import checkpoint as ckpt
        from ragdistill.training.loop import build_reader

        plan = self.plan
        d = unit_dir(plan, "source:step1")
        m = finished(d, plan.keys["source:step1"], plan.options.force)
        if m:
            return m
        cfg = plan.configs["step1"]
        self.say(
            f"source step1: reader-only fine-tuning of {cfg.reader.name}, {cfg.train.steps} steps, snapshots at "
            + ", ".join(str(s) for s in sorted(set(plan.snapshot_steps.values())))
        )
        run = d / "run"
        summary = _train(cfg, run, plan.options.force, plan.options.progress)
        snaps = {}
        found = dict(ckpt.list_checkpoints(run / "checkpoints"))
        for f, step in sorted(plan.snapshot_steps.items()):
            if f >= 1.0:
                continue
            dest = Path(snapshot_dir(plan, f))
            if step not in found:
                raise ConfigError("snapshots", f"step 1 left no checkpoint at step {step} (it has {sorted(found)})")
            reader = build_reader(cfg, default_device(cfg.runtime.device))
            ckpt.load_module(found[step], "reader", reader.model)
            if dest.exists():
                shutil.rmtree(dest)
            reader.save_pretrained(dest)
            snaps[f"{f:g}"] = str(dest)
            del reader
            gc.collect()
        if (d / "reader").exists():
            shutil.rmtree(d / "reader")
        shutil.move(str(run / "reader"), str(d / "reader"))
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # the snapshots are exported; drop optimizer states
        return write_marker(
            d,
            plan.keys["source:step1"],
            snapshots=snaps,
            reader=str(d / "reader"),
            final_eval=summary.get("final_eval", {}),
            steps=summary.get("steps"),
        )

    def fid_fit(self) -> dict[str, Any]:
        plan = self.plan
        d = unit_dir(plan, "source:fid_fit")
        m = finished(d, plan.keys["source:fid_fit"], plan.options.force)
        if m:
            return m
        cfg = plan.configs["fid"]
        self.say(f"source fid_fit: reader-only fitting of {cfg.reader.name}, {cfg.train.steps} steps")
        summary = _train(cfg, d / "run", plan.options.force, plan.options.progress)
        if (d / "reader").exists():
            shutil.rmtree(d / "reader")
        shutil.move(str(d / "run" / "reader"), str(d / "reader"))
        shutil.rmtree(d / "run" / "checkpoints", ignore_errors=True)
        return write_marker(
            d, plan.keys["source:fid_fit"], reader=str(d / "reader"), final_eval=summary.get("final_eval", {})
        )

    def reinit(self, t: Teacher) -> dict[str, Any]:
        from ragdistill.training.loop import build_reader

        plan = self.plan
        unit = f"source:{_reinit_name(t)}"
        d = unit_dir(plan, unit)
        m = finished(d, plan.keys[unit], plan.options.force)
        if m:
            return m
        cfg = copy.deepcopy(plan.configs["step1"])
        cfg.reader.name = snapshot_dir(plan, t.fraction or 1.0)
        self.say(f"source {_reinit_name(t)}: re-initialising the top {t.reinit_top} layers of {cfg.reader.name}")
        reader = build_reader(cfg, default_device(cfg.runtime.device))
        idx = reinit_top_layers(reader.model, t.reinit_top, t.reinit_seed)
        if (d / "reader").exists():
            shutil.rmtree(d / "reader")
        reader.save_pretrained(d / "reader")
        del reader
        gc.collect()
        return write_marker(d, plan.keys[unit], reader=str(d / "reader"), layers=idx, seed=t.reinit_seed)

    # -- teachers ---------------------------------------------------------------
    def get_instances(self):
        if self.instances is not None:
            return self.instances
        from ragdistill.analysis.run import build_instances, sample_questions
        from ragdistill.data.questions import load_questions
        from ragdistill.experiments.runner import ensure_index
        from ragdistill.models import load_spacy

        plan = self.plan
        cfg = plan.configs["step2"]
        a = plan.sweep["analysis"]
        qs = load_questions(cfg.data.test, format=cfg.data.questions_format)
        sample, _ = sample_questions(qs, a["n"], a["seed"], "gold")
        retriever, index = ensure_index(cfg, plan.options.progress)
        if self.nlp is None:
            self.nlp = load_spacy()
        self.instances = build_instances(sample, index, retriever, cfg.train.k, self.nlp)
        del retriever, index
        gc.collect()
        return self.instances

    def teacher(self, t: Teacher) -> dict[str, Any]:
        from ragdistill.analysis.indicators import summarize
        from ragdistill.analysis.run import analyze_reader
        from ragdistill.readers import detect_kind
        from ragdistill.retrieval.metrics import has_answer
        from ragdistill.signals import get_signal
        from ragdistill.training.loop import build_reader

        plan = self.plan
        unit = f"teacher:{t.name}"
        d = unit_dir(plan, unit)
        m = finished(d, plan.keys[unit], plan.options.force)
        if m:
            return m
        t0 = time.perf_counter()
        reader_path = teacher_reader(plan, t)
        family = t.family
        if family == "auto":
            family = FID if detect_kind(reader_path) == "fid" else DECODER
        cfg2 = teacher_step2_config(plan, t, reader_path, family)
        instances = self.get_instances()
        self.say(f"teacher {t.name}: analysing {reader_path} ({t.signal}; {len(instances)} instances)")
        reader = build_reader(cfg2, default_device(cfg2.runtime.device))
        opts = t.signal_options
        ana_signal = "perplexity" if t.signal == "perplexity" else "attention"
        att_opts = {k: v for k, v in opts.items() if k != "orders"} if ana_signal == "attention" else None
        ra = analyze_reader(
            reader,
            instances,
            name=t.name,
            signal=ana_signal,
            answer="gold",
            attention_options=att_opts,
            ig_steps=plan.sweep["analysis"]["ig_steps"],
            progress=plan.options.progress,
            ig_tolerance=plan.sweep["analysis"]["ig_tolerance"],
            ig_max_steps=plan.sweep["analysis"]["ig_max_steps"],
        )
        summary = summarize(ra.measures)
        inputs = measures_to_inputs(ra.measures)
        # the teacher's passage scores S (its training signal) on the same instances: the predictors
        fn = get_signal(t.signal)
        scores, passage_hits = [], []
        for inst, rec in zip(instances, ra.records):
            ans = inst.question.answers[0]
            if t.signal == "attention" and "passage_scores" in rec:
                s = rec["passage_scores"]
            else:
                s = [float(x) for x in fn(reader, inst.question.question, inst.passages, ans, **opts)]
            scores.append(s)
            passage_hits.append([has_answer(p.text, inst.question.answers, cfg2.eval.match) for p in inst.passages])
        from ragdistill.experiments.sweep.stats import position_share_items, ranking_skill_items

        inputs["ranking_skill"] = ranking_skill_items(scores, passage_hits).tolist()
        inputs["position_bias"] = position_share_items(scores).tolist()
        del reader
        gc.collect()
        analysis_s = time.perf_counter() - t0
        (d / "analysis").mkdir(parents=True, exist_ok=True)
        with open(d / "analysis" / "instances.jsonl.tmp", "w", encoding="utf-8") as f:
            for r, s in zip(ra.records, scores):
                f.write(json.dumps({**r, "teacher_scores": s}, ensure_ascii=False) + "\n")
        Path(d / "analysis" / "instances.jsonl.tmp").replace(d / "analysis" / "instances.jsonl")
        self.say(f"teacher {t.name}: step 2 from it ({cfg2.train.steps} steps)")
        t1 = time.perf_counter()
        step2 = _train(cfg2, d / "step2", plan.options.force, plan.options.progress)
        shutil.rmtree(d / "step2" / "checkpoints", ignore_errors=True)
        shutil.rmtree(d / "step2" / "retriever", ignore_errors=True)  # only its evaluation is needed; keeps disk small
        return write_marker(
            d,
            plan.keys[unit],
            teacher=t.to_dict(),
            family=family,
            reader=reader_path,
            summary=summary,
            inputs=inputs,
            instance_ids=[i.question.id for i in instances],
            final_eval=step2.get("final_eval", {}),
            predictions=str(d / "step2" / "eval" / "predictions.jsonl"),
            seconds={"analysis": round(analysis_s, 1), "step2": round(time.perf_counter() - t1, 1)},
        )


def _load_split(cfg, split: str):
    from ragdistill.data.questions import load_questions

    qs = load_questions(getattr(cfg.data, split), format=cfg.data.questions_format)
    limit = getattr(cfg.data, f"max_{split}")
    return qs[:limit] if limit else qs


def measures_to_inputs(measures) -> dict[str, list[float | None]]:
    """Per-instance indicator inputs: '{answer|question}.{mean_attention|lift|spearman}.p{90|95}' -> values."""
    from ragdistill.analysis.quality import GROUPS, PERCENTILES

    out: dict[str, list[float | None]] = {}
    for g in GROUPS:
        for p in PERCENTILES:
            for k in ("mean_attention", "lift", "spearman"):
                vals: list[float | None] = []
                for m in measures:
                    gm = m.groups.get(g)
                    sel = gm.by_percentile.get(p) if gm is not None and not gm.skipped else None
                    v = getattr(sel, k) if sel is not None else None
                    vals.append(None if v is None or not math.isfinite(float(v)) else float(v))
                out[f"{g}.{k}.p{p}"] = vals
    return out


def run_sweep(options: SweepOptions, say: Callable[[str], None] = print_progress) -> dict[str, Any]:
    """Plan, run (or reuse) every unit, and write the report; returns the report object (also OUT/report.json)."""
    from ragdistill.experiments.sweep.report import write_sweep_report

    t0 = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    plan = build_sweep_plan(options, write=True)
    atomic_write_text(options.out / "plan.md", format_sweep_plan(plan))
    n_run = sum(1 for s in plan.status.values() if s == "run")
    say(
        f"ragdistill validate-indicators: {len(plan.teachers)} teachers, {n_run} units to run, "
        f"{len(plan.status) - n_run} reused (see {options.out / 'plan.md'})"
    )
    r = _Run(plan, say)
    baseline = r.baseline()
    sources: dict[str, Any] = {}
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for t in plan.teachers:
        try:
            if t.source in ("step1", "reinit") and "step1" not in sources:
                sources["step1"] = r.step1()
            if t.source == "fid-fit" and "fid_fit" not in sources:
                sources["fid_fit"] = r.fid_fit()
            if t.source == "reinit":
                sources[_reinit_name(t)] = r.reinit(t)
            results[t.name] = r.teacher(t)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one teacher failing must not lose the others; the report says so
            log.exception("teacher %s failed", t.name)
            failed[t.name] = f"{type(exc).__name__}: {exc}"
            say(f"teacher {t.name}: FAILED — {failed[t.name]}")
    return write_sweep_report(plan, baseline, results, failed, sources, wall_seconds=time.perf_counter() - t0)

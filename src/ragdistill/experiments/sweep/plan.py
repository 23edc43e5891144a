"""The sweep's plan: data, training configs, teachers, unit keys and directories, step-2 configs, dry-run text."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragdistill.errors import ConfigError, InputError
from ragdistill.experiments.sweep.estimate import estimate_seconds
from ragdistill.experiments.sweep.markers import _sha, finished
from ragdistill.experiments.sweep.options import SweepOptions, load_sweep_config
from ragdistill.experiments.sweep.teachers import DECODER, FID, Teacher, _frac_name, reference_of, select_teachers


@dataclass
class SweepPlan:
    options: SweepOptions
    sweep: dict[str, Any]
    dataset: Any  # experiments.plan.DataSpec
    root: Path  # OUT/<dataset>
    teachers: list[Teacher]
    configs: dict[str, Any]  # step1 / step2 / fid / perplexity: resolved training configs
    index_dir: Path
    snapshot_steps: dict[float, int]
    keys: dict[str, str] = field(default_factory=dict)  # unit -> key
    status: dict[str, str] = field(default_factory=dict)  # unit -> run | reuse
    estimate: dict[str, float] = field(default_factory=dict)  # unit -> seconds


def _data_options(options: SweepOptions):
    """The reproduce Options whose data preparation the sweep reuses (demo world, user files, SQuAD split)."""
    from ragdistill.experiments.plan import Options

    train, dev, test = options.questions_train, options.questions_dev, options.questions_test
    if options.questions:
        if train or test:
            raise ConfigError("questions", "pass --questions FILE or --questions-train/--questions-test, not both")
        if not options.corpus:
            raise ConfigError("questions", "needs --corpus")
        train = test = options.questions
    if (train or test) and not options.corpus:
        raise ConfigError("corpus", "question files need --corpus")
    return Options(
        out=options.out,
        scale="demo",
        corpus=options.corpus,
        questions_train=train,
        questions_dev=dev,
        questions_test=test,
        split_by_article=options.split_by_article,
        progress=options.progress,
        command=options.command,
    )


def _index_dir(root: Path, cfg) -> Path:
    ident = {
        "retriever": cfg.retriever.name,
        "pooling": cfg.retriever.pooling,
        "shared": cfg.retriever.shared,
        "max_length": cfg.retriever.max_length,
        "corpus": str(Path(cfg.data.corpus).resolve()) if cfg.data.corpus != "demo" else "demo",
        "format": cfg.data.corpus_format,
        "chunk_words": cfg.data.chunk_words,
        "faiss": cfg.index.faiss_type,
    }
    return root / f"index-{_sha(ident)[:10]}"


def _file_fp(path: str | None) -> str:
    from ragdistill.experiments.markers import _file_fingerprint

    return _file_fingerprint(path) if path else "none"


def build_sweep_plan(options: SweepOptions, write: bool = False) -> SweepPlan:
    """Resolve the data, the training configs, the teachers, the keys and what will run or be reused. Loads no model."""
    from ragdistill.config import load_config
    from ragdistill.experiments.plan import prepare_data

    sweep = load_sweep_config(options.config)
    if options.n is not None:
        sweep["analysis"]["n"] = options.n
    if options.seed is not None:
        sweep["analysis"]["seed"] = options.seed
    if options.resamples is not None:
        sweep["bootstrap"]["resamples"] = options.resamples
    datasets = prepare_data(_data_options(options), write=write)
    ds = datasets[0]
    root = options.out / ds.label
    cdir = Path(sweep["configs_dir"])
    data_sets = [f"data.{k}={v}" for k, v in (ds.paths or {}).items()]
    common = list(options.overrides)
    models: list[str] = [f"retriever.name={options.retriever}"] if options.retriever else []
    dec = [f"reader.name={options.reader}"] if options.reader else []
    fid = [f"reader.name={options.fid_reader}"] if options.fid_reader else []

    def cfg(name: str, extra: list[str]):
        path = cdir / sweep["configs"][name]
        if not path.is_file():
            raise InputError("training config of the sweep not found (configs." + name + ")", str(path))
        return load_config(path, data_sets + models + extra + common)

    step1 = cfg("step1", dec + sweep["step1_overrides"])
    index_dir = _index_dir(root, step1)
    idx = [f"index.dir={index_dir}"]
    configs = {
        "step1": cfg("step1", dec + idx + sweep["step1_overrides"]),
        "step2": cfg("step2", dec + idx + sweep["step2_overrides"]),
        "fid": cfg(
            "fid",
            fid
            + idx
            + ["train.regime=reader", "train.retriever_loss_weight=0.0", "index.refresh=-1"]
            + sweep["fid_overrides"],
        ),
        "perplexity": cfg("perplexity", idx),
    }
    for _name, c in configs.items():
        if c.index.dir is None or Path(c.index.dir) != index_dir:
            c.index.dir = str(index_dir)
    # step 1's snapshots: save_every divides every snapshot step; keep every checkpoint until exported
    steps = configs["step1"].train.steps
    snap = {f: max(1, int(round(f * steps))) for f in sweep["snapshots"]}
    snap[1.0] = steps
    every = 0
    for s in snap.values():
        every = math.gcd(every, s)
    configs["step1"].train.save_every = every
    configs["step1"].train.keep_last = steps // every + 1
    teachers = select_teachers(sweep, options)
    plan = SweepPlan(options, sweep, ds, root, teachers, configs, index_dir, snap)
    _keys(plan)
    for unit, key in plan.keys.items():
        plan.status[unit] = "reuse" if finished(unit_dir(plan, unit), key, options.force) else "run"
    plan.estimate = estimate_seconds(plan)
    return plan


def unit_dir(plan: SweepPlan, unit: str) -> Path:
    kind, _, name = unit.partition(":")
    if kind == "teacher":
        return plan.root / "teachers" / name
    if kind == "baseline":
        return plan.root / "baseline"
    return plan.root / "sources" / name


def _needed_sources(plan: SweepPlan) -> list[str]:
    out: list[str] = []
    for t in plan.teachers:
        if t.source in ("step1", "reinit") and (t.fraction or 0) > 0:
            out.append("source:step1")
        if t.source == "reinit":
            out.append(f"source:{_reinit_name(t)}")
        if t.source == "fid-fit":
            out.append("source:fid_fit")
    return list(dict.fromkeys(out))


def _reinit_name(t: Teacher) -> str:
    return f"reinit-{_frac_name(t.fraction or 1.0)}-top{t.reinit_top}-seed{t.reinit_seed}"


def _data_fp(c) -> dict[str, str]:
    return {k: _file_fp(getattr(c.data, k)) for k in ("corpus", "train", "dev", "test")}


def _keys(plan: SweepPlan) -> None:
    c = plan.configs
    a = plan.sweep["analysis"]
    keys: dict[str, str] = {}
    keys["baseline"] = _sha({"step2": c["step2"].to_dict(trackers=False), "data": _data_fp(c["step2"])})
    src_keys: dict[str, str] = {}
    src_keys["step1"] = _sha(
        {
            "config": c["step1"].to_dict(trackers=False),
            "data": _data_fp(c["step1"]),
            "snapshots": sorted(plan.snapshot_steps.values()),
        }
    )
    src_keys["fid_fit"] = _sha({"config": c["fid"].to_dict(trackers=False), "data": _data_fp(c["fid"])})
    for t in plan.teachers:
        if t.source == "reinit":
            src_keys[_reinit_name(t)] = _sha(
                {"step1": src_keys["step1"], "top": t.reinit_top, "seed": t.reinit_seed, "fraction": t.fraction}
            )
    for unit in _needed_sources(plan):
        keys[unit] = src_keys[unit.split(":", 1)[1]]
    for t in plan.teachers:
        reader_key = {
            "offshelf": c["step1"].reader.name,
            "fid-offshelf": c["fid"].reader.name,
            "step1": src_keys["step1"],
            "fid-fit": src_keys["fid_fit"],
            "reinit": src_keys.get(_reinit_name(t)) if t.source == "reinit" else None,
            "path": _file_fp(t.path) if t.path and Path(t.path).is_file() else str(t.path),
        }[t.source]
        keys[f"teacher:{t.name}"] = _sha(
            {
                "teacher": t.to_dict(),
                "reader": reader_key,
                "step2": teacher_step2_config(plan, t, "<reader>").to_dict(trackers=False),
                "analysis": a,
                "data": _data_fp(c["step2"]),
            }
        )
    plan.keys = keys


def teacher_reader(plan: SweepPlan, t: Teacher) -> str:
    """Where the teacher's reader is (a name or a directory; what a real run writes there)."""
    c = plan.configs
    if t.source == "offshelf":
        return c["step1"].reader.name
    if t.source == "fid-offshelf":
        return c["fid"].reader.name
    if t.source == "fid-fit":
        return str(unit_dir(plan, "source:fid_fit") / "reader")
    if t.source == "path":
        return str(t.path)
    if t.source == "reinit":
        return str(unit_dir(plan, f"source:{_reinit_name(t)}") / "reader")
    return snapshot_dir(plan, t.fraction or 1.0)


def snapshot_dir(plan: SweepPlan, fraction: float) -> str:
    if fraction >= 1.0:
        return str(unit_dir(plan, "source:step1") / "reader")
    return str(unit_dir(plan, "source:step1") / "snapshots" / f"step-{plan.snapshot_steps[fraction]:06d}")


def teacher_step2_config(plan: SweepPlan, t: Teacher, reader: str, family: str | None = None):
    """The step-2 config of a teacher: the shared step-2 config with the teacher's reader and signal only."""
    c = copy.deepcopy(plan.configs["step2"])
    family = family or t.family
    c.reader.name = reader
    if family == FID:
        f = plan.configs["fid"]
        c.reader.kind, c.reader.max_prompt_tokens, c.reader.dtype = "fid", f.reader.max_prompt_tokens, f.reader.dtype
        c.signal.tau_gold = f.signal.tau_gold
    elif family == DECODER:
        c.reader.kind = "decoder"
    else:
        c.reader.kind = "auto"
    c.signal.name = t.signal
    c.signal.layers = t.layers
    c.signal.value_norm = t.value_norm
    if t.signal == "perplexity":
        c.signal.tau_gold = plan.configs["perplexity"].signal.tau_gold
    c.name = f"sweep-{t.name}"
    return c


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def format_sweep_plan(plan: SweepPlan) -> str:
    o, sw, c = plan.options, plan.sweep, plan.configs
    lines = [
        f"ragdistill validate-indicators — {sw['name']} ({sw['path']}), output {o.out}",
        "",
        f"dataset {plan.dataset.label}: " + "; ".join(plan.dataset.notes),
        "",
    ]
    s1, s2 = c["step1"], c["step2"]
    lines += [
        "## What runs",
        "",
        f"- initial retriever {s2.retriever.name}; shared index {plan.index_dir}",
        f"- analysis: {sw['analysis']['n']} test questions (seed {sw['analysis']['seed']}), top-{s2.train.k} by the "
        "initial retriever, the same instances for every teacher",
        f"- step 1 (teachers' source): {s1.reader.name}, reader-only, {s1.train.steps} steps x {s1.train.batch_size} "
        f"questions, lr {s1.optim.lr_reader}; snapshots at steps "
        + ", ".join(f"{v} ({k:g})" for k, v in sorted(plan.snapshot_steps.items()))
        + f" (checkpoint every {s1.train.save_every})",
        f"- step 2 (identical for every teacher): regime retriever, {s2.train.steps} steps x {s2.train.batch_size} "
        f"questions, lr {s2.optim.lr_retriever}, seed {s2.train.seed}, refresh {s2.index.refresh}, tau_gold "
        f"{s2.signal.tau_gold}; outcome: test HR@1/HR@5 on {s2.data.max_test or 'all'} questions vs the initial "
        "retriever (exact McNemar, paired)",
        f"- correlations: Spearman across teachers vs ΔHR@5, bootstrap {sw['bootstrap']['resamples']} resamples "
        f"(questions, instances, teachers), seed {sw['bootstrap']['seed']}",
        "",
        "## Teachers",
        "",
        "| # | teacher | reader | signal | what | reference | status | est. |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    names = {t.name for t in plan.teachers}
    for i, t in enumerate(plan.teachers, 1):
        unit = f"teacher:{t.name}"
        opts = ""
        if t.layers is not None:
            opts += f" layers={t.layers}"
        if not t.value_norm:
            opts += " value_norm=false"
        if t.signal == "attention-debiased":
            opts += f" orders={t.orders}"
        lines.append(
            f"| {i} | {t.name} | {teacher_reader(plan, t)} | {t.signal}{opts} | {t.description} | "
            f"{reference_of(t, names) or '(is a reference)'} | {plan.status[unit]} | {_fmt_s(plan.estimate[unit])} |"
        )
    lines += ["", "## Sources and baseline", "", "| unit | directory | status | est. |", "|---|---|---|---:|"]
    for unit in plan.keys:
        if unit.startswith("teacher:"):
            continue
        lines.append(f"| {unit} | {unit_dir(plan, unit)} | {plan.status[unit]} | {_fmt_s(plan.estimate[unit])} |")
    todo = sum(v for u, v in plan.estimate.items() if plan.status[u] == "run")
    lines += [
        "",
        f"Estimated time: {_fmt_s(todo)} to run ({sum(1 for s in plan.status.values() if s == 'run')} units; "
        f"{sum(1 for s in plan.status.values() if s == 'reuse')} reused), from the unit costs measured on an idle "
        "2-core CPU with the bundled models (`experiments/estimate.py`; the sweep config's `estimate` section "
        "overrides them); other models and a GPU change them.",
    ]
    return "\n".join(lines)

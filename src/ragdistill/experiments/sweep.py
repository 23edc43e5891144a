"""`ragdistill validate-indicators`: do the indicators tell a good teacher from a bad one? (issue 18)

Teachers of graded quality are built from the bundled models without a download
(:func:`builtin_teachers`): the off-the-shelf reader; step-1 readers saved at several points of
one reader-only fine-tuning run (its checkpoints, exported as readers); readers degraded on
purpose (attention from a subset of layers, top layers re-initialised with a seed, value-norm
weighting off, the perplexity signal, the position-debiased signal); the offline FiD reader
before and after it is fitted. ``--teachers`` adds any reader by name or path.

For each teacher, on the SAME analysed instances (same questions and passages, retrieved by the
initial retriever): the indicators' inputs (mean attention, lift and Spearman on answer- and
question-related tokens, p90 and p95, per instance) and two simple predictors (ranking skill,
position bias, :mod:`ragdistill.experiments.sweep_stats`); then the outcome of distilling from
it: one identical step-2 run (regime retriever; same initial retriever, steps, seed and
questions) whose test HR@1/HR@5 is compared with the initial retriever's, paired over the
questions (exact McNemar). The report (:mod:`ragdistill.experiments.sweep_report`) correlates
every input with ΔHR@5 across teachers and keeps the decision rule's record.

Layout of ``OUT``: ``data/`` (demo world or split files), ``<dataset>/index-*`` (the initial
index), ``<dataset>/baseline`` (the initial retriever's test evaluation),
``<dataset>/sources/{step1,fid_fit,reinit-*}`` (the runs teachers are made from),
``<dataset>/teachers/<name>/{analysis,step2}``, and ``report.md``, ``report.json``, ``figures/``.
Every finished unit leaves ``sweep.json`` with a key over its config; a rerun reuses it while the
key is unchanged (``--force`` redoes everything).
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ragdistill.errors import ConfigError, InputError
from ragdistill.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

MARKER = "sweep.json"
DECODER, FID = "decoder", "fid"
ATTENTION_SIGNALS = ("attention", "attention-debiased")


# --------------------------------------------------------------------------- options and config


@dataclass
class SweepOptions:
    """Everything `ragdistill validate-indicators` was asked for."""

    out: Path
    config: Path | None = None             # the sweep YAML (default: configs/demo/sweep/sweep.yaml)
    corpus: str | None = None
    questions: str | None = None           # one SQuAD file (split by article) or, with --corpus, train = test = it
    questions_train: str | None = None
    questions_dev: str | None = None
    questions_test: str | None = None
    split_by_article: bool = False
    teachers: list[str] = field(default_factory=list)   # extra teachers: reader names or paths
    only: list[str] | None = None          # run only these teachers (names)
    overrides: list[str] = field(default_factory=list)  # --set on every training config
    reader: str | None = None              # decoder reader instead of the configs'
    fid_reader: str | None = None          # FiD reader instead of the configs'
    retriever: str | None = None           # initial retriever instead of the configs'
    n: int | None = None                   # analysed instances (default: the sweep config's)
    seed: int | None = None                # analysis sample seed (default: the sweep config's)
    resamples: int | None = None           # bootstrap resamples (default: the sweep config's)
    force: bool = False
    progress: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n is not None and self.n < 1:
            raise ConfigError("n", "the number of analysed instances must be at least 1")
        if self.resamples is not None and self.resamples < 1:
            raise ConfigError("resamples", "must be at least 1")


def default_config_path() -> Path:
    from ragdistill.experiments.plan import configs_root

    return configs_root() / "demo" / "sweep" / "sweep.yaml"


SWEEP_KEYS = {"name", "configs", "snapshots", "degraded", "teachers", "analysis", "verdict", "bootstrap",
              "step1_overrides", "step2_overrides", "fid_overrides", "estimate"}
SECTION_KEYS = {
    "configs": {"step1", "step2", "fid", "perplexity"},
    "degraded": {"from", "layers", "reinit_top", "reinit_seed", "orders"},
    "analysis": {"n", "seed", "ig_steps"},
    "verdict": {"attention_measure", "percentile", "corr_threshold"},
    "bootstrap": {"resamples", "seed"},
    "estimate": {"reader_step_s", "retriever_step_s", "refresh_s", "eval_question_s", "analysis_instance_s"},
}


def load_sweep_config(path: str | Path | None = None) -> dict[str, Any]:
    """The sweep YAML, every key checked (an unknown key is refused, naming it)."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise InputError("sweep config not found", str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", str(path)) from exc
    if not isinstance(raw, dict):
        raise InputError("a sweep config is a mapping of keys", str(path))
    for key in raw:
        if key not in SWEEP_KEYS:
            raise ConfigError(key, f"unknown key in {path.name}; the keys are {', '.join(sorted(SWEEP_KEYS))}")
    for section, keys in SECTION_KEYS.items():
        val = raw.get(section) or {}
        if not isinstance(val, dict):
            raise ConfigError(section, "must be a mapping")
        for k in val:
            if k not in keys:
                raise ConfigError(f"{section}.{k}", f"unknown key; {section} takes {', '.join(sorted(keys))}")
    # training configs: beside the sweep folder (configs/<scale>/sweep/x.yaml -> configs/<scale>/), else the shipped demo ones
    cfg = {"name": raw.get("name", path.stem), "path": str(path), "configs_dir": str(path.parent.parent)
           if path.parent.name == "sweep" else str(default_config_path().parent.parent)}
    cfg["configs"] = {"step1": "finetuned_step1.yaml", "step2": "finetuned_step2.yaml", "fid": "encdec_distill.yaml",
                      "perplexity": "perplexity_distill.yaml", **(raw.get("configs") or {})}
    snaps = raw.get("snapshots", [0.125, 0.25, 0.5, 1.0])
    if not isinstance(snaps, list) or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in snaps):
        raise ConfigError("snapshots", f"a list of shares of the step-1 budget in (0, 1], got {snaps!r}")
    cfg["snapshots"] = [float(f) for f in snaps]
    cfg["degraded"] = {"from": 1.0, "layers": [-1], "reinit_top": 2, "reinit_seed": 0, "orders": 4,
                       **(raw.get("degraded") or {})}
    if cfg["degraded"]["orders"] < 1:
        raise ConfigError("degraded.orders", "must be at least 1")
    if cfg["degraded"]["reinit_top"] < 1:
        raise ConfigError("degraded.reinit_top", "must be at least 1")
    cfg["teachers"] = list(raw.get("teachers") or [])
    cfg["analysis"] = {"n": 50, "seed": 0, "ig_steps": 4, **(raw.get("analysis") or {})}
    cfg["verdict"] = {"attention_measure": "auto", "percentile": 95, "corr_threshold": 0.3, **(raw.get("verdict") or {})}
    if cfg["verdict"]["attention_measure"] not in ("mean", "lift", "auto"):
        raise ConfigError("verdict.attention_measure", "must be mean, lift or auto")
    if cfg["verdict"]["percentile"] not in (90, 95):
        raise ConfigError("verdict.percentile", "must be 90 or 95 (the analysed percentiles)")
    cfg["bootstrap"] = {"resamples": 2000, "seed": 0, **(raw.get("bootstrap") or {})}
    for key in ("step1_overrides", "step2_overrides", "fid_overrides"):
        val = raw.get(key) or []
        if not isinstance(val, list) or not all(isinstance(v, str) and "=" in v for v in val):
            raise ConfigError(key, "a list of KEY=VALUE overrides")
        cfg[key] = list(val)
    cfg["estimate"] = {"reader_step_s": 1.6, "retriever_step_s": 0.9, "refresh_s": 4.0, "eval_question_s": 0.4,
                       "analysis_instance_s": 0.5, **(raw.get("estimate") or {})}
    return cfg


# --------------------------------------------------------------------------- teachers


@dataclass
class Teacher:
    """One teacher: which reader (and how it is made), which signal, with which options."""

    name: str
    family: str = DECODER              # decoder | fid | auto (an extra reader: detected when it loads)
    source: str = "offshelf"           # offshelf | step1 | reinit | fid-offshelf | fid-fit | path
    fraction: float | None = None      # step1: the share of the step-1 budget
    path: str | None = None            # source "path": the reader's name or directory
    signal: str = "attention"          # attention | attention-debiased | perplexity
    layers: list[int] | None = None
    value_norm: bool = True
    orders: int = 1                    # attention-debiased: passage orders
    reinit_top: int = 0
    reinit_seed: int = 0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def signal_options(self) -> dict[str, Any]:
        if self.signal == "perplexity":
            return {}
        opts: dict[str, Any] = {"layers": self.layers, "value_norm": self.value_norm, "aggregation": "sum"}
        if self.signal == "attention-debiased":
            opts["orders"] = self.orders
        return opts


def _frac_name(f: float) -> str:
    return f"step1-{float(f)}"


def builtin_teachers(sweep: dict[str, Any]) -> dict[str, Teacher]:
    """Every built-in teacher the sweep config can name, by name."""
    d = sweep["degraded"]
    src = float(d["from"])
    base = dict(source="step1", fraction=src)
    out = {"offshelf": Teacher("offshelf", DECODER, "offshelf", description="the off-the-shelf reader (decoder reference)")}
    for f in sweep["snapshots"]:
        out[_frac_name(f)] = Teacher(_frac_name(f), DECODER, "step1", fraction=f,
                                     description=f"step-1 reader after {f:.0%} of its budget")
    tag = _frac_name(src)
    out["layers-subset"] = Teacher("layers-subset", DECODER, **base, layers=list(d["layers"]),
                                   description=f"{tag}, attention from layers {list(d['layers'])} only")
    out["reinit-top"] = Teacher("reinit-top", DECODER, "reinit", fraction=src, reinit_top=int(d["reinit_top"]),
                                reinit_seed=int(d["reinit_seed"]),
                                description=f"{tag} with its top {d['reinit_top']} layers re-initialised (seed {d['reinit_seed']})")
    out["no-value-norm"] = Teacher("no-value-norm", DECODER, **base, value_norm=False,
                                   description=f"{tag}, value-norm weighting off (attention probabilities alone)")
    out["perplexity"] = Teacher("perplexity", DECODER, **base, signal="perplexity",
                                description=f"{tag}, perplexity signal (METHOD §3.4)")
    out["debiased"] = Teacher("debiased", DECODER, **base, signal="attention-debiased", orders=int(d["orders"]),
                              description=f"{tag}, attention averaged over {d['orders']} passage orders (position-debiased)")
    out["fid-offshelf"] = Teacher("fid-offshelf", FID, "fid-offshelf", description="the offline FiD reader, not fitted "
                                  "(FiD reference)")
    out["fid-fitted"] = Teacher("fid-fitted", FID, "fid-fit", description="the FiD reader after reader-only fitting")
    return out


def extra_teacher(spec: str) -> Teacher:
    """A teacher from `--teachers NAME_OR_PATH` (attention signal, family detected when it loads)."""
    stem = Path(spec.rstrip("/")).name or spec
    if stem == "reader":  # runs/x/reader -> x
        stem = Path(spec.rstrip("/")).parent.name or stem
    name = "extra-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    return Teacher(name, "auto", "path", path=spec, description=f"--teachers {spec}")


def select_teachers(sweep: dict[str, Any], options: SweepOptions) -> list[Teacher]:
    known = builtin_teachers(sweep)
    out: list[Teacher] = []
    for name in sweep["teachers"]:
        if name not in known:
            raise ConfigError("teachers", f"unknown teacher {name!r}; the built-in teachers are: {', '.join(known)}")
        out.append(known[name])
    for spec in options.teachers:
        if spec in known:
            if all(t.name != spec for t in out):
                out.append(known[spec])
            continue
        t = extra_teacher(spec)
        if any(x.name == t.name for x in out):
            raise ConfigError("teachers", f"two teachers would be named {t.name!r}")
        out.append(t)
    if options.only:
        names = {t.name for t in out}
        bad = [n for n in options.only if n not in names]
        if bad:
            raise ConfigError("only", f"unknown teacher {bad[0]!r}; the teachers are: {', '.join(sorted(names))}")
        out = [t for t in out if t.name in options.only]
    if not out:
        raise ConfigError("teachers", "no teacher to run")
    return out


def reference_of(teacher: Teacher, names: set[str]) -> str | None:
    """The indicators' reference: the off-the-shelf teacher of the same family (None for a reference itself)."""
    ref = "fid-offshelf" if teacher.family == FID else "offshelf"
    if teacher.name == ref or ref not in names:
        return None
    return ref


# --------------------------------------------------------------------------- reinitialising layers


def decoder_layers(model: Any):
    """The ModuleList of a decoder-only model's transformer blocks (Llama/Qwen/Mistral, Falcon/GPT-2 style)."""
    for path in ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ConfigError("degraded.reinit_top", f"cannot find the decoder layers of {type(model).__name__}")


def reinit_top_layers(model: Any, n: int, seed: int = 0) -> list[int]:
    """Re-initialise the top `n` decoder layers in place with the model's own initialiser, seeded; their indices."""
    import torch

    layers = decoder_layers(model)
    if not 1 <= n <= len(layers):
        raise ConfigError("degraded.reinit_top", f"must lie in 1..{len(layers)} (the reader's layers), got {n}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        idx = list(range(len(layers) - n, len(layers)))
        with torch.no_grad():
            for i in idx:
                for module in layers[i].modules():
                    if isinstance(module, torch.nn.Linear):
                        std = float(getattr(model.config, "initializer_range", 0.02))
                        module.weight.normal_(0.0, std)
                        if module.bias is not None:
                            module.bias.zero_()
                    elif hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 1:
                        module.weight.fill_(1.0)            # norms back to identity
                        if getattr(module, "bias", None) is not None:
                            module.bias.zero_()
    finally:
        torch.random.set_rng_state(gen_state)
    return idx


# --------------------------------------------------------------------------- keys and markers


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def finished(run_dir: Path, key: str, force: bool) -> dict[str, Any] | None:
    """The unit's marker when it finished with this key (and --force is off), else None."""
    m = read_json(Path(run_dir) / MARKER)
    if force or not m or not m.get("completed") or m.get("key") != key:
        return None
    return m


def write_marker(run_dir: Path, key: str, **fields: Any) -> dict[str, Any]:
    m = {"key": key, "completed": True, "finished_at": _dt.datetime.now().isoformat(timespec="seconds"), **fields}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / MARKER, m)
    return m


# --------------------------------------------------------------------------- the plan


@dataclass
class SweepPlan:
    options: SweepOptions
    sweep: dict[str, Any]
    dataset: Any                       # experiments.plan.DataSpec
    root: Path                         # OUT/<dataset>
    teachers: list[Teacher]
    configs: dict[str, Any]            # step1 / step2 / fid / perplexity: resolved training configs
    index_dir: Path
    snapshot_steps: dict[float, int]
    keys: dict[str, str] = field(default_factory=dict)       # unit -> key
    status: dict[str, str] = field(default_factory=dict)     # unit -> run | reuse
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
    return Options(out=options.out, scale="demo", corpus=options.corpus, questions_train=train, questions_dev=dev,
                   questions_test=test, split_by_article=options.split_by_article, progress=options.progress,
                   command=options.command)


def _index_dir(root: Path, cfg) -> Path:
    ident = {"retriever": cfg.retriever.name, "pooling": cfg.retriever.pooling, "shared": cfg.retriever.shared,
             "max_length": cfg.retriever.max_length,
             "corpus": str(Path(cfg.data.corpus).resolve()) if cfg.data.corpus != "demo" else "demo",
             "format": cfg.data.corpus_format, "chunk_words": cfg.data.chunk_words, "faiss": cfg.index.faiss_type}
    return root / f"index-{_sha(ident)[:10]}"


def _file_fp(path: str | None) -> str:
    from ragdistill.experiments.markers import _file_fingerprint

    return _file_fingerprint(path) if path else "none"


def build_sweep_plan(options: SweepOptions, write: bool = False) -> SweepPlan:
    """Resolve the data, the training configs, the teachers, the keys and what will run or be reused. Loads no model."""
    from ragdistill.experiments.plan import prepare_data
    from ragdistill.config import load_config

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
        "fid": cfg("fid", fid + idx + ["train.regime=reader", "train.retriever_loss_weight=0.0", "index.refresh=-1"]
                   + sweep["fid_overrides"]),
        "perplexity": cfg("perplexity", idx),
    }
    for name, c in configs.items():
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
    keys["baseline"] = _sha({"step2": c["step2"].to_dict(), "data": _data_fp(c["step2"])})
    src_keys: dict[str, str] = {}
    src_keys["step1"] = _sha({"config": c["step1"].to_dict(), "data": _data_fp(c["step1"]),
                              "snapshots": sorted(plan.snapshot_steps.values())})
    src_keys["fid_fit"] = _sha({"config": c["fid"].to_dict(), "data": _data_fp(c["fid"])})
    for t in plan.teachers:
        if t.source == "reinit":
            src_keys[_reinit_name(t)] = _sha({"step1": src_keys["step1"], "top": t.reinit_top, "seed": t.reinit_seed,
                                              "fraction": t.fraction})
    for unit in _needed_sources(plan):
        keys[unit] = src_keys[unit.split(":", 1)[1]]
    for t in plan.teachers:
        reader_key = {"offshelf": c["step1"].reader.name, "fid-offshelf": c["fid"].reader.name,
                      "step1": src_keys["step1"], "fid-fit": src_keys["fid_fit"],
                      "reinit": src_keys.get(_reinit_name(t)) if t.source == "reinit" else None,
                      "path": _file_fp(t.path) if t.path and Path(t.path).is_file() else str(t.path)}[t.source]
        keys[f"teacher:{t.name}"] = _sha({"teacher": t.to_dict(), "reader": reader_key,
                                          "step2": teacher_step2_config(plan, t, "<reader>").to_dict(),
                                          "analysis": a, "data": _data_fp(c["step2"])})
    plan.keys = keys


# --------------------------------------------------------------------------- per-teacher configs


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


# --------------------------------------------------------------------------- estimate and dry run


def estimate_seconds(plan: SweepPlan) -> dict[str, float]:
    e = plan.sweep["estimate"]
    c = plan.configs
    n_corpus = plan.dataset.counts.get("corpus")
    refresh = e["refresh_s"] * (1.0 if not n_corpus else max(0.25, n_corpus / 1000))
    def n_test(cfg):
        return cfg.data.max_test or plan.dataset.counts.get("test", 40)
    out: dict[str, float] = {}
    s2 = c["step2"]
    from ragdistill.retrieval.refresh import RefreshSchedule

    sched = RefreshSchedule.parse(s2.index.refresh)
    refreshes = sum(1 for s in range(1, s2.train.steps + 1) if sched.is_due(s))
    evals = (s2.train.steps // s2.eval.every if s2.eval.every else 0) + 1
    for unit in plan.keys:
        if unit == "baseline":
            out[unit] = refresh + n_test(s2) * 0.05
        elif unit == "source:step1":
            s1 = c["step1"]
            out[unit] = s1.train.steps * s1.train.batch_size * e["reader_step_s"] + n_test(s1) * e["eval_question_s"] \
                + (s1.train.steps // s1.eval.every if s1.eval.every else 0) * refresh
        elif unit == "source:fid_fit":
            f = c["fid"]
            out[unit] = f.train.steps * f.train.batch_size * e["reader_step_s"] * 0.5 + n_test(f) * e["eval_question_s"]
        elif unit.startswith("source:"):
            out[unit] = 20.0
        else:
            name = unit.split(":", 1)[1]
            t = next(x for x in plan.teachers if x.name == name)
            per = e["retriever_step_s"] * (t.orders if t.signal == "attention-debiased" else 1)
            if t.signal == "perplexity":
                per *= s2.train.k
            n = plan.sweep["analysis"]["n"]
            ana = n * e["analysis_instance_s"] * ((s2.train.k * plan.sweep["analysis"]["ig_steps"]) if t.signal == "perplexity"
                                                  else 1) + n * e["analysis_instance_s"] * (t.orders if t.signal ==
                                                                                            "attention-debiased" else 0.2)
            out[unit] = ana + s2.train.steps * s2.train.batch_size * per + (refreshes + evals) * refresh \
                + n_test(s2) * e["eval_question_s"]
    return out


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def format_sweep_plan(plan: SweepPlan) -> str:
    o, sw, c = plan.options, plan.sweep, plan.configs
    lines = [f"ragdistill validate-indicators — {sw['name']} ({sw['path']}), output {o.out}", "",
             f"dataset {plan.dataset.label}: " + "; ".join(plan.dataset.notes), ""]
    s1, s2 = c["step1"], c["step2"]
    lines += ["## What runs", "",
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
              f"(questions, instances, teachers), seed {sw['bootstrap']['seed']}", "",
              "## Teachers", "", "| # | teacher | reader | signal | what | reference | status | est. |",
              "|---|---|---|---|---|---|---|---:|"]
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
        lines.append(f"| {i} | {t.name} | {teacher_reader(plan, t)} | {t.signal}{opts} | {t.description} | "
                     f"{reference_of(t, names) or '(is a reference)'} | {plan.status[unit]} | {_fmt_s(plan.estimate[unit])} |")
    lines += ["", "## Sources and baseline", "", "| unit | directory | status | est. |", "|---|---|---|---:|"]
    for unit in plan.keys:
        if unit.startswith("teacher:"):
            continue
        lines.append(f"| {unit} | {unit_dir(plan, unit)} | {plan.status[unit]} | {_fmt_s(plan.estimate[unit])} |")
    todo = sum(v for u, v in plan.estimate.items() if plan.status[u] == "run")
    lines += ["", f"Estimated time: {_fmt_s(todo)} to run ({sum(1 for s in plan.status.values() if s == 'run')} units; "
              f"{sum(1 for s in plan.status.values() if s == 'reuse')} reused), from the per-unit costs in the sweep "
              "config's `estimate` section (an idle 2-core CPU; a GPU is several times faster)."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


def _say(msg: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    except ImportError:  # pragma: no cover
        print(msg, flush=True)


def _device(cfg):
    from ragdistill.utils.seed import default_device

    return default_device(None if cfg.runtime.device == "auto" else cfg.runtime.device)


def _train(cfg, run_dir: Path, force: bool, progress: bool) -> dict[str, Any]:
    """train(cfg, run_dir), resuming an interrupted run of the same config."""
    from ragdistill.training.loop import train
    from ragdistill.training.rundir import COMPLETED

    resume = False
    saved = run_dir / "config.yaml"
    if run_dir.exists():
        same = saved.is_file() and saved.read_text(encoding="utf-8") == cfg.to_yaml()
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
        out = evaluate_questions(None, retriever, index, qs, k=cfg.train.k, ks=cfg.eval.ks, batch_size=cfg.eval.batch_size,
                                 match=cfg.eval.match, generate=False, progress=plan.options.progress)
        write_eval(d / "eval", out, info={"split": cfg.eval.final_split, "retriever": cfg.retriever.name})
        del retriever, index
        gc.collect()
        return write_marker(d, plan.keys["baseline"], metrics=out.metrics, predictions=str(d / "eval" / "predictions.jsonl"))

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
        self.say(f"source step1: reader-only fine-tuning of {cfg.reader.name}, {cfg.train.steps} steps, snapshots at "
                 + ", ".join(str(s) for s in sorted(set(plan.snapshot_steps.values()))))
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
            reader = build_reader(cfg, _device(cfg))
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
        shutil.rmtree(run / "checkpoints", ignore_errors=True)   # the snapshots are exported; drop optimizer states
        return write_marker(d, plan.keys["source:step1"], snapshots=snaps, reader=str(d / "reader"),
                            final_eval=summary.get("final_eval", {}), steps=summary.get("steps"))

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
        return write_marker(d, plan.keys["source:fid_fit"], reader=str(d / "reader"),
                            final_eval=summary.get("final_eval", {}))

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
        reader = build_reader(cfg, _device(cfg))
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
        reader = build_reader(cfg2, _device(cfg2))
        opts = t.signal_options
        ana_signal = "perplexity" if t.signal == "perplexity" else "attention"
        att_opts = {k: v for k, v in opts.items() if k != "orders"} if ana_signal == "attention" else None
        ra = analyze_reader(reader, instances, name=t.name, signal=ana_signal, answer="gold", attention_options=att_opts,
                            ig_steps=plan.sweep["analysis"]["ig_steps"], progress=plan.options.progress)
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
        from ragdistill.experiments.sweep_stats import position_share_items, ranking_skill_items

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
        shutil.rmtree(d / "step2" / "retriever", ignore_errors=True)   # only its evaluation is needed; keeps disk small
        return write_marker(d, plan.keys[unit], teacher=t.to_dict(), family=family, reader=reader_path,
                            summary=summary, inputs=inputs, instance_ids=[i.question.id for i in instances],
                            final_eval=step2.get("final_eval", {}), predictions=str(d / "step2" / "eval" / "predictions.jsonl"),
                            seconds={"analysis": round(analysis_s, 1), "step2": round(time.perf_counter() - t1, 1)})


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


def run_sweep(options: SweepOptions, say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Plan, run (or reuse) every unit, and write the report; returns the report object (also OUT/report.json)."""
    from ragdistill.experiments.sweep_report import write_sweep_report

    t0 = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    plan = build_sweep_plan(options, write=True)
    atomic_write_text(options.out / "plan.md", format_sweep_plan(plan))
    n_run = sum(1 for s in plan.status.values() if s == "run")
    say(f"ragdistill validate-indicators: {len(plan.teachers)} teachers, {n_run} units to run, "
        f"{len(plan.status) - n_run} reused (see {options.out / 'plan.md'})")
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


__all__ = ["SweepOptions", "SweepPlan", "Teacher", "build_sweep_plan", "builtin_teachers", "decoder_layers",
           "extra_teacher", "format_sweep_plan", "load_sweep_config", "measures_to_inputs", "reference_of",
           "reinit_top_layers", "run_sweep", "select_teachers", "teacher_step2_config"]

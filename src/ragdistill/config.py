"""The run configuration every stage reads: dataclasses, YAML loading, `--set a.b=v` overrides, strict validation.

A run is described by one YAML file (see ``configs/demo`` and ``configs/paper``). Every key
is checked before any work starts: an unknown key, a value of the wrong type or an
impossible value (k = 0, a negative learning rate, a temperature of 0, more GPUs than
the machine has, ...) raises :class:`ragdistill.errors.ConfigError` naming the dotted key,
so a 40-hour run cannot die at step 30 000 on a typo.

Per-dataset hyper-parameters live in an optional top-level ``datasets`` mapping; the
``dataset`` key picks one section, which is merged over the base values *before* the
command-line overrides (so ``--set train.steps=10`` always wins, and
``--set dataset=triviaqa`` switches the section).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ragdistill.analysis.monitor import check_monitor_options
from ragdistill.errors import ConfigError, InputError
from ragdistill.retrieval.refresh import RefreshSchedule
from ragdistill.signals import available_signals

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- regimes


@dataclass(frozen=True)
class Regime:
    """What one training regime (METHOD.md §4) trains and which losses it sums.

    ``reader_loss``: the reader's LM loss on the answer; ``distillation_loss``: KL(p_gold || p_RETR)
    on the retriever's scores, which needs the reader's signal S and an index refreshed as the
    retriever moves (``needs_refresh``).
    """

    name: str
    trains_reader: bool
    trains_retriever: bool
    description: str = ""

    @property
    def reader_loss(self) -> bool:
        return self.trains_reader

    @property
    def distillation_loss(self) -> bool:
        return self.trains_retriever

    @property
    def needs_signal(self) -> bool:
        return self.distillation_loss

    @property
    def needs_refresh(self) -> bool:
        return self.trains_retriever


REGIMES: dict[str, Regime] = {
    "joint": Regime(
        "joint", True, True, "reader and retriever together (reader LM loss + retriever distillation loss)"
    ),
    "reader": Regime("reader", True, False, "the reader alone (LM loss on the answer), the retriever fixed"),
    "retriever": Regime("retriever", False, True, "the retriever alone, against a frozen reader's signal"),
}

RegimeName = Literal["joint", "reader", "retriever"]
ReaderKind = Literal["auto", "decoder", "fid"]
OptimizerName = Literal["adam", "adamw"]
OptimizerImpl = Literal["auto", "fused", "foreach", "loop"]
ScheduleName = Literal["constant", "linear", "cosine"]
TargetMode = Literal["softmax", "normalize"]
Aggregation = Literal["sum", "mean"]
Pooling = Literal["mean", "cls"]
Match = Literal["token", "substring"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
DType = Literal["float32", "bfloat16", "float16"]
Split = Literal["dev", "test", "train"]
assert set(typing.get_args(RegimeName)) == set(REGIMES)

# the choices as tuples, for messages and callers that list them
READER_KINDS = typing.get_args(ReaderKind)
OPTIMIZERS = typing.get_args(OptimizerName)
SCHEDULES = typing.get_args(ScheduleName)
TARGET_MODES = typing.get_args(TargetMode)
AGGREGATIONS = typing.get_args(Aggregation)
POOLINGS = typing.get_args(Pooling)
MATCHES = typing.get_args(Match)
DEVICES = typing.get_args(Device)
PRECISIONS = typing.get_args(Precision)
OPTIMIZER_IMPLS = typing.get_args(OptimizerImpl)
DTYPES = typing.get_args(DType)


@dataclass
class DataConfig:
    """Where passages and questions come from. ``demo`` means the generated demo world."""

    corpus: str = "demo"
    train: str = "demo"
    dev: str = "demo"
    test: str = "demo"
    demo_seed: int = 0
    questions_format: str | None = None
    corpus_format: str | None = None
    chunk_words: int | None = None
    max_train: int = 0
    max_dev: int = 0
    max_test: int = 0


@dataclass
class ReaderConfig:
    name: str = "smollm2-135m"
    kind: ReaderKind = "auto"
    max_prompt_tokens: int = 512
    max_new_tokens: int = 16
    dtype: DType = "float32"
    trust_remote_code: bool = False


@dataclass
class RetrieverConfig:
    name: str = "minilm-l6"
    pooling: Pooling = "mean"
    shared: bool = True
    query_only: bool = False
    max_length: int = 256
    temperature: float = 0.1


@dataclass
class IndexConfig:
    dir: str | None = None
    faiss_type: str = "Flat"
    refresh: str = "100"
    batch_size: int = 64


@dataclass
class SignalConfig:
    name: str = "attention"
    tau_gold: float = 1.0
    mode: TargetMode = "softmax"
    layers: list[int] | None = None
    value_norm: bool = True
    aggregation: Aggregation = "sum"
    orders: int = 4  # attention-debiased only: passage orders S is averaged over


@dataclass
class TrainConfig:
    regime: RegimeName = "joint"
    steps: int = 100
    batch_size: int = 1
    grad_accum: int = 1
    k: int = 5
    seed: int = 0
    reader_loss_weight: float = 1.0
    retriever_loss_weight: float = 1.0
    log_every: int = 10
    save_every: int = 0
    keep_last: int = 2


@dataclass
class OptimConfig:
    name: OptimizerName = "adamw"
    lr_reader: float = 1e-5
    lr_retriever: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: ScheduleName = "linear"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    clip_grad_norm: float = 1.0
    impl: OptimizerImpl = "auto"


@dataclass
class EvalConfig:
    every: int = 0
    split: Split = "dev"
    ks: list[int] = field(default_factory=lambda: [1, 5, 20])
    generate: bool = False
    fresh_index: bool = True
    final: bool = True
    final_generate: bool = True
    final_split: Split = "test"
    batch_size: int = 8
    match: Match = "token"
    max_generate: int = 0


@dataclass
class MonitorConfig:
    every: int = 0
    instances: int = 20
    options: dict[str, Any] = field(default_factory=dict)


DEFAULT_TRACKERS = ("tensorboard",)
TRACKERS_KEY = "runtime.log_with"
TRACKER_PIP_NAMES = {"comet_ml": "comet-ml"}  # pip names that differ from the tracker's


@dataclass
class RuntimeConfig:
    device: Device = "auto"
    gpus: int = 0
    precision: Precision = "auto"
    threads: int = 0
    collective_timeout: float = 600.0
    log_with: list[str] = field(default_factory=lambda: list(DEFAULT_TRACKERS))  # ragdistill.training.trackers


@dataclass
class Config:
    name: str = "run"
    description: str = ""
    dataset: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self, trackers: bool = True) -> dict[str, Any]:
        """The config as a mapping; ``trackers=False`` leaves out ``runtime.log_with``, which changes where the
        metrics are sent, not what is computed."""
        out = dataclasses.asdict(self)
        if not trackers:
            out["runtime"].pop("log_with", None)
        return out

    def to_yaml(self) -> str:
        header = "# Resolved ragdistill training config (base file + dataset section + --set overrides).\n"
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def fingerprint(self) -> str:
        """sha256 of the resolved config: two runs with equal fingerprints compute the same thing (the trackers
        they log to are left out)."""
        return hashlib.sha256(json.dumps(self.to_dict(trackers=False), sort_keys=True).encode()).hexdigest()

    @property
    def regime(self) -> Regime:
        """The regime object of `train.regime`: which models train, which losses apply."""
        return REGIMES[self.train.regime]

    @property
    def trains_reader(self) -> bool:
        return self.regime.trains_reader

    @property
    def trains_retriever(self) -> bool:
        return self.regime.trains_retriever


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if origin is typing.Literal:
        return " or ".join(map(repr, typing.get_args(tp)))
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, with only lossless conversions."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        value = _convert(value, str, key)  # same messages as a plain string (e.g. YAML's unquoted no)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise ConfigError(key, f"expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r} ({type(value).__name__})")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. `refresh: 500`
        hint = (
            ' (YAML reads unquoted yes/no/on/off as booleans: write "no" in quotes)' if isinstance(value, bool) else ""
        )
        raise ConfigError(key, f"expected a string, got {value!r} ({type(value).__name__}){hint}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(key, f"unsupported type {tp}")  # pragma: no cover - programming error


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise ConfigError(key, f"unknown key{hint}; known keys here: {', '.join(names)}")
        kwargs[k] = _convert(v, hints[k], key)
    return cls(**kwargs)


# --------------------------------------------------------------------------- validation


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _check_choices(obj: Any, prefix: str) -> None:
    """Every `Literal[...]` field holds one of its values (also for a Config built in code, not from YAML)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if typing.get_origin(hints[f.name]) is typing.Literal:
            _choice(key, value, typing.get_args(hints[f.name]))
        elif dataclasses.is_dataclass(value):
            _check_choices(value, f"{key}.")


def known_trackers() -> list[str]:
    """Every name ``runtime.log_with`` accepts: accelerate's trackers plus any registered with
    ``accelerate.tracking.register_tracker_class``."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def tracker_installed(name: str) -> bool:
    """Whether a tracker's package is importable here (accelerate's ``is_<name>_available``; a registered custom
    tracker has none and counts as installed)."""
    import accelerate.utils as au

    check = getattr(au, f"is_{name}_available", None)
    return True if check is None else bool(check())


def check_trackers(names: list[str] | tuple[str, ...], need_installed: bool = True, key: str = TRACKERS_KEY) -> None:
    """Refuse an unknown tracker name (listing the known ones) and, with `need_installed`, one whose package is
    not installed (with the ``pip install`` that adds it)."""
    known = known_trackers()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                key,
                f"unknown tracker {name!r}{hint}; the trackers are: {', '.join(known)} (or [] for metrics.jsonl only)",
            )
    if need_installed:
        for name in names:
            if not tracker_installed(name):
                pip = TRACKER_PIP_NAMES.get(name, name)
                raise ConfigError(
                    key,
                    f"the {name} tracker needs the {pip} package, which is not installed here: "
                    f"pip install {pip} (or log without it, e.g. --log-with tensorboard)",
                )


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(cfg: Config, check_hardware: bool = False) -> Config:
    """Refuse impossible values, naming the key. `check_hardware` also checks GPUs and devices."""
    t, o, s, r, e = cfg.train, cfg.optim, cfg.signal, cfg.retriever, cfg.eval
    _check_choices(cfg, "")
    _choice("signal.name", s.name, tuple(available_signals()))
    check_monitor_options(cfg.monitor.options)
    check_trackers(cfg.runtime.log_with, need_installed=False)
    for key, value in [
        ("train.steps", t.steps),
        ("train.batch_size", t.batch_size),
        ("train.grad_accum", t.grad_accum),
        ("train.k", t.k),
        ("train.keep_last", t.keep_last),
        ("reader.max_prompt_tokens", cfg.reader.max_prompt_tokens),
        ("reader.max_new_tokens", cfg.reader.max_new_tokens),
        ("retriever.max_length", r.max_length),
        ("index.batch_size", cfg.index.batch_size),
        ("eval.batch_size", e.batch_size),
        ("monitor.instances", cfg.monitor.instances),
    ]:
        _positive(key, value)
    for key, value in [
        ("train.log_every", t.log_every),
        ("train.save_every", t.save_every),
        ("eval.every", e.every),
        ("monitor.every", cfg.monitor.every),
        ("optim.warmup_steps", o.warmup_steps),
        ("optim.lr_reader", o.lr_reader),
        ("optim.lr_retriever", o.lr_retriever),
        ("optim.weight_decay", o.weight_decay),
        ("optim.clip_grad_norm", o.clip_grad_norm),
        ("train.reader_loss_weight", t.reader_loss_weight),
        ("train.retriever_loss_weight", t.retriever_loss_weight),
        ("data.max_train", cfg.data.max_train),
        ("data.max_dev", cfg.data.max_dev),
        ("data.max_test", cfg.data.max_test),
        ("eval.max_generate", e.max_generate),
        ("runtime.gpus", cfg.runtime.gpus),
        ("runtime.threads", cfg.runtime.threads),
        ("data.demo_seed", cfg.data.demo_seed),
    ]:
        _positive(key, value, allow_zero=True)
    _positive("retriever.temperature", r.temperature)
    _positive("runtime.collective_timeout", cfg.runtime.collective_timeout)
    _positive("signal.tau_gold", s.tau_gold)
    _positive("signal.orders", s.orders)
    _positive("optim.eps", o.eps)
    if cfg.data.chunk_words is not None:
        _positive("data.chunk_words", cfg.data.chunk_words)
    if not 0.0 <= o.min_lr_ratio <= 1.0:
        raise ConfigError("optim.min_lr_ratio", f"must lie in [0, 1], got {o.min_lr_ratio}")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError("optim.betas", f"must be two numbers in [0, 1), got {o.betas}")
    if cfg.trains_reader and o.lr_reader == 0:
        raise ConfigError("optim.lr_reader", f"regime '{t.regime}' trains the reader: the learning rate must be > 0")
    if cfg.trains_retriever and o.lr_retriever == 0:
        raise ConfigError(
            "optim.lr_retriever", f"regime '{t.regime}' trains the retriever: the learning rate must be > 0"
        )
    if cfg.regime.reader_loss and cfg.regime.distillation_loss:
        for key, w in (
            ("train.reader_loss_weight", t.reader_loss_weight),
            ("train.retriever_loss_weight", t.retriever_loss_weight),
        ):
            if w == 0:
                raise ConfigError(
                    key,
                    f"regime '{t.regime}' trains both models: the weight must be > 0 "
                    "(use regime 'reader' or 'retriever' to train only one)",
                )
    if o.warmup_steps > t.steps:  # allowed (short smoke runs of long configs), but worth a word
        logging.getLogger(__name__).warning(
            "optim.warmup_steps=%d exceeds train.steps=%d: the learning rate never reaches its peak",
            o.warmup_steps,
            t.steps,
        )
    if not e.ks:
        raise ConfigError("eval.ks", "needs at least one cut-off, e.g. [1, 5, 20]")
    for i, kk in enumerate(e.ks):
        _positive(f"eval.ks[{i}]", kk)
    if s.layers is not None:
        if not s.layers:
            raise ConfigError("signal.layers", "an empty list selects no layer: use null for all layers")
    for name in ("name",):
        if not getattr(cfg.reader, name):
            raise ConfigError("reader.name", "must name a model (smollm2-135m, a Hugging Face id or a path)")
        if not getattr(cfg.retriever, name):
            raise ConfigError("retriever.name", "must name a model (minilm-l6, a Hugging Face id or a path)")
    for key in ("corpus", "train", "dev", "test"):
        if not getattr(cfg.data, key):
            raise ConfigError(f"data.{key}", "must be a file path or 'demo'")
    try:
        RefreshSchedule.parse(cfg.index.refresh)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(
            "index.refresh", f"not a refresh schedule ({exc}); use e.g. '500' or '0-100:10,100-1000000:500'"
        ) from exc
    if check_hardware:
        validate_hardware(cfg)
    return cfg


def validate_hardware(cfg: Config) -> None:
    """Checks that depend on the machine: GPUs asked for must exist, trackers asked for must be installed."""
    import torch

    check_trackers(cfg.runtime.log_with)

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cfg.runtime.device == "cuda" and available == 0:
        raise ConfigError("runtime.device", "'cuda' asked for but no CUDA GPU is visible (use 'auto' or 'cpu')")
    if cfg.runtime.gpus > available:
        raise ConfigError(
            "runtime.gpus", f"{cfg.runtime.gpus} GPU(s) asked for but {available} visible on this machine"
        )
    if cfg.runtime.precision == "fp16" and available == 0 and cfg.runtime.device != "cpu":
        raise ConfigError("runtime.precision", "fp16 needs a CUDA GPU; use 'auto', 'fp32' or 'bf16' on CPU")


# --------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=v` -> (['a', 'b'], v) with v read as YAML (numbers, booleans, lists, null)."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like key.sub=value (e.g. optim.lr_reader=1e-5)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(key or text, "an override must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_path(raw: dict, path: list[str], value: Any) -> None:
    node = raw
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(
                ".".join(path[: i + 1]), f"is a value ({nxt!r}), not a section: cannot set {'.'.join(path)}"
            )
        node = nxt
    node[path[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_dict(raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Apply the dataset section and the overrides to a raw YAML mapping."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("<root>", "the config file must be a mapping of sections (data:, reader:, train:, ...)")
    raw = copy.deepcopy(raw)
    parsed = [parse_override(o) for o in overrides]
    for path, value in parsed:  # overrides inside the dataset sections apply before the merge
        if path[0] == "datasets":
            _set_path(raw, path, value)
    datasets = raw.pop("datasets", None)
    dataset = raw.get("dataset", "demo")
    for path, value in parsed:
        if path == ["dataset"]:
            dataset = value
    if datasets is not None:
        if not isinstance(datasets, dict):
            raise ConfigError("datasets", "must map dataset names to sections of overrides")
        if dataset not in datasets:
            raise ConfigError(
                "dataset", f"{dataset!r} has no section under 'datasets' (have: {', '.join(map(str, datasets))})"
            )
        section = datasets[dataset] or {}
        if not isinstance(section, dict):
            raise ConfigError(f"datasets.{dataset}", "must be a mapping of overrides")
        raw = _merge(raw, section)
    for path, value in parsed:
        if path[0] != "datasets":
            _set_path(raw, path, value)
    _migrate_mixed_precision(raw)
    return raw


_LEGACY_PRECISION = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}


def _migrate_mixed_precision(raw: dict) -> None:
    """``runtime.mixed_precision`` (no | fp16 | bf16, before ``runtime.precision``) read as the new key."""
    runtime = raw.get("runtime")
    if not isinstance(runtime, dict) or "mixed_precision" not in runtime:
        return
    old = runtime.pop("mixed_precision")
    if not isinstance(old, str) or old not in _LEGACY_PRECISION:
        raise ConfigError(
            "runtime.mixed_precision",
            f"{old!r} is not one of no, fp16, bf16 (the key is now runtime.precision: auto | fp32 | bf16 | fp16)",
        )
    new = _LEGACY_PRECISION[old]
    if "precision" in runtime and runtime["precision"] != new:
        raise ConfigError(
            "runtime.mixed_precision",
            f"{old!r} contradicts runtime.precision={runtime['precision']!r}: keep only runtime.precision",
        )
    runtime["precision"] = new
    log.info("runtime.mixed_precision=%s read as runtime.precision=%s (the old key is deprecated)", old, new)


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...] = (), check_hardware: bool = False) -> Config:
    """Build and validate a Config from a mapping (as read from YAML) plus overrides."""
    return validate(_build(Config, resolve_dict(raw, overrides), ""), check_hardware=check_hardware)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_hardware: bool = False) -> Config:
    """Read a YAML config, merge its dataset section, apply `--set` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InputError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", path, None if line is None else line + 1
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", path) from exc
    try:
        return config_from_dict(raw if raw is not None else {}, overrides, check_hardware=check_hardware)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{str(exc).split(': ', 1)[1]} (in {path})") from None

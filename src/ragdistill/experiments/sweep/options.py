"""What `ragdistill validate-indicators` was asked for, and the sweep YAML (every key checked)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragdistill.errors import ConfigError, InputError
from ragdistill.utils.ig_rule import DEFAULT_MAX_STEPS as IG_MAX_STEPS
from ragdistill.utils.ig_rule import DEFAULT_STEPS as IG_STEPS
from ragdistill.utils.ig_rule import DEFAULT_TOLERANCE as IG_TOLERANCE
from ragdistill.utils.ig_rule import check_ig_options

#: seconds one perplexity-teacher analysis takes on the idle 2-core CPU (demo world, fine-tuned SmolLM2, adaptive IG)
SWEEP_PERPLEXITY_INSTANCE_S = 131.0


@dataclass
class SweepOptions:
    """Everything `ragdistill validate-indicators` was asked for."""

    out: Path
    config: Path | None = None  # the sweep YAML (default: configs/demo/sweep/sweep.yaml)
    corpus: str | None = None
    questions: str | None = None  # one SQuAD file (split by article) or, with --corpus, train = test = it
    questions_train: str | None = None
    questions_dev: str | None = None
    questions_test: str | None = None
    split_by_article: bool = False
    teachers: list[str] = field(default_factory=list)  # extra teachers: reader names or paths
    only: list[str] | None = None  # run only these teachers (names)
    overrides: list[str] = field(default_factory=list)  # --set on every training config
    reader: str | None = None  # decoder reader instead of the configs'
    fid_reader: str | None = None  # FiD reader instead of the configs'
    retriever: str | None = None  # initial retriever instead of the configs'
    n: int | None = None  # analysed instances (default: the sweep config's)
    seed: int | None = None  # analysis sample seed (default: the sweep config's)
    resamples: int | None = None  # bootstrap resamples (default: the sweep config's)
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


SWEEP_KEYS = {
    "name",
    "configs",
    "snapshots",
    "degraded",
    "teachers",
    "analysis",
    "verdict",
    "bootstrap",
    "step1_overrides",
    "step2_overrides",
    "fid_overrides",
    "estimate",
}
SECTION_KEYS = {
    "configs": {"step1", "step2", "fid", "perplexity"},
    "degraded": {"from", "layers", "reinit_top", "reinit_seed", "orders"},
    "analysis": {"n", "seed", "ig_steps", "ig_tolerance", "ig_max_steps"},
    "verdict": {"attention_measure", "percentile", "corr_threshold"},
    "bootstrap": {"resamples", "seed"},
    "estimate": {
        "reader_step_s",
        "retriever_step_s",
        "fid_step_s",
        "refresh_s",
        "eval_question_s",
        "retrieve_question_s",
        "analysis_instance_s",
        "perplexity_instance_s",
    },
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
    cfg = {
        "name": raw.get("name", path.stem),
        "path": str(path),
        "configs_dir": str(path.parent.parent)
        if path.parent.name == "sweep"
        else str(default_config_path().parent.parent),
    }
    cfg["configs"] = {
        "step1": "finetuned_step1.yaml",
        "step2": "finetuned_step2.yaml",
        "fid": "encdec_distill.yaml",
        "perplexity": "perplexity_distill.yaml",
        **(raw.get("configs") or {}),
    }
    snaps = raw.get("snapshots", [0.125, 0.25, 0.5, 1.0])
    if not isinstance(snaps, list) or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in snaps):
        raise ConfigError("snapshots", f"a list of shares of the step-1 budget in (0, 1], got {snaps!r}")
    cfg["snapshots"] = [float(f) for f in snaps]
    cfg["degraded"] = {
        "from": 1.0,
        "layers": [-1],
        "reinit_top": 2,
        "reinit_seed": 0,
        "orders": 4,
        **(raw.get("degraded") or {}),
    }
    if cfg["degraded"]["orders"] < 1:
        raise ConfigError("degraded.orders", "must be at least 1")
    if cfg["degraded"]["reinit_top"] < 1:
        raise ConfigError("degraded.reinit_top", "must be at least 1")
    cfg["teachers"] = list(raw.get("teachers") or [])
    cfg["analysis"] = {
        "n": 50,
        "seed": 0,
        "ig_steps": IG_STEPS,
        "ig_tolerance": IG_TOLERANCE,
        "ig_max_steps": IG_MAX_STEPS,
        **(raw.get("analysis") or {}),
    }
    check_ig_options(
        cfg["analysis"]["ig_steps"],
        cfg["analysis"]["ig_tolerance"],
        cfg["analysis"]["ig_max_steps"],
        prefix="analysis.ig_",
    )
    cfg["verdict"] = {
        "attention_measure": "auto",
        "percentile": 95,
        "corr_threshold": 0.3,
        **(raw.get("verdict") or {}),
    }
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
    cfg["estimate"] = {**default_unit_costs(), **(raw.get("estimate") or {})}
    return cfg


def default_unit_costs() -> dict[str, float]:
    """The dry run's seconds per unit of work: the measured CPU costs of `experiments.estimate` (one source)."""
    from ragdistill.experiments import estimate as e

    return {
        "reader_step_s": e.CPU_STEP_S_PER_QUESTION[("decoder", "reader", "attention")],
        "retriever_step_s": e.CPU_STEP_S_PER_QUESTION[("decoder", "retriever", "attention")],
        "fid_step_s": e.CPU_STEP_S_PER_QUESTION[("fid", "reader", "attention")],
        "refresh_s": e.CPU_REFRESH_S_PER_PASSAGE * 1000,  # per 1,000 passages
        "eval_question_s": e.CPU_ANSWER_S["decoder"],
        "retrieve_question_s": e.CPU_RETRIEVE_S_PER_QUESTION,
        "analysis_instance_s": e.CPU_ANALYSIS_S["attention"]["decoder"],
        # the sweep's perplexity teacher is the fine-tuned step-1 reader: its IG paths need more nodes than the
        # off-the-shelf reader's (CPU_ANALYSIS_S, 83 s); 6,564 s for 50 instances, 2026-12-03
        "perplexity_instance_s": SWEEP_PERPLEXITY_INSTANCE_S,
    }

"""What a checkpoint of a run carries, and putting it back: weights of the models that train, optimiser,
scheduler, RNG states, progress (`RunState`), the monitor's history and the weights the index was built with."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragdistill.errors import ConfigError
from ragdistill.training import checkpoint as ckpt
from ragdistill.training.optim import load_scheduler_state, scheduler_state
from ragdistill.training.rng import restore_rng, rng_state, rng_state_json

log = logging.getLogger(__name__)

MONITOR_FIELDS = ("history", "failed_streak", "reference")


@dataclass
class RunState:
    """Everything about progress that a checkpoint must carry (JSON)."""

    step: int = 0
    index_step: int = 0
    skipped_steps: int = 0
    refreshes: int = 0
    examples: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    last_eval: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None


def monitor_state(monitor) -> dict[str, Any] | None:
    if monitor is None:
        return None
    out = {k: getattr(monitor, k) for k in MONITOR_FIELDS if hasattr(monitor, k)}
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        return None
    return out


def save(trainer) -> Path:
    """Write the trainer's checkpoint for its current step (main process only)."""
    cfg, regime = trainer.cfg, trainer.regime
    modules = {}
    if regime.trains_reader:
        modules["reader"] = trainer.reader.model
    if regime.trains_retriever:
        modules["retriever"] = trainer.retriever
    tensors = {}
    if regime.trains_retriever and trainer.indexing.snapshot is not None:
        tensors["index_passage_encoder"] = trainer.indexing.snapshot
    state = asdict(trainer.state)
    state.update(rng=rng_state_json(), world_size=trainer.dist.world_size, config_sha256=cfg.fingerprint())
    mon = monitor_state(trainer.monitor)
    if mon is not None:
        state["monitor"] = mon
    return ckpt.save_checkpoint(
        trainer.ckpt_root,
        trainer.state.step,
        modules=modules,
        tensors=tensors,
        objects={
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": scheduler_state(trainer.scheduler),
            "rng": rng_state(),
        },
        state=state,
        keep_last=cfg.train.keep_last,
    )


def restore(trainer, path: Path) -> None:
    """Load checkpoint `path`, which `latest_complete` has just verified file by file (no second hashing)."""
    regime = trainer.regime
    state = ckpt.read_state(path, verified=True)
    if state.get("world_size", 1) != trainer.dist.world_size:
        raise ConfigError(
            "runtime",
            f"checkpoint {path} was written by {state.get('world_size')} processes, now "
            f"{trainer.dist.world_size}: resume with the same number of processes (the data order depends on it)",
        )
    if regime.trains_reader:
        ckpt.load_module(path, "reader", trainer.reader.model, verified=True)
    if regime.trains_retriever:
        ckpt.load_module(path, "retriever", trainer.retriever, verified=True)
    trainer.optimizer.load_state_dict(ckpt.load_object(path, "optimizer", verified=True))
    load_scheduler_state(trainer.scheduler, ckpt.load_object(path, "scheduler", verified=True))
    restore_rng(ckpt.load_object(path, "rng", verified=True), state.get("rng"))
    if trainer.monitor is not None and isinstance(state.get("monitor"), dict):
        for key, value in state["monitor"].items():  # history, streak and reference continue where they were
            setattr(trainer.monitor, key, value)
    known = {f for f in RunState.__dataclass_fields__}
    trainer.state = RunState(**{k: v for k, v in state.items() if k in known})
    if regime.trains_retriever and trainer.state.index_step > 0:
        trainer.indexing.rebuild(trainer.retriever, ckpt.load_tensors(path, "index_passage_encoder", verified=True))
    log.info("resumed from %s (step %d)", path, trainer.state.step)

"""What a finished run leaves for use elsewhere: the trained models' directories and the reader's model card."""

from __future__ import annotations

from typing import Any

from ragdistill.readers.card import write_model_card


def save_models(trainer: Any) -> tuple[str, str]:
    """Save the models the regime trained (`reader/`, `retriever/`, rank 0); returns what the run's summary names.

    A model that did not train is named by its config entry, so the summary always says which model was used."""
    cfg, dist, regime, out = trainer.cfg, trainer.dist, trainer.regime, trainer.out
    reader_path, retriever_path = cfg.reader.name, cfg.retriever.name
    if dist.is_main:
        if regime.trains_reader:
            trainer.reader.save_pretrained(out / "reader")
            reader_path = str(out / "reader")
        if regime.trains_retriever:
            trainer.retriever.save_pretrained(out / "retriever")
            retriever_path = str(out / "retriever")
    dist.barrier()
    return reader_path, retriever_path


def write_reader_card(trainer: Any, final: dict[str, Any]) -> None:
    """The trained reader's README.md: base model, setting, data, steps, final metrics and the last indicators."""
    cfg, regime = trainer.cfg, trainer.regime
    if not (trainer.dist.is_main and regime.trains_reader):
        return
    history = trainer.monitor.history if trainer.monitor is not None else []
    write_model_card(
        trainer.out / "reader",
        base_model=getattr(trainer.reader, "base_model", cfg.reader.name),
        setting=cfg.name,
        data=f"{cfg.data.train} (corpus {cfg.data.corpus})",
        steps=trainer.state.step,
        metrics=final or None,
        indicators=history[-1] if history else None,
        extra={"regime": regime.name, "signal": cfg.signal.name},
    )

"""The loop's evaluation step: HR@k (and EM/F1) on a split with the run's current models and the right index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.evaluation.evaluate import evaluate_questions, write_eval


def evaluate_run(
    trainer: Any,
    split: str | None = None,
    generate: bool | None = None,
    write_dir: Path | None = None,
    desc: str = "eval",
    final: bool = False,
) -> dict[str, Any]:
    """Evaluate `trainer`'s reader and retriever on `split` (default `eval.split`); returns the metrics.

    The index is the training one unless the retriever moved on since it was embedded and a fresh one is wanted
    (`eval.fresh_index`, and always for the `final` evaluation); eval_info.json records which one was read."""
    cfg, st = trainer.cfg, trainer.state
    split = split or cfg.eval.split
    questions = getattr(trainer.data, split)
    if not questions:
        return {}
    generate = cfg.eval.generate if generate is None else generate
    with trainer.phases("eval"):
        trainer.reader.model.eval()
        trainer.retriever.eval()
        try:
            index = trainer.indexing.for_eval(st.step, st.index_step, trainer.retriever, final=final)
            result = evaluate_questions(
                trainer.reader,
                trainer.retriever,
                index,
                questions,
                k=cfg.train.k,
                ks=cfg.eval.ks,
                batch_size=cfg.eval.batch_size,
                match=cfg.eval.match,
                generate=generate,
                progress=trainer.progress and trainer.dist.is_main,
                dist=trainer.dist,
                desc=desc,
                generate_sample=cfg.eval.max_generate,
            )
        finally:
            trainer.reader.model.train(trainer.regime.trains_reader)
            trainer.retriever.train(trainer.regime.trains_retriever)
    if write_dir is not None and trainer.dist.is_main:
        fresh = index is not trainer.indexing.index
        write_eval(
            write_dir,
            result,
            info={
                "split": split,
                "step": st.step,
                "k": cfg.train.k,
                "reader": cfg.reader.name,
                "retriever": cfg.retriever.name,
                "index": {"embedded_at_step": st.step if fresh else st.index_step, "fresh": fresh},
            },
        )
    return result.metrics

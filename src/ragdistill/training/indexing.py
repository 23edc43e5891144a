"""The index a run retrieves from: built (or loaded) at setup, refreshed on the schedule, rebuilt on resume.

It remembers the passage-encoder weights its embeddings were made with (``snapshot``; a checkpoint
stores them so the stale index is rebuilt bit for bit on resume), and keeps the fresh copy an
evaluation embedded with the current weights, which a refresh due at the same step adopts.
"""

from __future__ import annotations

import copy
import logging
from itertools import islice
from typing import Any

import torch

from ragdistill.config import Config
from ragdistill.data.corpus import iter_passages
from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError
from ragdistill.retrieval.index import PassageIndex
from ragdistill.training.distributed import refresh_index

log = logging.getLogger(__name__)


def _weights(retriever) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in retriever.passage_encoder.state_dict().items()}


class TrainingIndex:
    def __init__(self, cfg: Config, dist, phases, progress: bool):
        self.cfg, self.dist, self.phases, self.progress = cfg, dist, phases, progress
        self.index: PassageIndex | None = None
        self.snapshot: dict[str, torch.Tensor] | None = None  # weights the training index was embedded with
        self._fresh: tuple[int, PassageIndex, dict[str, torch.Tensor]] | None = (
            None  # (step, index, weights) of the eval index
        )

    def open(self, retriever, data, out_dir) -> PassageIndex:
        """Load `index.dir`, or build the run's own index under <out>/index (main process) and load it."""
        cfg, dist = self.cfg, self.dist
        k = cfg.train.k
        if cfg.index.dir:
            self.index = PassageIndex.load(cfg.index.dir, retriever=retriever)
            if len(self.index) < k:
                raise ConfigError(
                    "train.k",
                    f"k={k} passages per question, but the index {cfg.index.dir} holds only "
                    f"{len(self.index)}: lower train.k or use a larger corpus",
                )
            return self.index
        index_dir = out_dir / "index"
        if dist.is_main and not (index_dir / "manifest.json").is_file():
            # k larger than the corpus is refused before any embedding is spent (reads at most k passages)
            n = sum(
                1
                for _ in islice(iter_passages(data.corpus, format=data.corpus_format, chunk_words=data.chunk_words), k)
            )
            if n < k:
                raise ConfigError(
                    "train.k",
                    f"k={k} passages per question, but the corpus {data.corpus} holds "
                    f"only {n}: lower train.k or use a larger corpus",
                )
            with self.phases("refresh"):
                PassageIndex.build(
                    iter_passages(data.corpus, format=data.corpus_format, chunk_words=data.chunk_words),
                    retriever,
                    index_dir,
                    faiss_type=cfg.index.faiss_type,
                    batch_size=cfg.index.batch_size,
                    progress=self.progress,
                    corpus_path=data.corpus,
                )
        dist.barrier()
        self.index = PassageIndex.load(index_dir, retriever=retriever)
        return self.index

    def top_k(self, retriever, questions: list[Question]) -> list[list[Passage]]:
        """The top-k passages of each question from the (possibly stale) training index."""
        k = self.cfg.train.k
        out = [[r.passage for r in rs] for rs in self.index.retrieve(retriever, [q.question for q in questions], k)]
        for q, ps in zip(questions, out):
            if len(ps) < k:
                raise ConfigError("train.k", f"the index holds only {len(ps)} passages for '{q.id}', fewer than k={k}")
        return out

    def refresh(self, retriever, index: PassageIndex | None = None) -> dict[str, Any]:
        """Re-embed the corpus with `retriever`'s weights (sharded over processes); the training index remembers them."""
        info = refresh_index(
            index or self.index, retriever, self.dist, batch_size=self.cfg.index.batch_size, progress=self.progress
        )
        if index is None:
            self.snapshot = _weights(retriever)
        return info

    def refresh_at(self, step: int, retriever) -> dict[str, Any]:
        """The scheduled refresh of `step`: adopts the evaluation's fresh index when it was embedded at this step."""
        with self.phases("refresh"):
            if self._fresh is not None and self._fresh[0] == step:
                _, self.index, self.snapshot = self._fresh
                info = {"adopted_eval_index": True}
            else:
                info = self.refresh(retriever)
        self._fresh = None
        return info

    def for_eval(self, step: int, index_step: int, retriever, final: bool = False) -> PassageIndex:
        """The index to evaluate with: the training one, or a fresh one when the retriever moved on.

        Evaluations during training re-embed only with ``eval.fresh_index``; the final evaluation always
        re-embeds when the passage encoder trained since the index was built (as ATLAS re-indexes with the
        final model), so a final HR@k never pairs the final query encoder with stale passage embeddings."""
        fresh_wanted = self.cfg.eval.fresh_index or (final and not self.cfg.retriever.query_only)
        if not (fresh_wanted and self.cfg.trains_retriever) or index_step == step:
            return self.index
        if self._fresh is not None and self._fresh[0] == step:
            return self._fresh[1]  # already embedded with these weights (e.g. final eval after the last dev eval)
        import faiss

        fresh = PassageIndex(
            faiss.clone_index(self.index.index), self.index.store, dict(self.index.manifest), self.index.path
        )
        self.refresh(retriever, index=fresh)  # shares the read-only passage store; the training index is untouched
        # Same weights, same embeddings: a refresh due at this very step can adopt it instead of re-embedding.
        self._fresh = (step, fresh, _weights(retriever))
        return fresh

    def rebuild(self, retriever, snapshot: dict[str, torch.Tensor]) -> None:
        """On resume: re-embed with the weights the checkpointed index was built with (a twin of `retriever`)."""
        twin = copy.deepcopy(retriever)
        twin.passage_encoder.load_state_dict(snapshot)
        with self.phases("refresh"):
            self.refresh(twin)
        del twin

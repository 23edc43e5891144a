"""Training data and batch order: the questions of each split, and which of them step s trains on.

The questions of step s are a function of (seed, s): a fresh seeded permutation per epoch, so a
run resumed from any checkpoint draws exactly the batches an unbroken run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ragdistill.config import Config
from ragdistill.data.demo import write_demo_world
from ragdistill.data.questions import load_questions
from ragdistill.data.types import Question
from ragdistill.errors import ConfigError, InputError


@dataclass
class RunData:
    """Questions of each split and where the corpus is (passages are streamed into the index)."""

    corpus: str
    corpus_format: str | None
    chunk_words: int | None
    train: list[Question]
    dev: list[Question]
    test: list[Question]
    paths: dict[str, str] = field(default_factory=dict)


def resolve_data_paths(cfg: Config, out_dir: Path) -> dict[str, str]:
    """Data paths with ``demo`` replaced by files of the generated demo world (written once)."""
    paths = {k: getattr(cfg.data, k) for k in ("corpus", "train", "dev", "test")}
    if any(v == "demo" for v in paths.values()):
        demo_dir = out_dir / "demo_world"
        written = write_demo_world(demo_dir, seed=cfg.data.demo_seed)
        for k, v in paths.items():
            if v == "demo":
                if k not in written:
                    raise ConfigError(f"data.{k}", f"the demo world has no '{k}' file (it has {', '.join(written)})")
                paths[k] = str(written[k])
    return paths


def load_run_data(cfg: Config, out_dir: Path, dist=None) -> RunData:
    if dist is None or dist.is_main:
        paths = resolve_data_paths(cfg, out_dir)
    if dist is not None and dist.distributed:
        dist.barrier()
        if not dist.is_main:
            paths = resolve_data_paths(cfg, out_dir)  # files exist now: only resolves the names

    def take(split: str, limit: int) -> list[Question]:
        qs = load_questions(paths[split], format=cfg.data.questions_format)
        if split == "train":
            qs = [q for q in qs if q.answers and q.answers[0].strip()]
            if not qs:
                raise InputError("no training question has an answer to train on", paths[split])
        return qs[:limit] if limit else qs

    return RunData(
        corpus=paths["corpus"],
        corpus_format=cfg.data.corpus_format,
        chunk_words=cfg.data.chunk_words,
        train=take("train", cfg.data.max_train),
        dev=take("dev", cfg.data.max_dev),
        test=take("test", cfg.data.max_test),
        paths=paths,
    )


def batch_indices(
    step: int,
    micro: int,
    accum: int,
    per_process: int,
    world: int,
    rank: int,
    n: int,
    seed: int,
    _cache: dict | None = None,
) -> list[int]:
    """Indices of the questions this process trains on at (step, micro-batch).

    Global example g = ((step * accum + micro) * world + rank) * per_process + j walks through
    a seeded random permutation of the n questions per epoch (epoch = g // n), so any step's
    batch is known without replaying the ones before it. With `world` processes of batch b,
    the union of their batches equals a single process's batch of world * b.
    """
    out = []
    base = ((step * accum + micro) * world + rank) * per_process
    for j in range(per_process):
        g = base + j
        epoch, pos = divmod(g, n)
        perm = None if _cache is None else _cache.get(epoch)
        if perm is None:
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen).tolist()
            if _cache is not None:
                _cache.clear()
                _cache[epoch] = perm
        out.append(perm[pos])
    return out

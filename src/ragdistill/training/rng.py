"""Random state per step: the global RNGs are re-seeded from (seed, step, rank) at the start of every step
(dropout is then a function of the step), and their state travels in checkpoints."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1)[0])


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) for one step: dropout is then a function of (seed, step, rank)."""
    s = step_seed(seed, step, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state_json() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(objects: dict[str, Any] | None, js: dict[str, Any] | None) -> None:
    if objects:
        torch.set_rng_state(objects["torch"])
        if "cuda" in objects and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(objects["cuda"])
    if js:
        n = js["numpy"]
        np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
        p = js["python"]
        random.setstate((p[0], tuple(p[1]), p[2]))

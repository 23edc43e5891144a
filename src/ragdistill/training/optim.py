"""Optimiser and learning-rate schedule: Adam/AdamW, constant/linear/cosine with linear warm-up.

The reader and the retriever get separate parameter groups (and so separate learning
rates, as in ATLAS); one schedule multiplies both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ragdistill.config import OptimConfig


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for optimiser step `step` (0-based).

    Warm-up rises linearly to 1 over `warmup_steps` steps, the first step already taking
    1/warmup of the rate (no wasted step at lr 0); then constant, linear or cosine decay to
    `min_lr_ratio` at `total_steps`.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if schedule == "linear":
        decay = 1.0 - progress
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


class _Multiplier:
    """Picklable-free callable for LambdaLR (its state dict then holds only numbers)."""

    def __init__(self, total: int, warmup: int, schedule: str, min_ratio: float):
        self.total, self.warmup, self.schedule, self.min_ratio = total, warmup, schedule, min_ratio

    def __call__(self, step: int) -> float:
        return lr_multiplier(step, self.total, self.warmup, self.schedule, self.min_ratio)


def _fused_ok(params: list[torch.nn.Parameter]) -> bool:
    """torch's fused Adam/AdamW handles these parameters: floating point, all on CPU or all on CUDA."""
    devices = {p.device.type for p in params}
    return (
        len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
        and not any(p.is_sparse for p in params)
    )


def optimizer_impl(impl: str, params: list[torch.nn.Parameter]) -> dict:
    """Keyword arguments selecting the Adam/AdamW kernel: fused, foreach or the per-parameter loop.

    ``auto``: fused where torch has it for the parameters' device (CPU and CUDA in torch >= 2.4),
    else foreach. All three compute the same update (Adam's arithmetic, in float32 for float32
    weights); the fused and foreach kernels only batch it over parameters. On CPU the default
    per-parameter loop spends most of a small model's optimiser step in Python and dispatch.
    """
    if impl == "loop":
        return {"foreach": False}
    if impl == "foreach":
        return {"foreach": True}
    if impl in ("fused", "auto"):
        if _fused_ok(params):
            return {"fused": True}
        if impl == "fused":
            raise ValueError("optim.impl=fused: torch has no fused Adam for these parameters (use auto or foreach)")
        return {"foreach": True}
    raise ValueError(f"unknown optimiser implementation {impl!r}")


def build_optimizer(
    groups: Iterable[tuple[str, list[torch.nn.Parameter], float]], cfg: OptimConfig
) -> torch.optim.Optimizer:
    """One optimiser over named parameter groups `(name, params, lr)`; empty groups are dropped.

    ``cfg.impl`` picks the kernel (`optimizer_impl`)."""
    param_groups = [
        {"params": list(params), "lr": lr, "name": name, "weight_decay": cfg.weight_decay}
        for name, params, lr in groups
        if params
    ]
    if not param_groups:
        raise ValueError("nothing to train: no parameter requires a gradient")
    kwargs = dict(betas=tuple(cfg.betas), eps=cfg.eps)
    kwargs.update(optimizer_impl(getattr(cfg, "impl", "auto"), [p for g in param_groups for p in g["params"]]))
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, **kwargs)
    if cfg.name == "adam":
        return torch.optim.Adam(param_groups, **kwargs)
    raise ValueError(f"unknown optimiser {cfg.name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = _Multiplier(total_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [fn] * len(optimizer.param_groups))


def scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR) -> dict:
    """The scheduler's state with only plain numbers (loadable with weights_only=True)."""
    state = scheduler.state_dict()
    state["lr_lambdas"] = [None] * len(state.get("lr_lambdas", []))
    return state


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    state = dict(state)
    state.pop("lr_lambdas", None)
    scheduler.__dict__.update({k: v for k, v in state.items()})

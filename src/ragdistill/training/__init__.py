"""Training: configs (YAML + overrides + validation), the loop, checkpoints, data parallelism.

    from ragdistill.training import load_config, train
    cfg = load_config("configs/demo/finetuned_step1.yaml", ["train.steps=20"])
    summary = train(cfg, "runs/step1")           # -> runs/step1/{reader,config.yaml,metrics.jsonl,eval,...}

Names are imported lazily so that reading a config does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Config", "load_config", "config_from_dict", "validate", "train", "Trainer", "latest_complete",
           "save_checkpoint", "verify_checkpoint"]

_WHERE = {
    "Config": "config", "load_config": "config", "config_from_dict": "config", "validate": "config",
    "train": "loop", "Trainer": "loop",
    "latest_complete": "checkpoint", "save_checkpoint": "checkpoint", "verify_checkpoint": "checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"ragdistill.training.{_WHERE[name]}"), name)
    raise AttributeError(name)

"""Training: the loop, checkpoints, data parallelism (the config schema lives in :mod:`ragdistill.config`).

from ragdistill.training import load_config, train
cfg = load_config("configs/demo/finetuned_step1.yaml", ["train.steps=20"])
summary = train(cfg, "runs/step1")           # -> runs/step1/{reader,config.yaml,metrics.jsonl,eval,...}
"""

from __future__ import annotations

from ragdistill.config import Config, config_from_dict, load_config, validate
from ragdistill.training.checkpoint import latest_complete, save_checkpoint, verify_checkpoint
from ragdistill.training.loop import Trainer, train

__all__ = [
    "Config",
    "load_config",
    "config_from_dict",
    "validate",
    "train",
    "Trainer",
    "latest_complete",
    "save_checkpoint",
    "verify_checkpoint",
]

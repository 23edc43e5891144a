"""Seeding and device choice, so runs repeat."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def default_device(requested: str | None = None) -> torch.device:
    """`requested` if given ('cpu', 'cuda', 'cuda:1'), else (None or "auto", as configs say) CUDA when present, else CPU."""
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

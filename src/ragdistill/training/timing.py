"""Wall time per phase of a step, and peak memory."""

from __future__ import annotations

import contextlib
import resource
import time

import torch

PHASES = ("refresh", "retrieve", "reader", "signal", "retriever", "backward", "optim", "eval", "save")


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory of this process: CUDA max_memory_allocated on GPU, max RSS otherwise."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Phases:
    """Accumulates wall time per phase (synchronising CUDA so GPU work lands in its phase)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {p: 0.0 for p in PHASES}

    @contextlib.contextmanager
    def __call__(self, name: str):
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - t0

    def take(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds = {p: 0.0 for p in PHASES}
        return out

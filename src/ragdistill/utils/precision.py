"""Numeric precision of the forward passes: ``fp32``, ``bf16`` / ``fp16`` autocast, or ``auto``.

Autocast only: master weights, gradients and optimiser state stay in the weights' dtype
(float32 unless ``reader.dtype`` says otherwise); matmuls and convolutions inside the
autocast region run in the low-precision dtype, reductions and softmax in float32.

``auto`` picks bf16 where the hardware runs it natively -- a CUDA GPU with
``torch.cuda.is_bf16_supported()``, or a CPU with AVX512-BF16 / AMX-BF16 (oneDNN's bf16
kernels) -- and fp32 everywhere else: on a CPU without those instructions bf16 matmuls are
emulated and many times *slower* than fp32 (measured 20x on an AVX2-only EPYC), so ``auto``
never chooses it there.
"""

from __future__ import annotations

import functools
import logging
from contextlib import nullcontext
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_bf16_native() -> bool:
    """True when this CPU has native bf16 matmul instructions (AVX512-BF16 or AMX-BF16)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        try:
            if not bool(probe()):
                return False
        except Exception:  # noqa: BLE001 - an old/odd build: fall back to the CPU flags
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def bf16_supported(device: torch.device | str) -> bool:
    """True when bf16 runs natively (fast) on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_bf16_native()
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision actually used on `device`: 'fp32', 'bf16' or 'fp16' ('auto' resolved)."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISION_CHOICES)}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        log.warning("precision fp16 needs a CUDA GPU: running the forward passes in fp32 on %s", device.type)
        return "fp32"
    if precision == "bf16" and not bf16_supported(device):
        log.warning(
            "precision bf16 asked for on a %s without native bf16: it is emulated and likely slower "
            "than fp32 (use precision: auto)",
            device.type,
        )
    return precision


def autocast(precision: str, device: torch.device | str):
    """A ``torch.autocast`` context for a *resolved* precision (``nullcontext`` for fp32)."""
    if precision in (None, "fp32", "no"):
        return nullcontext()
    device = torch.device(device)
    return torch.autocast(device.type, dtype=_DTYPES[precision])

"""ragdistill: retrieval-augmented LMs whose retriever learns from the reader's attention.

    from ragdistill import diagnose
    report = diagnose(reader="smollm2-135m", questions="dev.jsonl", corpus="corpus.jsonl")
    print(report.verdict, report.answer_lift)

Attributes are imported on first use, so ``import ragdistill`` stays cheap (no torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"diagnose": "ragdistill.analysis.api", "Diagnosis": "ragdistill.analysis.api"}
__all__ = ["Diagnosis", "__version__", "diagnose"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ragdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

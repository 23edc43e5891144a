"""Shared pieces of the reliability suite: a CLI runner, case counts, the hypothesis profile.

The tiny models and world come from tests/conftest.py: 2-layer random transformers saved with ``save_pretrained`` and loaded by path,
so every code path (transformers loading, prompts, FAISS, checkpoints) is the real one while
the arithmetic takes milliseconds. Hypothesis runs a fixed, derandomised number of examples
(profile ``reliability``), so CI is repeatable; ``HYPOTHESIS_PROFILE=reliability-long`` runs more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]

settings.register_profile(
    "reliability",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
settings.register_profile("reliability-long", parent=settings.get_profile("reliability"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reliability"))

# Counts reported at the end of the session (see pytest_terminal_summary below).
COUNTS: dict[str, int] = {}


def count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n


def note(key: str, text: str) -> None:
    """A measured value shown with the counts (e.g. "RSS growth measured: 3.1 MB over 2000 steps")."""
    COUNTS[key] = text  # type: ignore[assignment]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m ragdistill ARGS` in a fresh process (1 torch thread, so runs repeat bit for bit)."""
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONHASHSEED": "0",
        **(env or {}),
    }
    full_env.pop("RAGDISTILL_FAULT", None) if not env or "RAGDISTILL_FAULT" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "ragdistill", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    if COUNTS:
        terminalreporter.write_sep("-", "reliability counts")
        for k in sorted(COUNTS):
            terminalreporter.write_line(f"{k}: {COUNTS[k]}")

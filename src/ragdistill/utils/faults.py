"""Fault injection for reliability tests: die (or get interrupted) at a named point, on purpose.

Long runs must survive being killed anywhere. To test that deterministically, code that
writes state calls ``maybe_fault("point")`` at its risky moments; nothing happens unless
the environment variable ``RAGDISTILL_FAULT`` names that point::

    RAGDISTILL_FAULT=checkpoint_write:2          # SIGKILL this process the 2nd time it reaches checkpoint_write
    RAGDISTILL_FAULT=step:3:SIGINT               # send itself SIGINT (Ctrl-C) at the 3rd step instead
    RAGDISTILL_FAULT=step:5,index_refresh:1      # several points, comma-separated (the first to fire wins)

Points used by the package:

* ``step`` — inside a training step, after the backward pass and before the optimiser step;
* ``checkpoint_write`` — while a checkpoint directory is being written (weights on disk, no manifest yet);
* ``index_refresh`` — while the index is being re-embedded (new embeddings computed, not yet installed).

``RAGDISTILL_FAULT_RANK=1`` fires the faults in that process of a multi-process run only (env RANK);
``RAGDISTILL_FAULT_DELAY=step=0.5`` sleeps that many seconds at every hit of a point (slow steps, for tests of
locks and time limits that need a run to stay alive without using the CPU).

The check is one dictionary lookup when the variable is unset, so the calls can stay in
production code.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "RAGDISTILL_FAULT"
POINTS = ("step", "checkpoint_write", "index_refresh")
_hits: dict[str, int] = {}


def parse(spec: str) -> dict[str, tuple[int, signal.Signals]]:
    """``"a:2,b:1:SIGINT"`` -> {"a": (2, SIGKILL), "b": (1, SIGINT)}; malformed items raise ValueError."""
    out: dict[str, tuple[int, signal.Signals]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"{ENV}: bad item {item!r}; expected point[:n[:SIGNAL]]")
        n = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        if n < 1:
            raise ValueError(f"{ENV}: the hit count in {item!r} must be >= 1")
        sig = signal.Signals[parts[2].upper()] if len(parts) > 2 else signal.SIGKILL
        out[parts[0]] = (n, sig)
    return out


def maybe_fault(point: str) -> None:
    """Send this process the configured signal when `point` is reached for the configured time."""
    delay = os.environ.get(ENV + "_DELAY")
    if delay:
        for item in delay.split(","):
            name, _, seconds = item.partition("=")
            if name.strip() == point:
                time.sleep(float(seconds))
    spec = os.environ.get(ENV)
    if not spec:
        return
    rank = os.environ.get(ENV + "_RANK")
    if rank is not None and os.environ.get("RANK", "0") != rank.strip():
        return
    plan = parse(spec)
    if point not in plan:
        return
    _hits[point] = _hits.get(point, 0) + 1
    n, sig = plan[point]
    if _hits[point] == n:
        os.kill(os.getpid(), sig)


def reset() -> None:
    """Forget the hit counts (tests that inject faults in-process call this between runs)."""
    _hits.clear()

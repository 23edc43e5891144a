"""Stopping on request: a signal or the --max-time budget asks the loop to save a checkpoint after the current
step and stop, with an exit status that says why (a scheduler's wrapper script can requeue on it).

    SIGINT  (Ctrl-C)                  -> exit 130 (128 + 2); a second Ctrl-C aborts at once
    SIGTERM (SLURM, Kubernetes, ...)  -> exit 143 (128 + 15); further SIGTERMs are ignored while saving
    SIGUSR1 (SLURM's --signal=USR1@N) -> exit 138 (128 + 10)
    --max-time reached                -> exit 75  (EX_TEMPFAIL: "try again", i.e. --resume)

The bound: the stop is taken at the end of the step in progress (its evaluation, if one was due, included),
then one checkpoint is written. `--max-time` estimates that cost as the longest step seen so far plus the
longest checkpoint write seen so far, and stops when the next step would not fit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal as _signal
import time

log = logging.getLogger(__name__)

EXIT_MAX_TIME = 75
EXIT_CODES = {"interrupted": 130, "terminated": 143, "SIGUSR1": 138, "max-time": EXIT_MAX_TIME}
_REASONS = {_signal.SIGINT: "interrupted", _signal.SIGTERM: "terminated", _signal.SIGUSR1: "SIGUSR1"}
_clock = time.monotonic  # tests replace it


class RunStopped(KeyboardInterrupt):
    """A run stopped on request after saving a checkpoint (`exit_code` as in EXIT_CODES). Subclasses
    KeyboardInterrupt so code that lets Ctrl-C through lets it through too."""

    def __init__(self, reason: str, step: int | None = None):
        self.reason, self.step = reason, step
        self.exit_code = EXIT_CODES.get(reason, 130)
        super().__init__(reason)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``3h50m``, ``90m``, ``1h``, ``45s``, ``1d2h``, ``01:30:00``, ``5400`` or ``5400.5``."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", s):
            value = float(s)
        elif re.fullmatch(r"\d+(:\d{1,2}){1,2}", s):
            value = 0.0
            for part in s.split(":"):
                value = value * 60 + int(part)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", s)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([dhms])", "", s).strip():
                raise ValueError(f"{text!r} is not a duration (examples: 3h50m, 90m, 5400, 01:30:00)")
            value = sum(float(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if value <= 0:
        raise ValueError(f"{text!r}: the duration must be positive")
    return value


class StopRequest:
    """Set by SIGINT / SIGTERM / SIGUSR1 or by the deadline (a `_clock()` value, see `time_is_up`)."""

    def __init__(self, deadline: float | None = None) -> None:
        self.reason: str | None = None
        self.deadline = deadline
        self.step_s = 0.0  # the longest loop iteration seen
        self.save_s = 0.0  # the longest checkpoint write seen

    @contextlib.contextmanager
    def installed(self, enabled: bool = True):
        """Handle the signals inside the block (main thread only), restoring the old handlers after."""
        old = {}
        if enabled:
            for sig in _REASONS:
                with contextlib.suppress(ValueError, OSError):  # not in the main thread
                    old[sig] = _signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in old.items():
                _signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:  # pragma: no cover - exercised by the CLI
        reason = _REASONS.get(signum, "interrupted")
        if self.reason:
            if signum == _signal.SIGINT and self.reason == "interrupted":
                raise KeyboardInterrupt
            log.warning("%s received again: still saving the checkpoint", _signal.Signals(signum).name)
            return
        self.reason = reason
        name = _signal.Signals(signum).name
        extra = " (press Ctrl-C again to abort now)" if signum == _signal.SIGINT else ""
        log.warning(
            "%s received: saving a checkpoint after this step, then exiting with status %d%s",
            name,
            EXIT_CODES[reason],
            extra,
        )

    def reason_now(self) -> str | None:
        """Why to stop at once (between two instances of a long analysis): a signal's reason, or "max-time" once
        the deadline itself has passed (`time_is_up` instead asks whether the next step would still fit)."""
        if not self.reason and self.deadline is not None and _clock() >= self.deadline:
            self.reason = "max-time"
        return self.reason

    # ------------------------------------------------------------------ the time budget
    def observe_step(self, seconds: float) -> None:
        self.step_s = max(self.step_s, seconds)

    def observe_save(self, seconds: float) -> None:
        self.save_s = max(self.save_s, seconds)

    def time_is_up(self) -> bool:
        """True when one more step and a checkpoint would not fit before the deadline (sets reason)."""
        if self.deadline is None or self.reason:
            return bool(self.reason == "max-time")
        left = self.deadline - _clock()
        need = self.step_s + (self.save_s or self.step_s)
        if left < need:
            self.reason = "max-time"
            log.warning(
                "--max-time: %.0f s left, the next step and a checkpoint need about %.0f s: stopping now",
                max(0.0, left),
                need,
            )
            return True
        return False

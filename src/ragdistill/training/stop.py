"""Stopping on request: a signal asks the loop to save a checkpoint after the current step and stop."""

from __future__ import annotations

import contextlib
import logging
import signal as _signal

log = logging.getLogger(__name__)


class StopRequest:
    """Set by SIGINT (Ctrl-C); a second SIGINT aborts at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @contextlib.contextmanager
    def installed(self, enabled: bool = True):
        """Handle SIGINT inside the block (main thread of the main process only), restoring the old handler after."""
        old = None
        if enabled:
            with contextlib.suppress(ValueError):  # not in the main thread
                old = _signal.signal(_signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            if old is not None:
                _signal.signal(_signal.SIGINT, old)

    def _handle(self, signum, frame) -> None:  # pragma: no cover - exercised by the CLI
        if self.reason:
            raise KeyboardInterrupt
        self.reason = "interrupted"
        log.warning("interrupt received: saving a checkpoint after this step (press Ctrl-C again to abort now)")

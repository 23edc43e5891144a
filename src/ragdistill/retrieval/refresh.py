"""When to re-embed the knowledge base during retriever training (ATLAS's schedule syntax).

ATLAS (``--refresh_index``) writes a schedule as comma-separated pieces
``START-END:EVERY``: within steps ``START <= step < END`` the index is refreshed when
``(step - START) % EVERY == 0``. ``"0-100:10,100-1000000:500"`` refreshes every 10
steps for the first 100 steps, then every 500. A plain number ``"500"`` means every
500 steps from step 0 on, and ``"-1"`` (or ``"never"``) means only at step 0 (the
initial build), as in ATLAS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ragdistill.errors import ConfigError

log = logging.getLogger(__name__)

_FOREVER = 2**62


@dataclass(frozen=True)
class RefreshSchedule:
    """Parsed refresh schedule: a tuple of (start, end, every) ranges, end exclusive."""

    ranges: tuple[tuple[int, int, int], ...]
    spec: str = ""

    @classmethod
    def parse(cls, spec: str | int | RefreshSchedule, key: str = "refresh_schedule") -> RefreshSchedule:
        """Parse ``"0-100:10,100-1000000:500"``, ``"500"``, ``500`` or ``"-1"``/``"never"``.

        Errors are `ConfigError`s naming `key` and the offending piece of the spec.
        """
        if isinstance(spec, RefreshSchedule):
            return spec
        if isinstance(spec, bool) or not isinstance(spec, (int, str)):
            raise ConfigError(
                key, f"refresh schedule must be a number or a string like '0-100:10,100-1000000:500', got {spec!r}"
            )
        text = str(spec).strip()
        if text.lower() in ("-1", "never", "none"):
            return cls(((0, _FOREVER, _FOREVER),), text)
        if text.lstrip("+").isdigit():
            every = int(text)
            if every <= 0:
                raise ConfigError(
                    key, f"refresh every {every} steps is not possible: use a positive number, or -1 for never"
                )
            return cls(((0, _FOREVER, every),), text)
        ranges: list[tuple[int, int, int]] = []
        for piece in text.split(","):
            piece = piece.strip()
            try:
                startend, every_s = piece.split(":")
                start_s, end_s = startend.split("-")
                start, end, every = int(start_s), int(end_s), int(every_s)
            except ValueError:
                raise ConfigError(
                    key,
                    f"cannot parse '{piece}' in schedule '{text}': write START-END:EVERY pieces separated by commas, "
                    "e.g. '0-100:10,100-1000000:500', or a plain number of steps",
                ) from None
            if start < 0 or end <= start:
                raise ConfigError(key, f"range '{piece}' in schedule '{text}' needs 0 <= START < END")
            if every <= 0:
                raise ConfigError(key, f"range '{piece}' in schedule '{text}' needs EVERY >= 1")
            ranges.append((start, end, every))
        ranges.sort()
        for (s0, e0, _), (s1, _, _) in zip(ranges, ranges[1:]):
            if s1 < e0:
                raise ConfigError(key, f"ranges of schedule '{text}' overlap: {s0}-{e0} and one starting at {s1}")
        return cls(tuple(ranges), text)

    def is_due(self, step: int) -> bool:
        """True when the index should be refreshed at training step `step`."""
        if step < 0:
            raise ConfigError("step", f"training steps start at 0, got {step}")
        for start, end, every in self.ranges:
            if start <= step < end:
                return (step - start) % every == 0
        return False

    def due_steps(self, until: int) -> list[int]:
        """All due steps in [0, until): handy for logging a run's plan."""
        steps: list[int] = []
        for start, end, every in self.ranges:
            steps.extend(range(start, min(end, until), every))
        return steps

    def __str__(self) -> str:
        return self.spec or ",".join(f"{s}-{e}:{r}" for s, e, r in self.ranges)

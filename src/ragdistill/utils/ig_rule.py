"""The integrated-gradients rule of the perplexity-signal analysis: its defaults and their checks (no torch).

``ragdistill.analysis.perplexity`` computes the gains; the CLI (``ragdistill analyze``/``diagnose``/
``reproduce``), ``ragdistill.diagnose`` and the sweep take their defaults from here:

* ``steps=None`` (default): the adaptive trapezoid rule, refined until the instance's completeness
  error |Σ_t g_t − ΔS| / |ΔS| is bounded by ``tolerance`` (default 0.05) or a passage has
  ``max_steps`` gradient evaluations (default 128);
* ``steps=N``: a fixed N-point midpoint rule (``--ig-steps N``), its error recorded, not controlled.
"""

from __future__ import annotations

from ragdistill.errors import ConfigError

DEFAULT_STEPS: int | None = None
DEFAULT_TOLERANCE = 0.05
DEFAULT_MAX_STEPS = 128
#: equal intervals of the adaptive rule's first grid (INITIAL_INTERVALS + 1 nodes, both ends included)
INITIAL_INTERVALS = 4


def check_ig_options(steps: int | None, tolerance: float, max_steps: int, prefix: str = "ig-") -> None:
    """ConfigError naming the option when the rule is not one the analysis can run."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(
            f"{prefix}steps", f"must be a whole number of at least 1 (or unset: the adaptive rule), got {steps!r}"
        )
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance < 1:
        raise ConfigError(f"{prefix}tolerance", f"must be a number in (0, 1), got {tolerance!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < INITIAL_INTERVALS + 1:
        raise ConfigError(
            f"{prefix}max-steps",
            f"must be a whole number of at least {INITIAL_INTERVALS + 1} (the adaptive "
            f"rule's first grid), got {max_steps!r}",
        )

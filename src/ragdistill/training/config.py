"""Moved to :mod:`ragdistill.config` (the run configuration every stage reads); kept importable for old callers."""

from ragdistill.config import *  # noqa: F401,F403
from ragdistill.config import (  # noqa: F401 - private names some callers use
    REGIMES,
    Config,
    Regime,
    config_from_dict,
    load_config,
    parse_override,
    resolve_dict,
    validate,
    validate_hardware,
)

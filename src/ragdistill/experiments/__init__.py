"""The study end to end: its settings table, the reproduce plan and runner, and the study report.

    from ragdistill.experiments import Options, build_plan, format_plan, reproduce
    print(format_plan(build_plan(Options(out="runs/paper", scale="paper"))))   # the paper-scale plan
    reproduce(Options(out="runs/demo"))                                          # the demo, with report.md
"""

from ragdistill.experiments.reproduce import (
    DataSpec,
    Options,
    Plan,
    PlannedSetting,
    RunResult,
    build_plan,
    estimate_work,
    format_plan,
    planned_status,
    reproduce,
    run_plan,
)
from ragdistill.experiments.settings import SETTINGS, Setting, get_setting
from ragdistill.experiments.splits import split_squad_by_article

__all__ = [
    "DataSpec",
    "Options",
    "Plan",
    "PlannedSetting",
    "RunResult",
    "SETTINGS",
    "Setting",
    "build_plan",
    "estimate_work",
    "format_plan",
    "get_setting",
    "planned_status",
    "reproduce",
    "run_plan",
    "split_squad_by_article",
]

"""The study end to end: its settings table, the reproduce plan, markers, estimate and runner, and the study report.

    from ragdistill.experiments import Options, build_plan, format_plan, reproduce
    print(format_plan(build_plan(Options(out="runs/paper", scale="paper"))))   # the paper-scale plan
    reproduce(Options(out="runs/demo"))                                          # the demo, with report.md

Modules: ``plan`` (options, data, the plan and its probes, the dry-run text), ``markers`` (the
completion markers, their keys and the reuse decision), ``estimate`` (the dry-run work
estimate), ``runner`` (the runner and `reproduce`), ``settings``, ``splits`` and ``report``.
"""

from ragdistill.experiments.estimate import estimate_work
from ragdistill.experiments.markers import Marker, decide_reuse, read_marker
from ragdistill.experiments.plan import DataSpec, Options, Plan, PlannedSetting, build_plan, format_plan, planned_status
from ragdistill.experiments.runner import RunResult, reproduce, run_plan
from ragdistill.experiments.settings import SETTINGS, Setting, get_setting
from ragdistill.experiments.splits import split_squad_by_article

__all__ = [
    "DataSpec",
    "Marker",
    "Options",
    "Plan",
    "PlannedSetting",
    "RunResult",
    "SETTINGS",
    "Setting",
    "build_plan",
    "decide_reuse",
    "estimate_work",
    "format_plan",
    "get_setting",
    "planned_status",
    "read_marker",
    "reproduce",
    "run_plan",
    "split_squad_by_article",
]

"""`ragdistill validate-indicators`: do the indicators tell a good teacher from a bad one? (issue 18)

Teachers of graded quality are built from the bundled models without a download
(:func:`builtin_teachers`): the off-the-shelf reader; step-1 readers saved at several points of
one reader-only fine-tuning run (its checkpoints, exported as readers); readers degraded on
purpose (attention from a subset of layers, top layers re-initialised with a seed, value-norm
weighting off, the perplexity signal, the position-debiased signal); the offline FiD reader
before and after it is fitted. ``--teachers`` adds any reader by name or path.

For each teacher, on the SAME analysed instances (same questions and passages, retrieved by the
initial retriever): the indicators' inputs (mean attention, lift and Spearman on answer- and
question-related tokens, p90 and p95, per instance) and two simple predictors (ranking skill,
position bias, :mod:`ragdistill.experiments.sweep.stats`); then the outcome of distilling from
it: one identical step-2 run (regime retriever; same initial retriever, steps, seed and
questions) whose test HR@1/HR@5 is compared with the initial retriever's, paired over the
questions (exact McNemar). The report (:mod:`ragdistill.experiments.sweep.report`) correlates
every input with ΔHR@5 across teachers and keeps the decision rule's record.

Layout of ``OUT``: ``data/`` (demo world or split files), ``<dataset>/index-*`` (the initial
index), ``<dataset>/baseline`` (the initial retriever's test evaluation),
``<dataset>/sources/{step1,fid_fit,reinit-*}`` (the runs teachers are made from),
``<dataset>/teachers/<name>/{analysis,step2}``, and ``report.md``, ``report.json``, ``figures/``.
Every finished unit leaves ``sweep.json`` with a key over its config; a rerun reuses it while the
key is unchanged (``--force`` redoes everything).

Modules, in the order a sweep runs: ``options`` (SweepOptions, the sweep YAML), ``teachers``,
``markers`` (``sweep.json``), ``plan`` (the plan, unit keys, per-teacher configs, dry-run text),
``estimate``, ``runner`` (``run_sweep``), ``stats`` (the numbers that need no model), ``report``.
"""

from __future__ import annotations

from ragdistill.experiments.sweep.options import SweepOptions, default_config_path, load_sweep_config
from ragdistill.experiments.sweep.plan import SweepPlan, build_sweep_plan, format_sweep_plan, teacher_step2_config
from ragdistill.experiments.sweep.runner import measures_to_inputs, run_sweep
from ragdistill.experiments.sweep.teachers import (
    Teacher,
    builtin_teachers,
    decoder_layers,
    extra_teacher,
    reference_of,
    reinit_top_layers,
    select_teachers,
)

__all__ = [
    "SweepOptions",
    "SweepPlan",
    "Teacher",
    "build_sweep_plan",
    "builtin_teachers",
    "decoder_layers",
    "default_config_path",
    "extra_teacher",
    "format_sweep_plan",
    "load_sweep_config",
    "measures_to_inputs",
    "reference_of",
    "reinit_top_layers",
    "run_sweep",
    "select_teachers",
    "teacher_step2_config",
]

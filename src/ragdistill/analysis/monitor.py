"""Training monitor: the two indicators on a fixed probe set every N steps, and an early stop for poor teachers.

The training loop calls::

    monitor = IndicatorMonitor(probe_questions, index=index, retriever=retriever, every=500, patience=3,
                               reference="first")
    ...
    if monitor.is_due(step):
        logger.log(monitor.check(reader, step, retriever=retriever, index=index), step)  # flat floats
        if stop_if_poor and monitor.should_stop():
            print(monitor.stop_message()); break

What "fails" means, per check (`reference`):

* ``None`` (default): no comparison; the absolute rule — a group fails when its mean Spearman
  (p95) is not above ``corr_threshold`` or its mean lift is not above 1. Safe for every
  setting, including a fixed reader (step 2);
* ``"first"``: the first check's summary (the reader as training starts, i.e. the
  off-the-shelf checkpoint) is the reference from then on; Indicators 1 and 2 as in
  ``ragdistill analyze``. The first check itself cannot fail (nothing to compare with).
  Use it when the reader trains (off-the-shelf / encoder-decoder / perplexity settings);
* a summary dict (``indicators.json["readers"][name]`` of an earlier analysis).

``should_stop()`` is true once the reader has failed **both** indicators at ``patience``
consecutive checks.

The training loop of ``ragdistill train`` builds it from its config as
``IndicatorMonitor.from_config(cfg, dev_questions, index, retriever, out_dir=..., **cfg.monitor.options)``:
``monitor.every`` checks, ``monitor.instances`` probe questions (a seeded sample of the dev
split), ``train.k`` passages, the config's signal and attention options; ``monitor.options``
may set ``patience`` (3), ``reference`` ("first" when the reader trains, else None),
``corr_threshold``, ``percentile``, ``attention_measure``, ``refresh_passages`` (re-retrieve the
probe passages at every check, from the run's current index), ``prefix``, ``seed``. Each check is
appended to ``out_dir/history.jsonl``. Undefined values (no reference yet, no defined
Spearman) are left out of the returned dict rather than logged as NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragdistill.analysis.indicators import VerdictOptions, summarize, verdict
from ragdistill.analysis.quality import GROUPS, PERCENTILES
from ragdistill.analysis.run import Instance, analyze_reader, instances_from_passages, sample_questions, token_scorer
from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError
from ragdistill.models import load_spacy
from ragdistill.retrieval.metrics import passage_hit_flags
from ragdistill.utils.io import atomic_write_text

#: keys `monitor.options` may hold (see IndicatorMonitor); anything else -- out_dir included: the monitor
#: always writes under <run>/monitor -- is refused when the config loads
MONITOR_OPTIONS = (
    "patience",
    "reference",
    "corr_threshold",
    "percentile",
    "attention_measure",
    "refresh_passages",
    "prefix",
    "seed",
)


def check_monitor_options(options: Any) -> None:
    """`monitor.options` must be a mapping whose keys are all in MONITOR_OPTIONS (ConfigError naming the key)."""
    if not isinstance(options, dict):
        raise ConfigError("monitor.options", f"must be a mapping of option: value, got {options!r}")
    unknown = sorted(set(map(str, options)) - set(MONITOR_OPTIONS))
    if unknown:
        raise ConfigError(
            "monitor.options", f"unknown option(s) {', '.join(unknown)}; known: {', '.join(MONITOR_OPTIONS)}"
        )


def _num(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, bool):
        return 1.0 if x else 0.0
    return float(x)


class IndicatorMonitor:
    """Computes the indicators on a fixed probe set during training and decides when to stop a poor run."""

    def __init__(
        self,
        probe_questions: Sequence[Question],
        index: Any = None,
        retriever: Any = None,
        every: int = 500,
        k: int = 5,
        patience: int = 3,
        reference: str | dict | None = None,
        options: VerdictOptions = VerdictOptions(),
        signal: str = "attention",
        passages: Sequence[Sequence[Passage]] | None = None,
        refresh_passages: bool = False,
        nlp: Any = None,
        prefix: str = "indicators/",
        progress: bool = False,
        attention_options: dict | None = None,
        out_dir: str | None = None,
    ):
        if not probe_questions:
            raise ConfigError("monitor.probe_questions", "the probe set is empty")
        if every < 1:
            raise ConfigError("monitor.every", "must be at least 1 step")
        if patience < 1:
            raise ConfigError("monitor.patience", "must be at least 1 check")
        if passages is None and index is None:
            raise ConfigError("monitor.index", "pass an index and retriever, or the probe passages")
        if passages is not None and len(passages) != len(probe_questions):
            raise ConfigError("monitor.passages", "one passage list per probe question")
        token_scorer(signal)  # a signal the analysis cannot measure is refused before training starts
        if isinstance(reference, str) and reference != "first":
            raise ConfigError("monitor.reference", "must be None, 'first' or an indicators summary dict")
        probe = [q for q in probe_questions if q.answers]
        if not probe:
            raise ConfigError("monitor.probe_questions", "no probe question has a gold answer")
        self.questions = probe
        self.index, self.retriever = index, retriever
        self.every, self.k, self.patience = int(every), int(k), int(patience)
        self.reference_mode = reference
        self.reference: dict | None = reference if isinstance(reference, dict) else None
        self.options, self.signal, self.prefix, self.progress = options, signal, prefix, progress
        self.refresh_passages = refresh_passages
        self._fixed = [list(p) for p in passages] if passages is not None else None
        self._nlp = nlp
        self.attention_options = dict(attention_options or {})
        self.out_dir = out_dir
        self.history: list[dict[str, Any]] = []
        self.failed_streak = 0

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        questions: Sequence[Question],
        index: Any,
        retriever: Any,
        out_dir: Any = None,
        nlp: Any = None,
        **options: Any,
    ) -> IndicatorMonitor:
        """The training loop's monitor: `cfg.monitor` / `cfg.train` / `cfg.signal` and `monitor.options`.

        Every key of `options` (MONITOR_OPTIONS) reaches the monitor; an unknown one is refused."""
        check_monitor_options(options)
        n = int(getattr(cfg.monitor, "instances", 20))
        probe, _ = sample_questions(list(questions), n, int(options.get("seed", getattr(cfg.train, "seed", 0))))
        sig = cfg.signal
        return cls(
            probe,
            index=index,
            retriever=retriever,
            every=int(cfg.monitor.every),
            k=int(cfg.train.k),
            patience=int(options.get("patience", 3)),
            reference=options.get("reference", "first" if getattr(cfg, "trains_reader", True) else None),
            options=VerdictOptions(
                corr_threshold=float(options.get("corr_threshold", 0.3)),
                percentile=int(options.get("percentile", 95)),
                attention_measure=str(options.get("attention_measure", "lift")),
            ),
            signal=sig.name,
            refresh_passages=bool(options.get("refresh_passages", False)),
            nlp=nlp,
            prefix=str(options.get("prefix", "indicators/")),
            attention_options={"layers": sig.layers, "value_norm": sig.value_norm},
            out_dir=None if out_dir is None else str(out_dir),
        )

    def is_due(self, step: int) -> bool:
        return step % self.every == 0

    def _instances(self, retriever: Any | None, index: Any | None = None):
        if self._nlp is None:
            self._nlp = load_spacy()
        hits = None
        if index is not None:
            self.index = index  # the caller's current index (a refresh may have replaced the one given at start)
        if self._fixed is None or self.refresh_passages:
            retr = retriever if retriever is not None else self.retriever
            if retr is None:
                raise ConfigError("monitor.retriever", "a retriever is needed to retrieve the probe passages")
            if self.index is None:
                raise ConfigError("monitor.index", "an index is needed to retrieve the probe passages")
            was = getattr(retr, "training", False)
            if hasattr(retr, "eval"):
                retr.eval()
            try:
                hits = self.index.retrieve(retr, [q.question for q in self.questions], self.k)
            finally:
                if was:
                    retr.train()
            self._fixed = [[h.passage for h in hs] for hs in hits]
        instances: list[Instance] = instances_from_passages(self.questions, self._fixed, self._nlp)
        return instances

    def check(self, reader: Any, step: int, retriever: Any | None = None, index: Any | None = None) -> dict[str, float]:
        """Indicators of `reader` on the probe set; returns a flat {name: float} dict for the training log.

        `retriever` and `index` are the training run's current ones: a scheduled refresh can swap the
        run's index for the one an evaluation embedded, so the monitor retrieves from what it is given,
        not from the index it was built with."""
        instances = self._instances(retriever, index)
        model = getattr(reader, "model", None)
        was_training = bool(getattr(model, "training", False))
        if model is not None:
            model.eval()
        try:
            analysis = analyze_reader(
                reader,
                instances,
                name=f"step{step}",
                signal=self.signal,
                percentiles=PERCENTILES,
                progress=self.progress,
                attention_options=self.attention_options,
            )
        finally:
            if model is not None and was_training:
                model.train()
        summary = summarize(analysis.measures, PERCENTILES)
        first = not self.history
        if first and self.reference_mode == "first":
            self.reference = summary
            v = verdict(summary, None, self.options)
        else:
            v = verdict(summary, self.reference, self.options)
        if v["compared_to_reference"]:
            failed = v["indicator1"]["holds"] is False and v["indicator2"]["holds"] is False
        elif self.reference_mode == "first" and first:
            failed = False
        else:
            ab = v["absolute"]
            failed = all(not (ab[g]["spearman_above_threshold"] and ab[g]["lift_above_uniform"]) for g in GROUPS)
        self.failed_streak = self.failed_streak + 1 if failed else 0
        p = self.options.percentile
        out: dict[str, float] = {}
        for g in GROUPS:
            for pp in PERCENTILES:
                blk = summary[g][f"p{pp}"]
                out[f"{self.prefix}{g}_p{pp}_attention"] = _num(blk["attention_mean"])
                out[f"{self.prefix}{g}_p{pp}_lift"] = _num(blk["lift_mean"])
                out[f"{self.prefix}{g}_p{pp}_spearman"] = _num(blk["spearman_mean"])
            out[f"{self.prefix}{g}_p{p}_undefined"] = float(summary[g][f"p{p}"]["n_undefined"])
        out[f"{self.prefix}indicator1"] = _num(v["indicator1"]["holds"])
        out[f"{self.prefix}indicator2"] = _num(v["indicator2"]["holds"])
        out[f"{self.prefix}failed_both"] = 1.0 if failed else 0.0
        out[f"{self.prefix}failed_streak"] = float(self.failed_streak)
        if self._fixed is not None:
            flags = [any(passage_hit_flags(ps[: self.k], q.answers)) for q, ps in zip(self.questions, self._fixed)]
            out[f"{self.prefix}probe_hr@{self.k}"] = sum(flags) / len(flags)
        out = {key: val for key, val in out.items() if not math.isnan(val)}  # undefined: not logged
        self.history.append({"step": step, **out})
        if self.out_dir is not None:
            atomic_write_text(Path(self.out_dir) / "history.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
        return out

    def should_stop(self) -> bool:
        """True once both indicators have failed at `patience` consecutive checks."""
        return self.failed_streak >= self.patience

    def stop_message(self) -> str:
        last = self.history[-1] if self.history else {}
        rule = (
            "against the reference reader"
            if self.reference is not None
            else f"by the absolute rule (mean Spearman > {self.options.corr_threshold} and lift > 1)"
        )
        return (
            f"stopping: the reader failed both attention-quality indicators {rule} at {self.failed_streak} consecutive "
            f"checks (every {self.every} steps, last at step {last.get('step')}); its attention is a poor teacher and "
            "distilling from it is expected to hurt the retriever. Fine-tune the reader first (step 1), or run "
            "`ragdistill diagnose` on it; drop --stop-if-poor to train anyway."
        )

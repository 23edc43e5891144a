"""Experiment trackers behind the metrics log: the ones Hugging Face accelerate supports.

``runtime.log_with`` (``--log-with NAME[,NAME]``) names them: ``tensorboard`` (the default: ``RUN/tensorboard/``,
no account), ``wandb``, ``mlflow``, ``comet_ml``, ``aim``, ``clearml``, ``dvclive``, ``swanlab``, ``trackio``, or
any ``GeneralTracker`` subclass registered with ``accelerate.tracking.register_tracker_class``. Each receives the
resolved config (flattened: ``optim.lr_reader``, ...) as hyper-parameters when the log opens, the scalars of every
record of ``metrics.jsonl`` (``train/loss``, ``eval/hr@5``, ``final/em``, ...) at the record's step, and is
finished when the log closes. Only the main process creates them (``MetricsLog`` is disabled elsewhere).

The clients are accelerate's (``accelerate.tracking``); they read their usual environment (``WANDB_MODE=offline``,
``WANDB_API_KEY``, ``MLFLOW_TRACKING_URI``, ...). The project / experiment is ``ragdistill`` unless
``WANDB_PROJECT``, ``COMET_PROJECT_NAME``, ``MLFLOW_EXPERIMENT_NAME`` or ``CLEARML_PROJECT`` says otherwise; the run
is named after the config's ``name``. Names are the trackers' own; MLflow, which refuses ``@`` in a metric name,
gets ``eval/hr_at_5`` for ``eval/hr@5``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragdistill.config import DEFAULT_TRACKERS as DEFAULT
from ragdistill.config import check_trackers, known_trackers, tracker_installed

log = logging.getLogger(__name__)

PROJECT = "ragdistill"
# the variables of the project name where accelerate's call would override them
PROJECT_ENV = {"wandb": "WANDB_PROJECT", "comet_ml": "COMET_PROJECT_NAME"}
# record fields that are not metrics
NOT_METRICS = ("step", "kind", "split")


def flat_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as tracker hyper-parameters: dotted keys, values bool / int / float / str / None (lists as JSON)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, f"{key}."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def scalars(record: dict[str, Any]) -> dict[str, float | int]:
    """A metrics.jsonl record's numbers, tagged ``<kind>/<name>`` (a name with a ``/`` as it is): TensorBoard's tags."""
    prefix = record.get("kind", "train")
    return {
        (f"{prefix}/{k}" if "/" not in k else k): v
        for k, v in record.items()
        if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


_MLFLOW_BAD = re.compile(r"[^\w\-. :/]")


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . : /`` and spaces: ``hr@5`` -> ``hr_at_5``."""
    return _MLFLOW_BAD.sub("_", key.replace("@", "_at_"))


KEY_RULES = {"mlflow": _mlflow_key}


def _tensorboard_class():
    from accelerate.tracking import TensorBoardTracker

    class RunTensorBoard(TensorBoardTracker):
        """accelerate's TensorBoard tracker writing ``RUN/tensorboard/`` as the run always has: one event stream
        (``purge_step`` on resume drops what a killed run logged after its checkpoint) and the config as HParams
        in that same stream, not in a timestamped sub-directory (``config.yaml`` is beside it)."""

        def store_init_configuration(self, values: dict) -> None:
            from torch.utils.tensorboard.summary import hparams

            writer = self.writer._get_file_writer()
            for summary in hparams({k: v for k, v in values.items() if v is not None}, {}):
                writer.add_summary(summary)
            self.writer.flush()

    return RunTensorBoard


def _project(name: str) -> str:
    return os.environ.get(PROJECT_ENV[name], PROJECT) if name in PROJECT_ENV else PROJECT


def _init_kwargs(name: str, out: Path, run_name: str, description: str) -> dict[str, Any]:
    return {
        "wandb": {"name": run_name, "dir": str(out), **({"notes": description} if description else {})},
        "mlflow": {"run_name": run_name, **({"description": description} if description else {})},
        "clearml": {"task_name": os.environ.get("CLEARML_TASK", run_name)},
        "dvclive": {"dir": str(out / "dvclive")},
    }.get(name, {})  # the others: accelerate's defaults (project "ragdistill", their own run names)


class Trackers:
    """The open trackers of one run (main process): start, config, metrics, finish — never a failed run for a
    tracker that stops answering mid-run (its error is logged once and it is dropped)."""

    def __init__(
        self,
        names: Iterable[str],
        out: Path,
        *,
        purge_step: int | None = None,
        run_name: str = "run",
        description: str = "",
        config: dict[str, Any] | None = None,
    ):
        names = list(dict.fromkeys(names))
        if not names:
            self.trackers: list[tuple[str, Any]] = []
            return
        check_trackers(names)
        from accelerate.state import PartialState
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS, TensorBoardTracker

        # accelerate's trackers log through its state: the Trainer's Accelerator made it; a MetricsLog on its own
        # makes the one-process state
        if not PartialState._shared_state:
            PartialState()

        self.trackers = []
        try:
            for name in names:
                cls = LOGGER_TYPE_TO_CLASS[name]
                if cls is TensorBoardTracker:
                    tracker = _tensorboard_class()("tensorboard", str(out), purge_step=purge_step)
                elif cls.requires_logging_directory:
                    tracker = cls(_project(name), str(out), **_init_kwargs(name, out, run_name, description))
                else:
                    tracker = cls(_project(name), **_init_kwargs(name, out, run_name, description))
                tracker.main_process_only = False  # created on the main process only; no PartialState lookups
                tracker.start()
                self.trackers.append((name, tracker))
                if config is not None:
                    tracker.store_init_configuration(flat_config(config))
        except BaseException:
            self.finish()
            raise
        log.debug("trackers open: %s", ", ".join(names))

    def log(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if not values:
            return
        for name, tracker in list(self.trackers):
            rule = KEY_RULES.get(name)
            try:
                tracker.log({rule(k): v for k, v in values.items()} if rule else values, step=record.get("step"))
            except Exception as exc:  # noqa: BLE001 - a tracker's outage must not end a long run
                log.warning(
                    "the %s tracker failed (%s: %s): it is dropped for the rest of the run "
                    "(metrics.jsonl has every record)",
                    name,
                    type(exc).__name__,
                    exc,
                )
                self.trackers.remove((name, tracker))
                self._finish_one(name, tracker)

    def finish(self) -> None:
        while self.trackers:
            self._finish_one(*self.trackers.pop())

    @staticmethod
    def _finish_one(name: str, tracker) -> None:
        try:
            tracker.finish()
        except Exception as exc:  # noqa: BLE001 - closing the others matters more
            log.warning("closing the %s tracker failed: %s: %s", name, type(exc).__name__, exc)


__all__ = [
    "DEFAULT",
    "PROJECT",
    "Trackers",
    "check_trackers",
    "flat_config",
    "known_trackers",
    "scalars",
    "tracker_installed",
]

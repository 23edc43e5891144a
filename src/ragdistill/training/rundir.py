"""The run directory: guards against overwriting a run, the saved config, the metrics log
(metrics.jsonl and TensorBoard) and the completed marker.

    <out>/config.yaml  metrics.jsonl  tensorboard/  checkpoints/  index/  reader/  retriever/  eval/  completed.json
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from ragdistill.config import Config
from ragdistill.errors import ConfigError, InputError
from ragdistill.training import checkpoint as ckpt
from ragdistill.utils.io import atomic_file, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

COMPLETED = "completed.json"
# Config keys that may change between a run and its resumption (they do not change the computation).
RESUMABLE_CHANGES = ("train.log_every", "train.save_every", "train.keep_last", "eval.", "monitor.", "runtime.threads",
                     "description", "reader.max_new_tokens")


def read_completed(out: Path) -> dict[str, Any] | None:
    """The summary of a finished run in `out`, None when it has not finished."""
    done = out / COMPLETED
    return json.loads(done.read_text(encoding="utf-8")) if done.is_file() else None


def write_completed(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out / COMPLETED, summary)


def run_summary(cfg: Config, state, *, reader: str, retriever: str, index: str, final_eval: dict[str, Any], seconds: float,
                peak_mem_mb: float, world_size: int, ranks_in_sync: bool, config_source: str | None) -> dict[str, Any]:
    """The summary of a finished run (what completed.json holds)."""
    return {
        "name": cfg.name, "regime": cfg.train.regime, "steps": state.step, "skipped_steps": state.skipped_steps,
        "refreshes": state.refreshes, "stopped_early": state.stopped_early, "reader": reader, "retriever": retriever,
        "index": index, "final_eval": final_eval, "last_eval": state.last_eval, "seconds": round(seconds, 2),
        "peak_mem_mb": round(peak_mem_mb, 1), "world_size": world_size, "ranks_in_sync": ranks_in_sync,
        "config_sha256": cfg.fingerprint(), "config_source": config_source,
    }


def write_config(out: Path, cfg: Config) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", cfg.to_yaml())


def check_run_dir(out: Path, cfg: Config, resume: bool) -> Path | None:
    """The checkpoint to resume from, after refusing to overwrite an existing run by accident."""
    root = out / "checkpoints"
    existing = root.is_dir() and any(True for _ in ckpt.list_checkpoints(root))
    if (out / COMPLETED).is_file() and not resume:
        raise InputError("this run directory holds a finished run; choose another --out (or delete it)", out)
    if existing and not resume:
        raise InputError("this run directory already holds checkpoints: pass --resume to continue, or choose another --out",
                         out)
    if not resume:
        return None
    path = ckpt.latest_complete(root)
    if path is None:
        if existing:
            log.warning("no intact checkpoint in %s: starting from step 0", root)
        return None
    saved_cfg = out / "config.yaml"
    if saved_cfg.is_file():
        check_same_config(out, cfg, saved_cfg)
    return path


def check_same_config(out: Path, cfg: Config, saved_path: Path) -> None:
    """A resumed run computes what it started computing: only RESUMABLE_CHANGES may differ."""
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    now = cfg.to_dict()

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "options":
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(saved)), dict(flat(now))
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key) and not any(key == c or (c.endswith(".") and key.startswith(c)) for c in RESUMABLE_CHANGES):
            raise ConfigError(key, f"the run in {out} was started with {a.get(key)!r}, now {b.get(key)!r}: "
                                   "resume with the same config (or start a new --out)")


class MetricsLog:
    """metrics.jsonl (one JSON record a line) and TensorBoard scalars; written by the main process only."""

    def __init__(self, out: Path, enabled: bool = True):
        self.path = out / "metrics.jsonl"
        self.tensorboard = out / "tensorboard"
        self.enabled = enabled
        self._file = None
        self._writer = None

    def open(self, step: int, resumed: bool) -> None:
        """Start the log at `step`: a resumed run keeps the records up to it, a fresh start keeps nothing."""
        if not self.enabled:
            return
        kept = []
        if self.path.is_file() and resumed:
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if isinstance(rec, dict) and rec.get("step", 0) <= step:
                    kept.append(line)
        with atomic_file(self.path) as f:
            f.write("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            purge = (step + 1 if resumed else 0) if self.tensorboard.is_dir() else None
            self._writer = SummaryWriter(log_dir=str(self.tensorboard), purge_step=purge)  # drop events a killed run logged later
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            prefix = record.get("kind", "train")
            for k, v in record.items():
                if k in ("step", "kind", "split") or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                self._writer.add_scalar(f"{prefix}/{k}" if "/" not in k else k, v, record["step"])
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

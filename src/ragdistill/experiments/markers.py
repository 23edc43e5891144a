"""The run markers of `ragdistill reproduce`: what a finished setting leaves, and when it is reused.

Each setting's directory holds ``reproduce.json`` once the setting has finished: the key of
its resolved config + data + dependencies (`train_key`), a run id, wall times, its final
metrics and the record of its attention-quality analysis (with `analysis_key`).

Whether a finished run is reused is decided in one place, :func:`decide_reuse`; the dry run
(`planned_status`) and the runner (`run_plan`) both ask it, so what the plan announces is
what the runner does:

* a selected row is reused when its marker is complete, its key is unchanged and it is not
  forced (``--force`` applies to the ``--only`` rows);
* a row not selected by ``--only`` is shown from its earlier run, even when its config has
  changed since, unless a dependency re-ran: it reads that dependency's output, so it re-runs.

A dependency that re-ran has a new run id, which changes its dependants' keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdistill.utils.io import atomic_write_json, sha256_file

if TYPE_CHECKING:  # the plan's types (plan.py imports this module)
    from ragdistill.experiments.plan import Options, PlannedSetting

MARKER = "reproduce.json"
PENDING = "pending"  # the run id of a dependency the plan expects to (re-)run: it is not known yet


@dataclass
class Marker:
    """A finished setting's ``reproduce.json`` (fields in the file's order)."""

    setting: str = ""
    dataset: str = ""
    train_key: str = ""
    run_id: str = ""
    completed: bool = False
    seconds: float | None = None
    finished_at: str = ""
    final_eval: dict[str, Any] = field(default_factory=dict)
    reader: str | None = None
    retriever: str | None = None
    steps: int = 0
    skipped_steps: int = 0
    refreshes: int = 0
    config_sha256: str = ""
    deps: dict[str, str] = field(default_factory=dict)  # dependency -> the run id this run read
    analysis: dict[str, Any] = field(default_factory=dict)  # key, dirs, reader, seconds (, same_as)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Marker:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in obj.items() if k in known}
        for k in ("final_eval", "deps", "analysis"):  # tolerate null sections
            if values.get(k) is None:
                values.pop(k, None)
        values["completed"] = bool(values.get("completed"))
        return cls(**values, extra={k: v for k, v in obj.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out

    def write(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / MARKER, self.to_dict())


def read_marker(run_dir: Path) -> Marker | None:
    """The row's marker, or None when there is none (or it cannot be read)."""
    path = Path(run_dir) / MARKER
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Marker.from_dict(m) if isinstance(m, dict) else None


def marker_complete(run_dir: Path) -> bool:
    m = read_marker(run_dir)
    return bool(m and m.completed)


# --------------------------------------------------------------------------- keys


def _file_fingerprint(path: str) -> str:
    if path == "demo":
        return "demo"
    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_dir():
        return f"dir:{p.resolve()}"
    st = p.stat()
    if st.st_size <= 64 * 2**20:
        return sha256_file(p)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def train_key(item: PlannedSetting, dep_run_ids: dict[str, str]) -> str:
    cfg = item.config
    data = {k: _file_fingerprint(getattr(cfg.data, k)) for k in ("corpus", "train", "dev", "test")}
    return _sha(
        {
            "setting": item.setting.name,
            "regime": item.setting.regime,  # trackers aside: --log-with reuses runs
            "config": cfg.to_dict(trackers=False),
            "data": data,
            "deps": dep_run_ids,
        }
    )


# What the analysis of a row covers: "own" = the row's final reader on instances its own final retriever retrieved
# (issue 14 §3), "controlled" = on the initial retriever's (the same instances for every row). A marker written with
# another version of this is redone.
ANALYSIS_VIEWS = ("own", "controlled")


def analysis_key(item: PlannedSetting, run_id: str, options: Options) -> str:
    cfg = item.config
    return _sha(
        {
            "run_id": run_id,
            "n": options.analysis_n,
            "seed": options.analysis_seed,
            "k": cfg.train.k,
            "signals": sorted(item.signals),
            "ig_steps": options.ig_steps,
            **(
                {"ig_tolerance": options.ig_tolerance, "ig_max_steps": options.ig_max_steps}
                if options.ig_steps is None
                else {}
            ),
            "test": _file_fingerprint(cfg.data.test),
            "retriever": cfg.retriever.name,
            "index": cfg.index.dir,
            "views": list(ANALYSIS_VIEWS) if analysed(item) else [],
        }
    )


def analysed(item: PlannedSetting) -> bool:
    """Whether a row gets an attention-quality analysis: not the FiD reader fit (row 1b analyses its reader) and not
    the --seeds repeats (the indicators are measured on the first seed's run; the repeats measure Table 1's spread)."""
    return item.setting.name != "fid_reader_fit" and not getattr(item, "seed_offset", 0)


def analysis_outdated(item: PlannedSetting, marker: Marker, options: Options) -> bool:
    """True when the marker's analysis was made with other analysis options (or not made): it is redone."""
    return marker.analysis.get("key") != analysis_key(item, marker.run_id, options)


# --------------------------------------------------------------------------- reuse


@dataclass(frozen=True)
class Reuse:
    """What :func:`decide_reuse` decided for one row."""

    reuse: bool
    key: str  # the row's train key (written into a new marker)
    changed_deps: tuple[str, ...] = ()  # not selected, but these dependencies re-ran: the row re-runs
    other_config: bool = False  # not selected, shown from a run made with a different config


def forced(item: PlannedSetting, options: Options) -> bool:
    """--force redoes the rows --only names (every row without --only)."""
    return options.force and (not options.only or item.setting.name in options.only)


def decide_reuse(item: PlannedSetting, marker: Marker | None, dep_run_ids: dict[str, str], options: Options) -> Reuse:
    """Is the row's finished run reused? The one decision of the plan (`planned_status`) and the runner (`run_plan`).

    ``dep_run_ids`` maps each dependency to its run id in this run (:data:`PENDING` while
    planning a dependency that will run).
    """
    key = train_key(item, dep_run_ids)
    if not item.selected:
        before = marker.deps if marker else {}
        changed = tuple(d for d in item.depends_on if before.get(d) != dep_run_ids[d])
        if changed:
            return Reuse(False, key, changed_deps=changed)
        if marker is not None:
            return Reuse(True, key, other_config=marker.train_key != key)
    reuse = marker is not None and marker.completed and marker.train_key == key and not forced(item, options)
    return Reuse(reuse, key)


__all__ = [
    "ANALYSIS_VIEWS",
    "MARKER",
    "PENDING",
    "Marker",
    "Reuse",
    "analysed",
    "analysis_key",
    "analysis_outdated",
    "decide_reuse",
    "forced",
    "marker_complete",
    "read_marker",
    "train_key",
]

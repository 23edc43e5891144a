"""Every finished unit's ``sweep.json``: a key over its config, read back to reuse the unit while the key holds."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from ragdistill.utils.io import atomic_write_json

MARKER = "sweep.json"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def finished(run_dir: Path, key: str, force: bool) -> dict[str, Any] | None:
    """The unit's marker when it finished with this key (and --force is off), else None."""
    m = read_json(Path(run_dir) / MARKER)
    if force or not m or not m.get("completed") or m.get("key") != key:
        return None
    return m


def write_marker(run_dir: Path, key: str, **fields: Any) -> dict[str, Any]:
    m = {"key": key, "completed": True, "finished_at": _dt.datetime.now().isoformat(timespec="seconds"), **fields}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / MARKER, m)
    return m

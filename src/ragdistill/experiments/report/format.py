"""The report's number and label formatting, shared by its tables and sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.experiments.settings import DECODER
from ragdistill.experiments.settings import ITEMS_BY_NAME as BY_NAME


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def _holds(x: bool | None) -> str:
    return "undefined" if x is None else ("holds" if x else "fails")


def _row_label(row: dict[str, Any], signal: str | None = None) -> str:
    ref = " — reference" if not BY_NAME[row["name"]].reference else ""
    sig = f", {signal}" if signal else ""
    fam = "decoder" if row["family"] == DECODER else "FiD"
    return f"{row['number']} {row['name']} ({fam}{sig}){ref}"


def _ms(x: dict[str, Any] | None, signed: bool = False) -> str:
    if not x:
        return "–"
    mean = f"{100 * x['mean']:+.1f}" if signed else f"{100 * x['mean']:.1f}"
    return mean + ("" if x["sd"] is None else f" ± {100 * x['sd']:.1f}")


METRIC_TITLE = {"em": "EM", "f1": "F1"}


def _metric_title(key: str) -> str:
    return METRIC_TITLE.get(key, key.upper().replace("HR@", "HR@"))


def _short_name(name: str | None) -> str:
    if not name:
        return "–"
    p = Path(name)
    return f"…/{p.parent.name}/{p.name}" if len(name) > 40 and p.parent.name else name


def _minutes(s: float | None) -> str:
    return "–" if s is None else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s")

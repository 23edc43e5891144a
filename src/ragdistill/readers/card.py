"""The model card (README.md) of a saved reader directory.

A reader directory written by ``save_pretrained`` is a plain Hugging Face model directory
(``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM`` + ``AutoTokenizer`` load it, with its
generation config); the card says what it is: base model, setting, data, training steps and,
once training has finished, the final metrics and the attention-quality indicators.
``save_pretrained`` writes a card with what the reader knows (its base model); the training loop
rewrites it at the end with the rest (:func:`write_model_card`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ragdistill.utils.io import atomic_write_text

CARD_FILE = "README.md"
TAGS = ("ragdistill", "retrieval-augmented-generation")
PIPELINE_TAGS = {"decoder": "text-generation", "fid": "text2text-generation"}
_MAX_ROWS = 40  # a card stays short: larger tables are cut (the full numbers live in the run directory)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["CARD_FILE", "render_model_card", "write_model_card"]


def _kind_of(directory: Path) -> str:
    """'decoder' or 'fid' from the directory's reader settings or config (decoder when neither says)."""
    for name, read in (
        ("ragdistill_reader.json", lambda d: d.get("kind")),
        ("config.json", lambda d: "fid" if d.get("is_encoder_decoder") else "decoder"),
    ):
        path = directory / name
        if path.is_file():
            try:
                kind = read(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
            if kind in PIPELINE_TAGS:
                return kind
    return "decoder"


def _yaml_str(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value).replace("|", "\\|").replace("\n", " ")
    return json.dumps(value, ensure_ascii=False, default=str).replace("|", "\\|")


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _table(title: str, values: Mapping[str, Any] | None) -> list[str]:
    if not values:
        return []
    rows = _flatten(values)
    lines = [f"## {title}", "", "| | |", "|---|---|"]
    lines += [f"| {_fmt(k)} | {_fmt(v)} |" for k, v in rows[:_MAX_ROWS]]
    if len(rows) > _MAX_ROWS:
        lines.append(f"| … | {len(rows) - _MAX_ROWS} more |")
    return lines + [""]


def render_model_card(
    *,
    kind: str,
    base_model: str | None,
    setting: str | None,
    data: str | None,
    steps: int | None,
    metrics: Mapping[str, Any] | None = None,
    indicators: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The card's Markdown text (YAML front matter, then a short description and tables)."""
    kind = kind if kind in PIPELINE_TAGS else "decoder"
    front = ["---", "library_name: transformers"]
    if base_model and _HUB_ID.match(str(base_model)) and not Path(str(base_model)).expanduser().exists():
        front.append(f"base_model: {_yaml_str(base_model)}")  # only a hub id: a local path is not a valid base_model
    front += ["tags:"] + [f"- {t}" for t in TAGS] + [f"pipeline_tag: {PIPELINE_TAGS[kind]}", "---", ""]
    what = (
        "a decoder-only reader: the question and the K passages in one prompt"
        if kind == "decoder"
        else "a Fusion-in-Decoder reader: each passage encoded with the question as "
        "`question: Q title: T context: C`, the K encoder outputs concatenated for the decoder"
    )
    not_recorded = "not recorded"
    body = [
        f"# ragdistill reader{f': {setting}' if setting else ''}",
        "",
        f"A retrieval-augmented reader trained with ragdistill ({what}).",
        "",
        "| | |",
        "|---|---|",
        f"| Base model | {_fmt(base_model or not_recorded)} |",
        f"| Setting | {_fmt(setting or not_recorded)} |",
        f"| Data | {_fmt(data or not_recorded)} |",
        f"| Training steps | {_fmt(not_recorded if steps is None else steps)} |",
    ]
    body += [f"| {_fmt(k)} | {_fmt(v)} |" for k, v in _flatten(extra or {})[:_MAX_ROWS]] + [""]
    body += _table("Final metrics", metrics)
    body += _table("Attention-quality indicators", indicators)
    auto = "AutoModelForCausalLM" if kind == "decoder" else "AutoModelForSeq2SeqLM"
    body += [
        "## Use",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f'model = {auto}.from_pretrained("path/to/this/directory")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")',
        "```",
        "",
        "The generation config is the reader's: greedy decoding with its stop tokens and answer length. "
        + (
            "The reader's prompt template is in `ragdistill_reader.json`; "
            if kind == "decoder"
            else "Reading K passages at once (fusion in the decoder) needs the K encoder outputs concatenated; "
            "the encoder input format is in `ragdistill_reader.json`; "
        )
        + "`ragdistill` loads the directory as a reader (`get_reader(path)`).",
        "",
    ]
    return "\n".join(front + body)


def write_model_card(
    directory: str | Path,
    *,
    base_model: str | None,
    setting: str | None,
    data: str | None,
    steps: int | None,
    metrics: Mapping[str, Any] | None = None,
    indicators: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write (atomically) `directory`/README.md, the reader's model card; returns its path.

    base_model: what training started from (a hub id goes into the front matter's `base_model`);
    setting: the study setting or run name; data: what it was trained on; steps: training steps;
    metrics: the final evaluation (e.g. {"em": .., "f1": .., "hr@5": ..}); indicators: the
    attention-quality indicators (nested dicts are flattened with dots); extra: more rows for the
    first table. The reader kind (pipeline tag) is read from the directory.
    """
    directory = Path(directory)
    text = render_model_card(
        kind=_kind_of(directory),
        base_model=base_model,
        setting=setting,
        data=data,
        steps=steps,
        metrics=metrics,
        indicators=indicators,
        extra=extra,
    )
    path = directory / CARD_FILE
    atomic_write_text(path, text)
    return path

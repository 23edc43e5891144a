"""Training checkpoints: atomic, checksummed, keep-last-N, with fallback to the last good one.

Layout of one checkpoint (``<run>/checkpoints/step-000000100/``)::

    reader.safetensors       trainable model weights (safetensors, no pickle)
    retriever.safetensors
    index_retriever.safetensors   retriever weights the current (stale) index was built with
    optimizer.pt scheduler.pt rng.pt   torch.save'd state, read back with weights_only=True
    state.json               step, counters, python/numpy RNG states, metrics so far
    manifest.json            written last: sha256 and size of every file above

The directory is written under a temporary name and renamed into place, so a crash
while saving leaves either the old set of checkpoints or the new one. ``latest_complete``
checks every file against the manifest and falls back to the previous checkpoint when
the newest is truncated or corrupted.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ragdistill.errors import InputError
from ragdistill.utils.faults import maybe_fault
from ragdistill.utils.io import atomic_dir, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoint_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:09d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint directory under `root`, newest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    modules: dict[str, torch.nn.Module] | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    objects: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoint `step` atomically and prune older ones beyond `keep_last`.

    `modules` are saved with safetensors (tied weights handled), `tensors` (plain state
    dicts) with safetensors too, `objects` (optimizer,
    scheduler, RNG states: tensors, numbers, lists, dicts) with torch.save, `state` as JSON.
    """
    target = checkpoint_dir(root, step)
    with atomic_dir(target) as tmp:
        import safetensors.torch

        for name, module in (modules or {}).items():
            safetensors.torch.save_model(module, str(tmp / f"{name}.safetensors"))
        for name, sd in (tensors or {}).items():
            safetensors.torch.save_file(
                {k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{name}.safetensors")
            )
        for name, obj in (objects or {}).items():
            torch.save(obj, tmp / f"{name}.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=2) + "\n", encoding="utf-8")
        maybe_fault("checkpoint_write")
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir()) if p.is_file()
        }
        manifest = {"format": FORMAT_VERSION, "step": step, "complete": True, "created": time.time(), "files": files}
        (tmp / MANIFEST).write_text(_manifest_text(manifest), encoding="utf-8")
    if keep_last:
        prune(root, keep_last)
    return target


def _manifest_text(manifest: dict) -> str:
    """The one serialisation a manifest is written in, so reading can tell any later change to its bytes."""
    return json.dumps(manifest, indent=2) + "\n"


def verify_checkpoint(path: str | Path) -> list[str]:
    """Problems found in a checkpoint directory (empty list = complete and intact)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        return [f"{mpath} is missing (the checkpoint was never completed)"]
    try:
        text = mpath.read_text(encoding="utf-8")
        manifest = json.loads(text)
        files = manifest["files"]
        if not manifest.get("complete"):
            return [f"{mpath} does not mark the checkpoint complete"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return [f"{mpath} is unreadable ({type(exc).__name__})"]
    if text != _manifest_text(manifest):  # even a change that keeps the JSON's meaning (appended bytes) is damage
        return [f"{mpath} was modified after it was written (its bytes differ from the manifest it holds)"]
    problems = []
    for name, meta in files.items():
        problem = _file_problem(path / name, meta)
        if problem:
            problems.append(f"{path / name} {problem}")
    return problems


def _file_problem(fp: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with one checkpoint file against its manifest entry (None: intact)."""
    if not fp.is_file():
        return "is missing"
    size = fp.stat().st_size
    if size != meta.get("bytes"):
        return f"has {size} bytes, the manifest says {meta.get('bytes')} (truncated?)"
    if sha256_file(fp) != meta.get("sha256"):
        return "does not match its sha256 checksum in the manifest (corrupted)"
    return None


def latest_complete(root: str | Path) -> Path | None:
    """The newest checkpoint whose files all match the manifest; corrupt ones are logged and skipped."""
    for _step, path in list_checkpoints(root):
        problems = verify_checkpoint(path)
        if not problems:
            return path
        log.warning("skipping checkpoint %s: %s", path, "; ".join(problems))
    return None


def prune(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` completed checkpoints and leftover temporary dirs."""
    root = Path(root)
    removed = []
    complete = [(s, p) for s, p in list_checkpoints(root) if (p / MANIFEST).is_file()]
    for _, p in complete[keep_last:]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if root.is_dir():
        for p in root.iterdir():  # debris of a save killed midway (see utils.io.atomic_dir)
            if p.name.startswith(".step-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
    return removed


def _require(path: Path, name: str, verified: bool = False) -> Path:
    """`path/name`, after checking it against the checkpoint's manifest (size and sha256).

    Every loader goes through here, so a checkpoint opened directly (``evaluate --reader
    <checkpoint>``) is held to the same standard as one picked by ``latest_complete``.
    `verified=True`: the caller has just checked the whole checkpoint (``latest_complete``),
    so the files are not hashed a second time.
    """
    fp = path / name
    if not fp.is_file():
        raise InputError(f"checkpoint has no {name}", path)
    if verified:
        return fp
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise InputError(
            f"{mpath.name} is missing: the checkpoint was never completed (its save was interrupted); "
            "use an earlier checkpoint",
            path,
        )
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))["files"][name]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{name} is not listed in a readable manifest ({type(exc).__name__}): "
            "the checkpoint is incomplete or was edited; use an earlier checkpoint",
            mpath,
        ) from None
    problem = _file_problem(fp, meta)
    if problem:
        raise InputError(f"{name} {problem}: use an earlier checkpoint", fp)
    return fp


def read_state(path: str | Path, verified: bool = False) -> dict[str, Any]:
    fp = _require(Path(path), "state.json", verified)
    try:
        return json.loads(fp.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"state.json is not valid JSON ({exc})", fp) from exc


def has_module(path: str | Path, name: str) -> bool:
    return (Path(path) / f"{name}.safetensors").is_file()


def load_module(path: str | Path, name: str, module: torch.nn.Module, verified: bool = False) -> None:
    """Load `name.safetensors` into `module` (strict: every weight must match)."""
    import safetensors.torch

    fp = _require(Path(path), f"{name}.safetensors", verified)
    try:
        missing, unexpected = safetensors.torch.load_model(module, str(fp), strict=True)
    except (RuntimeError, OSError, ValueError) as exc:  # shape mismatch, bad header
        raise InputError(f"cannot load weights into the {name}: {str(exc).splitlines()[0]}", fp) from exc


def load_tensors(path: str | Path, name: str, verified: bool = False) -> dict[str, torch.Tensor]:
    """A plain state dict saved under `tensors` by `save_checkpoint`."""
    import safetensors.torch

    fp = _require(Path(path), f"{name}.safetensors", verified)
    try:
        return safetensors.torch.load_file(str(fp))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type on bad headers
        raise InputError(
            f"cannot read {name}.safetensors ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", fp
        ) from exc


def load_object(path: str | Path, name: str, verified: bool = False) -> Any:
    """A torch.save'd object, read with weights_only=True (no arbitrary pickle)."""
    fp = _require(Path(path), f"{name}.pt", verified)
    try:
        return torch.load(fp, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on corrupt files
        raise InputError(
            f"cannot read {name}.pt ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", fp
        ) from exc

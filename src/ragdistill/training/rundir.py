"""The run directory: guards against overwriting a run, the saved config, the metrics log
(metrics.jsonl, TensorBoard and the other trackers of ``runtime.log_with``) and the completed marker.

    <out>/config.yaml  metrics.jsonl  tensorboard/  checkpoints/  index/  reader/  retriever/  eval/  completed.json
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from ragdistill.config import Config
from ragdistill.errors import ConfigError, InputError, RagdistillError
from ragdistill.training import checkpoint as ckpt
from ragdistill.training.trackers import DEFAULT as DEFAULT_TRACKERS
from ragdistill.training.trackers import Trackers
from ragdistill.utils.io import atomic_file, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

COMPLETED = "completed.json"
# Config keys that may change between a run and its resumption (they do not change the computation).
RESUMABLE_CHANGES = (
    "train.log_every",
    "train.save_every",
    "train.keep_last",
    "eval.",
    "monitor.",
    "runtime.threads",
    "runtime.collective_timeout",
    "runtime.log_with",
    "description",
    "reader.max_new_tokens",
)


def read_completed(out: Path) -> dict[str, Any] | None:
    """The summary of a finished run in `out`, None when it has not finished."""
    done = out / COMPLETED
    return json.loads(done.read_text(encoding="utf-8")) if done.is_file() else None


def write_completed(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out / COMPLETED, summary)


def run_summary(
    cfg: Config,
    state,
    *,
    reader: str,
    retriever: str,
    index: str,
    final_eval: dict[str, Any],
    seconds: float,
    peak_mem_mb: float,
    world_size: int,
    ranks_in_sync: bool,
    config_source: str | None,
) -> dict[str, Any]:
    """The summary of a finished run (what completed.json holds)."""
    return {
        "name": cfg.name,
        "regime": cfg.train.regime,
        "steps": state.step,
        "skipped_steps": state.skipped_steps,
        "refreshes": state.refreshes,
        "stopped_early": state.stopped_early,
        "reader": reader,
        "retriever": retriever,
        "index": index,
        "final_eval": final_eval,
        "last_eval": state.last_eval,
        "seconds": round(seconds, 2),
        "peak_mem_mb": round(peak_mem_mb, 1),
        "world_size": world_size,
        "ranks_in_sync": ranks_in_sync,
        "config_sha256": cfg.fingerprint(),
        "config_source": config_source,
    }


def write_config(out: Path, cfg: Config) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", cfg.to_yaml())


def same_saved_config(saved: Path, cfg: Config) -> bool:
    """Whether a run directory's saved config.yaml holds `cfg`, the trackers aside (``runtime.log_with`` changes
    where metrics go, not what is computed; a config saved before that key existed has none)."""
    if not saved.is_file():
        return False
    text = saved.read_text(encoding="utf-8")
    if text == cfg.to_yaml():
        return True
    try:
        old = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return False
    if not isinstance(old, dict):
        return False
    if isinstance(old.get("runtime"), dict):
        old["runtime"].pop("log_with", None)
    return old == yaml.safe_load(yaml.safe_dump(cfg.to_dict(trackers=False)))


def check_run_dir(out: Path, cfg: Config, resume: bool) -> Path | None:
    """The checkpoint to resume from, after refusing to overwrite an existing run by accident."""
    root = out / "checkpoints"
    existing = root.is_dir() and any(True for _ in ckpt.list_checkpoints(root))
    if (out / COMPLETED).is_file() and not resume:
        raise InputError("this run directory holds a finished run; choose another --out (or delete it)", out)
    if existing and not resume:
        raise InputError(
            "this run directory already holds checkpoints: pass --resume to continue, or choose another --out", out
        )
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
        if a.get(key) != b.get(key) and not any(
            key == c or (c.endswith(".") and key.startswith(c)) for c in RESUMABLE_CHANGES
        ):
            raise ConfigError(
                key,
                f"the run in {out} was started with {a.get(key)!r}, now {b.get(key)!r}: "
                "resume with the same config (or start a new --out)",
            )


class MetricsLog:
    """metrics.jsonl (one JSON record a line) and the experiment trackers (``training.trackers``: TensorBoard
    scalars in ``tensorboard/`` by default); written by the main process only.

    With `cfg`, its ``runtime.log_with`` names the trackers and they receive the resolved config when the log
    opens; without, TensorBoard alone and no config."""

    def __init__(self, out: Path, enabled: bool = True, cfg: Config | None = None):
        self.out = out
        self.path = out / "metrics.jsonl"
        self.tensorboard = out / "tensorboard"
        self.enabled = enabled
        self.cfg = cfg
        self.names = list(cfg.runtime.log_with) if cfg is not None else list(DEFAULT_TRACKERS)
        self._file = None
        self._trackers: Trackers | None = None

    def open(self, step: int, resumed: bool) -> None:
        """Start the log at `step`: a resumed run keeps the records up to it, a fresh start keeps nothing."""
        if not self.enabled:
            return
        kept = []
        if self.path.is_file() and resumed:
            raw = self.path.read_bytes()
            lines = raw.split(b"\n")
            if lines and lines[-1]:  # no final newline: the last line was cut by a kill
                log.warning(
                    "%s: the last line was cut off (%d bytes, no newline; the process was killed while "
                    "writing it): truncated to the last complete line",
                    self.path,
                    len(lines[-1]),
                )
                lines = lines[:-1]
            for n, line in enumerate(lines, 1):
                try:
                    rec = json.loads(line.decode("utf-8")) if line.strip() else None
                except ValueError:
                    log.warning("%s, line %d: not a JSON record; dropped", self.path, n)
                    continue
                if isinstance(rec, dict) and rec.get("step", 0) <= step:
                    kept.append(line.decode("utf-8"))
        with atomic_file(self.path) as f:
            f.write("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        # TensorBoard drops the events a killed run logged after the step resumed from
        purge = (step + 1 if resumed else 0) if self.tensorboard.is_dir() else None
        cfg = self.cfg
        try:
            self._trackers = Trackers(
                self.names,
                self.out,
                purge_step=purge,
                run_name=cfg.name if cfg else "run",
                description=cfg.description if cfg else "",
                config=cfg.to_dict() if cfg else None,
            )
        except BaseException:
            self.close()
            raise

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._trackers is not None:
            self._trackers.log(record)

    def close(self) -> None:
        """Close the file and finish every tracker (idempotent: every exit path of a run calls it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._trackers is not None:
            self._trackers.finish()
            self._trackers = None


# ---------------------------------------------------------------------------- one run per directory
LOCK = ".lock"
HEARTBEAT_S = 30.0  # the holder touches its record this often
STALE_AFTER_S = 300.0  # a record from another host whose heartbeat is older than this is stale


class RunDirLocked(RagdistillError):
    """Another live process holds the run directory."""


class RunLock:
    """One writer per run directory: ``fcntl.flock`` on ``<dir>/.lock`` (released by the kernel when the process
    dies, however it dies) plus a JSON holder record in that file (pid, host, start time, command) for the message.

    Stale locks: when the flock is free the holder is gone on this host; the record is only consulted to say so
    (warning). A record written by another host cannot be checked by pid, and network file systems do not always
    carry flocks between hosts, so its heartbeat decides: the holder re-touches the file every HEARTBEAT_S seconds
    (a daemon thread), and a record from another host untouched for STALE_AFTER_S seconds (5 min) is taken over
    with a warning; a fresher one is refused."""

    def __init__(self, directory: str | Path, what: str = "run"):
        self.dir = Path(directory)
        self.path = self.dir / LOCK
        self.what = what
        self._fd: int | None = None
        self._stop = None

    def acquire(self) -> RunLock:
        import fcntl
        import os
        import socket
        import sys
        import threading
        import time

        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirLocked(
                f"{self.dir} is in use by another {self.what}: {_describe(holder)}. Wait for it to "
                "finish or stop it (SIGTERM saves a checkpoint); one process writes a run directory "
                "at a time"
            ) from None
        except OSError as exc:  # a file system without flock: the record and its heartbeat alone
            log.warning("%s: file locking is not supported here (%s): relying on the holder record", self.path, exc)
        holder = _read_holder(fd)
        host = socket.gethostname()
        if holder and holder.get("pid") != os.getpid():
            age = time.time() - os.fstat(fd).st_mtime
            if holder.get("host") not in (None, host) and age < STALE_AFTER_S:
                os.close(fd)
                raise RunDirLocked(
                    f"{self.dir} is in use by another {self.what} on another host: {_describe(holder)}, "
                    f"last heartbeat {age:.0f} s ago. If that process is gone, its lock is taken over "
                    f"{STALE_AFTER_S:.0f} s after its last heartbeat (or delete {self.path})"
                )
            alive = holder.get("host") == host and _pid_alive(holder.get("pid"))
            log.warning(
                "taking over a stale lock on %s: %s%s",
                self.dir,
                _describe(holder),
                ""
                if holder.get("host") != host
                else (" — its process is gone" if not alive else " — not holding the lock any more"),
            )
        record = {
            "pid": os.getpid(),
            "host": host,
            "started": _now_iso(),
            "what": self.what,
            "command": " ".join(sys.argv)[:500],
        }
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self._fd = fd
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, args=(self._stop,), daemon=True, name="ragdistill-lock").start()
        return self

    def _heartbeat(self, stop) -> None:
        import os

        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:  # pragma: no cover - directory gone
                return

    def release(self) -> None:
        import os

        if self._fd is None:
            return
        self._stop.set()
        try:
            os.ftruncate(self._fd, 0)  # an empty record: nobody holds it
        except OSError:  # pragma: no cover
            pass
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any] | None:
    import os

    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        rec = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a process that left no holder record"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}" + (
        f" ({holder['command']})" if holder.get("command") else ""
    )


def _pid_alive(pid) -> bool:
    import os

    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now_iso() -> str:
    import datetime as _dt

    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def lock_run_dir(dist: Any, out: Path) -> RunLock | None:
    """Rank 0 takes the directory's lock; every rank raises the same RunDirLocked when someone else holds it."""
    lock, error = None, None
    if dist.is_main:
        try:
            lock = RunLock(out, "ragdistill run").acquire()
        except RunDirLocked as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error:
        raise RunDirLocked(error)
    return lock

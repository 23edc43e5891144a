"""One run per directory: a second `train` (with or without --resume) on a directory a live process holds is
refused at once, naming the holder; a lock left by a dead process is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragdistill.training.rundir import LOCK, STALE_AFTER_S, RunDirLocked, RunLock
from tests.reliability.conftest import ROOT, count, run_cli
from tests.reliability.test_kill_resume import train_args

HOLD = (
    "import sys, time; from ragdistill.training.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(120)"
)


def _holder(d: Path) -> subprocess.Popen:
    """Another process holding `d` (the same lock `train` takes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_live_holder_refuses_a_second_run_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    d = tmp_path / "run"
    p = _holder(d)
    try:
        with pytest.raises(RunDirLocked) as err:
            RunLock(d).acquire()
        msg = str(err.value)
        assert f"pid {p.pid} on host {socket.gethostname()}, started " in msg and "in use by another" in msg
        count("refused concurrent runs")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the holder died without cleaning up: its record is still there, the kernel released the flock
    assert json.loads((d / LOCK).read_text())["pid"] == p.pid
    with caplog.at_level(logging.WARNING), RunLock(d) as lock:
        assert json.loads((d / LOCK).read_text())["pid"] == os.getpid()
        assert lock._fd is not None
    assert f"taking over a stale lock on {d}: pid {p.pid}" in caplog.text and "its process is gone" in caplog.text
    assert (d / LOCK).read_text() == ""  # released cleanly: an empty record
    with RunLock(d):  # and taken again without a warning
        pass


def test_another_hosts_record_is_refused_while_its_heartbeat_is_fresh(tmp_path, caplog):
    d = tmp_path / "run"
    d.mkdir()
    rec = {"pid": 4242, "host": "node-17", "started": "2025-01-01T00:00:00+00:00", "command": "ragdistill train"}
    (d / LOCK).write_text(json.dumps(rec))
    with pytest.raises(RunDirLocked, match="another host: pid 4242 on host node-17.*last heartbeat"):
        RunLock(d).acquire()
    old = time.time() - STALE_AFTER_S - 10
    os.utime(d / LOCK, (old, old))
    with caplog.at_level(logging.WARNING), RunLock(d):
        pass
    assert "taking over a stale lock" in caplog.text and "node-17" in caplog.text


def test_train_and_train_resume_on_a_held_directory_are_refused_at_once(tiny_models, tiny_world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "kind": "train"}\n')
    p = _holder(run)
    try:
        for extra in ((), ("--resume",)):
            t0 = time.monotonic()
            res = run_cli(*train_args(tiny_models, tiny_world, run), *extra)
            assert res.returncode == 2, res.stderr[-3000:]
            assert f"pid {p.pid} on host {socket.gethostname()}" in res.stderr and "Traceback" not in res.stderr
            assert time.monotonic() - t0 < 120
            count("refused concurrent runs")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # nothing was written by the refused runs
    assert (run / "metrics.jsonl").read_text() == '{"step": 1, "kind": "train"}\n'
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()

"""Preemption: --max-time, SIGTERM and SIGUSR1 each save a checkpoint and exit with their documented status
(75, 143, 138); chained on one run and resumed each time, it ends bit for bit as the unbroken run.

The signals are sent by the fault-injection hook (the process signals itself inside a step, at a known
step), through the same handler an external `kill -TERM` reaches.
"""

from __future__ import annotations

import pytest

from ragdistill.training import checkpoint as ckpt
from ragdistill.training.stop import EXIT_CODES, EXIT_MAX_TIME, parse_duration
from tests.reliability.conftest import count, run_cli
from tests.reliability.test_kill_resume import assert_same_run, steps_on_disk, train_args, unbroken  # noqa: F401


def test_max_time_sigterm_sigusr1_then_resume_equals_unbroken_run(unbroken, tiny_models, tiny_world, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    args = train_args(tiny_models, tiny_world, run)

    # 1. --max-time already spent by the start-up: the first step runs, checkpoint 1, exit 75
    res = run_cli(*args, "--max-time", "0.01")
    assert res.returncode == EXIT_MAX_TIME == 75, res.stderr[-3000:]
    assert "stopped before --max-time ran out at step 1" in res.stdout and "--resume" in res.stdout
    assert "Traceback" not in res.stderr and steps_on_disk(run) == [1]
    assert not (run / "completed.json").exists()

    # 2. SIGTERM during the resumed run's first step (step 2): that step finishes, checkpoint 2, exit 143
    res = run_cli(*args, "--resume", env={"RAGDISTILL_FAULT": "step:1:SIGTERM"})
    assert res.returncode == EXIT_CODES["terminated"] == 143, res.stderr[-3000:]
    assert "SIGTERM received: saving a checkpoint after this step" in res.stderr
    assert "terminated (SIGTERM) at step 2" in res.stdout and "Traceback" not in res.stderr
    assert steps_on_disk(run) == [2, 1]
    count("SIGTERM interruptions that lost nothing")

    # 3. SIGUSR1 (SLURM --signal) in the next resumption's 2nd step (step 4): checkpoint 4, exit 138
    res = run_cli(*args, "--resume", env={"RAGDISTILL_FAULT": "step:2:SIGUSR1"})
    assert res.returncode == EXIT_CODES["SIGUSR1"] == 138, res.stderr[-3000:]
    assert steps_on_disk(run) == [4, 2]
    assert ckpt.read_state(run / "checkpoints" / "step-000000004")["step"] == 4
    count("SIGUSR1 interruptions that lost nothing")

    # 4. resume to the end: identical to the unbroken run
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(unbroken, run)
    count("max-time stops that lost nothing")


def test_time_budget_stops_before_the_next_step_would_overrun(monkeypatch):
    from ragdistill.training import stop as stop_mod

    now = [0.0]
    monkeypatch.setattr(stop_mod, "_clock", lambda: now[0])
    s = stop_mod.StopRequest(deadline=35.0)
    stopped_at = None
    for step in range(1, 10):  # 10 s steps, checkpoints take 2 s
        now[0] += 10.0
        s.observe_step(10.0)
        s.observe_save(2.0)
        if s.time_is_up():
            stopped_at = step
            break
    assert stopped_at == 3 and s.reason == "max-time"  # at t=30, a 10 s step + 2 s save would end past 35
    assert stop_mod.StopRequest().time_is_up() is False  # no deadline: never


@pytest.mark.parametrize(
    "text,seconds",
    [("3h50m", 13800), ("90m", 5400), ("01:30:00", 5400), ("5400", 5400), ("45s", 45), ("1d2h", 93600), ("1.5h", 5400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "0", "-5", "3h then", "1:2:3:4"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)

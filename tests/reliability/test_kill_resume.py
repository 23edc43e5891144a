"""SIGKILL `ragdistill train` at three points, resume each time: the run ends exactly as an unbroken one.

Kill points are hit deterministically through the fault-injection hook
(`ragdistill.utils.faults`, env RAGDISTILL_FAULT): the process sends itself SIGKILL, so
nothing (no `finally`, no atexit) runs, as with the OOM killer or a preempted node.
The chain below kills one run during a training step, its resumption while a checkpoint
is being written, and that one's resumption during an index refresh; a last `--resume`
finishes. Weights, per-step training metrics and the final evaluation must equal an
unbroken run's with the same seed, bit for bit.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from ragdistill.training import checkpoint as ckpt
from tests.reliability.conftest import ROOT, count, run_cli
from tests.tiny_models import final_weights, run_metrics, tiny_overrides

CONFIG = ROOT / "configs" / "demo" / "offshelf_distill.yaml"
TIMING = ("steps_per_s", "peak_mem_mb", "seconds")


def train_args(models: dict[str, str], world: dict[str, str], out: Path, *extra: str) -> list[str]:
    """A 6-step joint run on the tiny models: checkpoints at 2, 4, 6 (two kept), index refreshed at 2 and 4."""
    sets = tiny_overrides(
        models, world, **{"train.steps": 6, "train.keep_last": 2, "eval.every": 0, "runtime.threads": 1}
    )
    args = ["train", "--config", str(CONFIG), "--out", str(out), "--no-progress", *extra]
    for s in sets:
        args += ["--set", s]
    return args


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs from the unbroken run"
    assert run_metrics(a, TIMING) == run_metrics(b, TIMING)
    assert json.loads((a / "eval" / "metrics.json").read_text()) == json.loads(
        (b / "eval" / "metrics.json").read_text()
    )
    assert (a / "eval" / "predictions.jsonl").read_text() == (b / "eval" / "predictions.jsonl").read_text()
    sa, sb = (json.loads((r / "completed.json").read_text().replace(str(r), "<run>")) for r in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMING} == {k: v for k, v in sb.items() if k not in TIMING}


def steps_on_disk(run: Path) -> list[int]:
    """Steps of the intact checkpoints (manifest checks pass), newest first."""
    return [s for s, p in ckpt.list_checkpoints(run / "checkpoints") if not ckpt.verify_checkpoint(p)]


@pytest.fixture(scope="module")
def unbroken(tiny_models, tiny_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unbroken") / "run"
    res = run_cli(*train_args(tiny_models, tiny_world, out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_three_kills_then_resume_equals_unbroken_run(unbroken, tiny_models, tiny_world, tmp_path):
    run = tmp_path / "run"
    args = train_args(tiny_models, tiny_world, run)

    # 1. killed during a training step (the 4th step: after backward, before the optimiser step)
    res = run_cli(*args, env={"RAGDISTILL_FAULT": "step:4"})
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert steps_on_disk(run) == [2] and not (run / "completed.json").exists()
    count("kill points tested")

    # 2. the resumed run is killed while writing the step-4 checkpoint (weights written, no manifest yet)
    res = run_cli(*args, "--resume", env={"RAGDISTILL_FAULT": "checkpoint_write:1"})
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    debris = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".step-000000004")]
    assert debris, "the kill should have left the half-written checkpoint under its temporary name"
    assert steps_on_disk(run) == [2]  # the half-written one is invisible
    count("kill points tested")

    # 3. the next resumption is killed during the index refresh at step 4 (checkpoint 4 holds index_step=2)
    res = run_cli(*args, "--resume", env={"RAGDISTILL_FAULT": "index_refresh:2"})
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert steps_on_disk(run) == [4, 2]
    assert ckpt.read_state(run / "checkpoints" / "step-000000004")["index_step"] == 2
    assert not any(p.name.startswith(".step-") for p in (run / "checkpoints").iterdir())  # debris pruned
    count("kill points tested")

    # 4. resume to the end: identical to the unbroken run
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr and "step-000000004" in res.stderr
    assert_same_run(unbroken, run)
    count("killed runs that lost nothing", 3)


def test_sigint_saves_a_checkpoint_and_exits_cleanly(unbroken, tiny_models, tiny_world, tmp_path):
    """Ctrl-C during step 3: the step finishes, checkpoint 3 is written, exit 130; --resume completes identically."""
    run = tmp_path / "run"
    args = train_args(tiny_models, tiny_world, run)
    res = run_cli(*args, env={"RAGDISTILL_FAULT": "step:3:SIGINT"})
    assert res.returncode == 130, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "interrupted at step 3" in res.stdout and "--resume" in res.stdout
    assert steps_on_disk(run) == [3, 2]
    assert ckpt.read_state(run / "checkpoints" / "step-000000003")["step"] == 3
    assert not (run / "completed.json").exists()
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(unbroken, run)
    count("SIGINT interruptions that lost nothing")


def test_fault_spec_parsing(monkeypatch):
    from ragdistill.utils import faults

    assert faults.parse("step:3, checkpoint_write:1:sigint,index_refresh") == {
        "step": (3, signal.SIGKILL),
        "checkpoint_write": (1, signal.SIGINT),
        "index_refresh": (1, signal.SIGKILL),
    }
    for bad in ("step:0", ":2", "step:x", "step:1:SIGNOPE", "a:1:2:3"):
        with pytest.raises((ValueError, KeyError)):
            faults.parse(bad)
    sent = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setenv(faults.ENV, "step:2:SIGINT")
    faults.reset()
    for _ in range(4):
        faults.maybe_fault("step")
        faults.maybe_fault("checkpoint_write")
    assert sent == [signal.SIGINT]  # only the 2nd hit of the named point fires, once
    monkeypatch.delenv(faults.ENV)
    faults.maybe_fault("step")
    assert sent == [signal.SIGINT]
    faults.reset()

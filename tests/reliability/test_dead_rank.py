"""A dead rank: SIGKILL one of two torchrun processes (gloo, CPU) in the middle of a step. The survivor stops
within a bounded time with one clear message (not a hang in a collective), nothing is saved after the last
complete checkpoint, and relaunching the same command with --resume finishes the run from it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ragdistill.training import checkpoint as ckpt
from tests.reliability.conftest import ROOT, count
from tests.tiny_models import tiny_overrides
from tests.training.test_distributed import torchrun_command

pytestmark = pytest.mark.distributed
BOUND_S = 60  # from the kill to every process gone (torchrun's own teardown grace is 30 s)


def _launch(out: Path, overrides: list[str], *extra: str, env: dict[str, str] | None = None):
    cmd = torchrun_command(out, overrides, *extra)
    full = dict(
        os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT / "src"), **(env or {})
    )
    full.pop("RAGDISTILL_FAULT", None) if not env else None
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=600)
    return res, time.monotonic() - t0


def test_killing_one_rank_stops_the_other_cleanly_and_resume_finishes(tiny_models, tiny_world, tmp_path):
    out = tmp_path / "run"
    sets = tiny_overrides(
        tiny_models,
        tiny_world,
        **{
            "train.regime": "joint",
            "train.steps": 6,
            "reader.name": tiny_models["reader"],
            "eval.every": 0,
            "eval.final": False,
            "optim.lr_reader": 1e-2,
            "optim.lr_retriever": 1e-3,
            "optim.warmup_steps": 0,
            "train.save_every": 2,
            "data.max_train": 2,
            "train.reader_loss_weight": 1.0,
            "runtime.collective_timeout": 60,
        },
    )
    # rank 1 SIGKILLs itself in step 4 (after its backward, before the gradient all-reduce rank 0 waits in);
    # steps sleep 0.5 s so the clock below measures the teardown, not the tiny arithmetic
    killed_at = {"RAGDISTILL_FAULT": "step:4", "RAGDISTILL_FAULT_RANK": "1", "RAGDISTILL_FAULT_DELAY": "step=0.5"}
    res, seconds = _launch(out, sets, env=killed_at)
    log = res.stdout + res.stderr
    assert res.returncode != 0 and seconds < 300, log[-3000:]  # not a hang: no wait for the 60 s timeout either
    assert "another process of this run died or stopped answering" in log, log[-4000:]
    assert "the last complete checkpoint is" in log and "step-000000002" in log and "--resume" in log
    print(
        f"\ndead rank: torchrun exited {res.returncode} {seconds:.1f} s after launch; survivor's message:\n"
        + next(line for line in log.splitlines() if "another process of this run died" in line)
    )
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints")] == [2]
    assert not (out / "completed.json").exists()

    res, _ = _launch(out, sets, "--resume")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "resumed from" in res.stderr and "step-000000002" in res.stderr
    done = json.loads((out / "completed.json").read_text())
    assert done["steps"] == 6 and done["world_size"] == 2 and done["ranks_in_sync"]
    steps = [
        json.loads(x)["step"]
        for x in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "train"
    ]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicated or missing records after the resume
    count("dead-rank runs that stopped cleanly and resumed")

"""Runs that last: thousands of tiny-model steps with index refreshes, evaluations, logs and checkpoints keep
resident memory and open file descriptors flat; metrics.jsonl's torn last line (a kill mid-write) is repaired
on resume, and TensorBoard's event files stay readable.

Bound: RSS growth from the end of the warm-up (the first 20 % of the steps) to the end < 30 MB; open fds do not
grow (+2 tolerated: a lazily opened library file). RAGDISTILL_LONG_STEPS sets the number of steps (default 2000).
"""

from __future__ import annotations

import json
import logging
import os

import psutil
import pytest

from ragdistill.config import load_config
from ragdistill.training import loop
from ragdistill.training.rundir import MetricsLog
from tests.reliability.conftest import ROOT, note
from tests.tiny_models import tiny_overrides

CONFIG = ROOT / "configs" / "demo" / "finetuned_step2.yaml"
RSS_BOUND_MB = 30
STEPS = int(os.environ.get("RAGDISTILL_LONG_STEPS", "2000"))


@pytest.mark.slow
def test_rss_and_open_files_stay_flat_over_a_long_run(tiny_models, tiny_world, tmp_path, monkeypatch):
    cfg = load_config(
        CONFIG,
        tiny_overrides(
            tiny_models,
            tiny_world,
            **{
                "train.steps": STEPS,
                "index.refresh": "200",
                "eval.every": 500,
                "train.log_every": 10,
                "train.save_every": 500,
                "train.keep_last": 2,
                "eval.final": False,
                "data.max_dev": 4,
                "runtime.threads": 1,
            },
        ),
    )
    proc = psutil.Process()
    curve: list[tuple[int, float, int]] = []
    real = loop.maybe_fault
    seen = [0]

    def sample(point: str) -> None:
        real(point)
        if point == "step":
            seen[0] += 1
            if seen[0] % max(1, STEPS // 20) == 0:
                curve.append((seen[0], proc.memory_info().rss / 2**20, proc.num_fds()))

    monkeypatch.setattr(loop, "maybe_fault", sample)
    summary = loop.train(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == STEPS and summary["refreshes"] >= STEPS // 200 - 1
    warm = [c for c in curve if c[0] >= STEPS // 5]
    growth = warm[-1][1] - warm[0][1]
    print("\nRSS curve (step, MB, open fds): " + ", ".join(f"({s}, {m:.1f}, {f})" for s, m, f in curve))
    print(f"RSS growth after warm-up: {growth:.1f} MB over {warm[-1][0] - warm[0][0]} steps (bound {RSS_BOUND_MB} MB)")
    note(
        "RSS growth measured",
        f"{growth:.1f} MB over {warm[-1][0] - warm[0][0]} steps after a {warm[0][0]}-step "
        f"warm-up (bound {RSS_BOUND_MB} MB; fds {warm[0][2]} -> {warm[-1][2]})",
    )
    assert growth < RSS_BOUND_MB
    assert warm[-1][2] <= warm[0][2] + 2, curve


def test_a_torn_last_line_is_repaired_on_resume_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    log = MetricsLog(out)
    log.open(0, resumed=False)
    for step in range(1, 5):
        log.log({"step": step, "kind": "train", "loss": 1.0 / step})
    log.close()
    good = (out / "metrics.jsonl").read_text()
    with open(out / "metrics.jsonl", "a") as f:  # a kill in the middle of writing step 5's record
        f.write('{"step": 5, "kind": "tra')
    events = sorted((out / "tensorboard").glob("events.*"))
    assert events
    data = events[-1].read_bytes()
    events[-1].write_bytes(data[:-7])  # ... and of its TensorBoard record
    with caplog.at_level(logging.WARNING):
        log = MetricsLog(out)
        log.open(4, resumed=True)
    assert "the last line was cut off" in caplog.text and "truncated to the last complete line" in caplog.text
    assert (out / "metrics.jsonl").read_text() == good
    log.log({"step": 5, "kind": "train", "loss": 0.2})
    log.close()
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()  # the torn file is read up to its cut, the new one whole
    steps = sorted({e.step for e in acc.Scalars("train/loss")})
    assert steps[-1] == 5 and set(steps) >= {1, 2, 3, 5}

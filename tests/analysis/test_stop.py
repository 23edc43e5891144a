"""A stop request ends a long analysis between instances (reproduce's SIGTERM used to wait for the whole of it)."""

from __future__ import annotations

import numpy as np
import pytest

from ragdistill.analysis.run import Instance, analyze_reader
from ragdistill.data.types import Passage, Question
from ragdistill.training.stop import RunStopped, StopRequest


class _NoModelReader:
    """Enough of a reader for instances whose answer is empty: those are skipped without a forward."""

    tokenizer = None

    def input_embedding_matrix(self):
        return np.zeros((4, 2), dtype=np.float32)


def _instances(n: int) -> list[Instance]:
    return [Instance(Question(f"q{i}", "Who?", [""]), [Passage("p", "t", "x")], noun_spans=[]) for i in range(n)]


def test_analysis_stops_before_the_next_instance():
    asked = []

    def should_stop():
        asked.append(len(asked))
        return "terminated" if len(asked) == 3 else None

    with pytest.raises(RunStopped) as info:
        analyze_reader(_NoModelReader(), _instances(5), progress=False, should_stop=should_stop)
    assert info.value.exit_code == 143
    assert len(asked) == 3  # two instances analysed, stopped before the third


def test_analysis_runs_to_the_end_without_a_request():
    out = analyze_reader(_NoModelReader(), _instances(3), progress=False, should_stop=lambda: None)
    assert len(out.measures) == 3


def test_stop_reason_now_follows_signal_and_deadline(monkeypatch):
    """What reproduce's analyses ask (StopRequest.reason_now): a signal's reason, or max-time once the deadline passed."""
    from ragdistill.training import stop as stop_module

    now = [100.0]
    monkeypatch.setattr(stop_module, "_clock", lambda: now[0])
    stop = StopRequest(deadline=150.0)
    assert stop.reason_now() is None
    now[0] = 150.0
    assert stop.reason_now() == "max-time"  # the deadline passed inside the analysis
    signalled = StopRequest()
    signalled.reason = "terminated"
    assert signalled.reason_now() == "terminated"
    assert StopRequest().reason_now() is None  # no deadline, no signal

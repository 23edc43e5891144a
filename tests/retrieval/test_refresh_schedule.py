"""RefreshSchedule: ATLAS's START-END:EVERY syntax, plain numbers, validation."""

from __future__ import annotations

import pytest

from ragdistill.errors import ConfigError
from ragdistill.retrieval.refresh import RefreshSchedule


def test_atlas_example():
    s = RefreshSchedule.parse("0-100:10,100-1000000:500")
    assert s.due_steps(1200) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 600, 1100]
    assert s.is_due(0) and s.is_due(90) and s.is_due(100) and s.is_due(600)
    assert not s.is_due(5) and not s.is_due(110) and not s.is_due(500)
    assert not s.is_due(1_000_000)  # past the last range
    assert str(s) == "0-100:10,100-1000000:500"


def test_due_steps_agrees_with_is_due():
    s = RefreshSchedule.parse("3-50:7,60-90:4")
    assert s.due_steps(120) == [t for t in range(120) if s.is_due(t)]


@pytest.mark.parametrize("spec", ["500", 500, " 500 "])
def test_plain_number(spec):
    s = RefreshSchedule.parse(spec)
    assert s.due_steps(1600) == [0, 500, 1000, 1500]


def test_never_refreshes_only_at_start():
    for spec in ("-1", "never"):
        s = RefreshSchedule.parse(spec)
        assert s.is_due(0) and not s.is_due(1) and not s.is_due(10**9)


def test_parse_is_idempotent():
    s = RefreshSchedule.parse("10")
    assert RefreshSchedule.parse(s) is s


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("0-100:10,abc", "'abc'"),
        ("0-100", "'0-100'"),
        ("100-50:10", "'100-50:10'"),
        ("0-100:0", "'0-100:0'"),
        ("0-100:10,50-200:5", "overlap"),
        ("0", "positive"),
        (1.5, "1.5"),
    ],
)
def test_bad_specs_name_the_problem(spec, fragment):
    with pytest.raises(ConfigError) as err:
        RefreshSchedule.parse(spec, key="training.refresh_index")
    assert "training.refresh_index" in str(err.value)
    assert fragment in str(err.value)


def test_negative_step_is_an_error():
    with pytest.raises(ConfigError):
        RefreshSchedule.parse("10").is_due(-1)

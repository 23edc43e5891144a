"""Run markers: the marker file round trip, and one reuse decision shared by the plan and the runner.

For each marker state the dry run's `planned_status` announces, row by row, what `run_plan`
then does (the runner's work is stubbed: only the decision is under test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ragdistill.experiments.runner as runner
from ragdistill.experiments.markers import MARKER, Marker, analysis_key, read_marker, train_key
from ragdistill.experiments.plan import Options, build_plan, planned_status

ROWS = (
    "offshelf_checkpoint",
    "offshelf_checkpoint_fid",
    "offshelf_distill",
    "finetuned_step1",
    "finetuned_step2",
    "encdec_distill",
    "perplexity_distill",
)


def test_marker_round_trip_keeps_the_files_order_and_unknown_keys(tmp_path):
    written = {
        "setting": "offshelf_distill",
        "dataset": "demo",
        "train_key": "k",
        "run_id": "r",
        "completed": True,
        "seconds": 1.5,
        "finished_at": "2026-01-01T00:00:00",
        "final_eval": {"hr@5": 0.5, "n": 6},
        "reader": "smollm2-135m",
        "retriever": "minilm-l6",
        "steps": 4,
        "skipped_steps": 0,
        "refreshes": 1,
        "config_sha256": "c",
        "deps": {},
        "analysis": {"key": "a", "dirs": {"attention": "x"}},
        "later": [1],
    }
    (tmp_path / MARKER).write_text(json.dumps(written))
    m = read_marker(tmp_path)
    assert m.completed and m.run_id == "r" and m.analysis["key"] == "a" and m.extra == {"later": [1]}
    assert list(m.to_dict().items()) == list(written.items())
    m.write(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / MARKER).read_text()) == written


def test_unreadable_or_partial_markers(tmp_path):
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER).write_text("{not json")
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER).write_text("[1, 2]")
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER).write_text(json.dumps({"run_id": "r", "analysis": None}))
    m = read_marker(tmp_path)
    assert not m.completed and m.analysis == {} and m.deps == {} and m.train_key == ""


# --------------------------------------------------------------------------- plan and runner agree


def _options(world: dict[str, str], out: Path, **kw) -> Options:
    return Options(
        out=out,
        corpus=world["corpus"],
        questions_train=world["train"],
        questions_dev=world["dev"],
        questions_test=world["test"],
        check_hub=False,
        progress=False,
        **kw,
    )


def _finish_every_row(world: dict[str, str], out: Path) -> None:
    """The markers an earlier, finished run of every row (default options) left."""
    plan = build_plan(_options(world, out))
    for it in plan.items:
        if it.status != "run":
            continue
        run_id = f"run-{it.setting.name}"
        deps = {d: f"run-{d}" for d in it.depends_on}
        Marker(
            setting=it.setting.name,
            dataset=it.dataset.label,
            train_key=train_key(it, deps),
            run_id=run_id,
            completed=True,
            reader=it.config.reader.name,
            deps=deps,
            analysis={
                "key": analysis_key(it, run_id, plan.options),
                "reader": it.config.reader.name,
                "dirs": {s: str(it.run_dir / "analysis" / s) for s in it.signals},
            },
        ).write(it.run_dir)


def _edit(out: Path, name: str, **changes) -> None:
    run_dir = out / "custom" / name
    m = read_marker(run_dir)
    for k, v in changes.items():
        setattr(m, k, v)
    m.write(run_dir)


def _garble(out: Path, name: str) -> None:
    (out / "custom" / name / MARKER).write_text("{not json")


ALL_RUN = dict.fromkeys(ROWS, "run")
ALL_REUSE = dict.fromkeys(ROWS, "reuse")
CHANGED = ["offshelf_distill:train.steps=5"]

# state: (earlier run?, edit of its markers, options, expected status per row, a planned reason, a runner message)
STATES = {
    "no markers": (False, None, {}, ALL_RUN, None, None),
    "every row finished": (
        True,
        None,
        {},
        ALL_REUSE,
        ("offshelf_distill", "finished run with the same config found"),
        "reusing the finished run",
    ),
    "incomplete marker": (
        True,
        lambda out: _edit(out, "offshelf_distill", completed=False),
        {},
        {**ALL_REUSE, "offshelf_distill": "run"},
        None,
        None,
    ),
    "unreadable marker": (
        True,
        lambda out: _garble(out, "offshelf_distill"),
        {},
        {**ALL_REUSE, "offshelf_distill": "run"},
        None,
        None,
    ),
    "config changed": (True, None, {"overrides": CHANGED}, {**ALL_REUSE, "offshelf_distill": "run"}, None, None),
    "dependency re-runs": (
        True,
        lambda out: _edit(out, "finetuned_step1", train_key="stale"),
        {},
        {**ALL_REUSE, "finetuned_step1": "run", "finetuned_step2": "run"},
        None,
        None,
    ),
    "--force": (True, None, {"force": True}, ALL_RUN, None, None),
    "--force --only step 1": (
        True,
        None,
        {"force": True, "only": ["finetuned_step1"]},
        {**ALL_REUSE, "finetuned_step1": "run", "finetuned_step2": "run"},
        ("finetuned_step2", "not selected by --only, but finetuned_step1 will re-run"),
        "re-run although not selected by --only: finetuned_step1 re-ran",
    ),
    "--only, another row's config changed": (
        True,
        None,
        {"only": ["finetuned_step1"], "overrides": CHANGED},
        ALL_REUSE,
        ("offshelf_distill", "not selected by --only; its finished run is shown"),
        "shown from its earlier run (not selected by --only)",
    ),
    "analysis options changed": (
        True,
        None,
        {"analysis_n": 7},
        ALL_REUSE,
        ("encdec_distill", "(analysis will be redone: its options changed)"),
        "attention-quality analysis of",
    ),
}


@pytest.mark.parametrize("state", list(STATES))
def test_planned_status_and_the_runner_agree_on_reuse(state, tmp_path, tiny_world, monkeypatch):
    earlier, edit, kw, expected, planned_reason, message = STATES[state]
    out = tmp_path / "out"
    if earlier:
        _finish_every_row(tiny_world, out)
    if edit:
        edit(out)
    plan = build_plan(_options(tiny_world, out, **kw))
    planned_status(plan)  # what the dry run and plan.md show
    planned = {it.setting.name: it.status for it in plan.items if it.setting.name in ROWS}
    assert planned == expected
    if planned_reason:
        assert planned_reason[1] in plan.find("custom", planned_reason[0]).reason

    def finished(item, options):
        return {"final_eval": {"n": 1}, "reader": item.config.reader.name, "retriever": item.config.retriever.name}

    monkeypatch.setattr(runner, "evaluate_reference", finished)
    monkeypatch.setattr(runner, "train_setting", finished)
    monkeypatch.setattr(
        runner, "analyse_setting", lambda item, reader, ctx, **kw: {s: "analysed" for s in item.signals}
    )
    said: list[str] = []
    results = runner.run_plan(plan, say=said.append)
    done = {r.item.setting.name: r.status for r in results if r.item.setting.name in ROWS}
    assert done == {name: {"run": "ran", "reuse": "reused"}[status] for name, status in planned.items()}
    if message:
        assert any(message in line for line in said), said
    for r in results:  # what ran left a complete marker with a fresh run id; what was reused kept its own
        if r.status == "ran":
            assert r.marker["completed"] and r.marker["run_id"] != f"run-{r.item.setting.name}"
            assert read_marker(r.item.run_dir).run_id == r.marker["run_id"]
        elif r.status == "reused":
            assert r.marker["run_id"] == f"run-{r.item.setting.name}"


def _finish_all(world: dict[str, str], out: Path, **kw) -> None:
    """Markers of an earlier finished run of every row (seed repeats and the FiD reader fit included)."""
    plan = build_plan(_options(world, out, **kw))
    for it in plan.items:
        if it.status != "run":
            continue
        run_id = f"run-{it.label}"
        deps = {d: "run-" + it.dep_keys[d].split("/", 1)[1] for d in it.depends_on}
        Marker(
            setting=it.setting.name,
            dataset=it.dataset.label,
            train_key=train_key(it, deps),
            run_id=run_id,
            completed=True,
            reader=it.config.reader.name,
            deps=deps,
            analysis={"key": analysis_key(it, run_id, plan.options)},
        ).write(it.run_dir)


def _stubbed_run(plan, monkeypatch) -> dict[str, str]:
    def finished(item, options):
        return {"final_eval": {"n": 1}, "reader": item.config.reader.name, "retriever": item.config.retriever.name}

    monkeypatch.setattr(runner, "evaluate_reference", finished)
    monkeypatch.setattr(runner, "train_setting", finished)
    monkeypatch.setattr(
        runner, "analyse_setting", lambda item, reader, ctx, **kw: {s: "analysed" for s in item.signals}
    )
    return {r.item.label: r.status for r in runner.run_plan(plan, say=lambda _: None) if r.status != "not run"}


def test_seeds_have_their_own_markers_and_reuse(tmp_path, tiny_world, monkeypatch):
    out = tmp_path / "out"
    _finish_all(tiny_world, out, seeds=2)
    assert read_marker(out / "custom" / "finetuned_step1-seed1").run_id == "run-finetuned_step1-seed1"
    # step 1's second seed went stale: it and the step 2 run that reads it re-run; every other run (seed 0 too) is reused
    _edit(out, "finetuned_step1-seed1", train_key="stale")
    plan = build_plan(_options(tiny_world, out, seeds=2))
    planned_status(plan)
    planned = {it.label: it.status for it in plan.items if it.status != "not run"}
    rerun = {"finetuned_step1-seed1", "finetuned_step2-seed1"}
    assert {k for k, v in planned.items() if v == "run"} == rerun
    done = _stubbed_run(plan, monkeypatch)
    assert {k for k, v in done.items() if v == "ran"} == rerun
    assert read_marker(out / "custom" / "finetuned_step2-seed1").deps == {
        "finetuned_step1": read_marker(out / "custom" / "finetuned_step1-seed1").run_id
    }
    # the repeats carry no analysis (the indicators are the first seed's), and say why
    assert "seeds" in read_marker(out / "custom" / "finetuned_step1-seed1").analysis["skipped"]
    # one seed fewer: the seed-0 runs are the same runs (their keys do not depend on --seeds)
    plan1 = build_plan(_options(tiny_world, out))
    planned_status(plan1)
    assert all(it.status == "reuse" for it in plan1.items if it.status != "not run")


def test_the_fid_reader_fit_is_reused_and_its_rerun_reruns_the_rows_that_read_it(tmp_path, tiny_world, monkeypatch):
    out = tmp_path / "out"
    _finish_all(tiny_world, out)
    plan = build_plan(_options(tiny_world, out))
    planned_status(plan)
    assert plan.find("custom", "fid_reader_fit").status == "reuse"
    _edit(out, "fid_reader_fit", train_key="stale")
    plan = build_plan(_options(tiny_world, out))
    planned_status(plan)
    planned = {it.label: it.status for it in plan.items if it.status != "not run"}
    rerun = {"fid_reader_fit", "offshelf_checkpoint_fid", "encdec_distill", "perplexity_distill"}
    assert {k for k, v in planned.items() if v == "run"} == rerun
    done = _stubbed_run(plan, monkeypatch)
    assert {k for k, v in done.items() if v == "ran"} == rerun
    fit = read_marker(out / "custom" / "fid_reader_fit")
    assert fit.analysis["dirs"] == {} and "row 1b" in fit.analysis["skipped"]
    assert read_marker(out / "custom" / "encdec_distill").deps == {"fid_reader_fit": fit.run_id}
    # the runner's analysis record: no trained retriever/ here (stubbed), so one analysis serves both views
    m = read_marker(out / "custom" / "encdec_distill")
    assert m.analysis["dirs"] == m.analysis["controlled_dirs"] == {"attention": "analysed"}

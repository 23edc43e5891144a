"""A tiny `ragdistill reproduce` end to end: every setting runs on tiny random models, the report is filled,
a rerun reuses everything, `--force --only` redoes a setting and its dependants.

The tests of this module share one run directory and run in file order (each later test
builds on the state the earlier ones leave).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.cli.main import main
from ragdistill.experiments.markers import MARKER, read_marker
from tests.experiments.conftest import TINY_SETS

DECODER_ROWS = ("offshelf_checkpoint", "offshelf_distill", "finetuned_step1")
RUN_ROWS = (
    "offshelf_checkpoint",
    "offshelf_checkpoint_fid",
    "offshelf_distill",
    "finetuned_step1",
    "finetuned_step2",
    "encdec_distill",
    "perplexity_distill",
)


def _argv(models, world, out: Path, *extra: str) -> list[str]:
    # The decoder rows get the tiny decoder through per-setting overrides (so the optional decoder-perplexity
    # row 6b, which --reader would turn on, stays off and is listed as not run).
    argv = [
        "reproduce",
        "--scale",
        "demo",
        "--out",
        str(out),
        "--corpus",
        world["corpus"],
        "--questions-train",
        world["train"],
        "--questions-dev",
        world["dev"],
        "--questions-test",
        world["test"],
        "--encdec-reader",
        models["fid"],
        "--retriever",
        models["retriever"],
        "--analysis-n",
        "3",
        "--ig-steps",
        "1",
        "--no-progress",
        "--no-hub-check",
    ]
    for s in TINY_SETS:
        argv += ["--set", s]
    for row in DECODER_ROWS:
        argv += ["--set", f"{row}:reader.name={models['reader']}", "--set", f"{row}:reader.max_prompt_tokens=128"]
    return argv + list(extra)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models, tiny_world):
    out = tmp_path_factory.mktemp("reproduce") / "out"
    rc = main(_argv(tiny_models, tiny_world, out))
    return {"out": out, "rc": rc, "models": tiny_models, "world": tiny_world}


def _markers(out: Path) -> dict[str, dict]:
    return {d.name: read_marker(d).to_dict() for d in (out / "custom").iterdir() if (d / MARKER).is_file()}


def test_every_setting_runs_and_the_report_is_filled(run):
    out = run["out"]
    assert run["rc"] == 0
    markers = _markers(out)
    assert set(markers) == set(RUN_ROWS)
    for name, m in markers.items():
        assert m["completed"] and m["final_eval"]["n"] == 6 and "hr@5" in m["final_eval"] and "em" in m["final_eval"]
        assert m["analysis"]["dirs"], name
        assert (out / "custom" / name / "config.yaml").is_file()
    # issue 14 §3: step 2 is measured with its own retriever; its controlled view is step 1's analysis (same reader)
    assert markers["finetuned_step2"]["analysis"]["controlled_same_as"] == "finetuned_step1"
    assert markers["finetuned_step2"]["analysis"]["dirs"] != markers["finetuned_step1"]["analysis"]["dirs"]
    for name in ("offshelf_distill", "encdec_distill", "perplexity_distill"):  # own view + a separate controlled view
        a = markers[name]["analysis"]
        assert a["retriever"].endswith(f"{name}/retriever") and a["index"].endswith(f"{name}/index-final")
        assert (out / "custom" / name / "index-final" / "manifest.json").is_file()
        assert set(a["controlled_dirs"]) == set(a["dirs"]) and a["controlled_dirs"] != a["dirs"]
    for name in ("offshelf_checkpoint", "finetuned_step1"):  # retriever fixed: one analysis
        assert markers[name]["analysis"]["dirs"] == markers[name]["analysis"]["controlled_dirs"]
    assert markers["finetuned_step2"]["reader"].endswith("finetuned_step1/reader")
    assert set(markers["offshelf_checkpoint_fid"]["analysis"]["dirs"]) == {"attention", "perplexity"}
    assert (out / "custom" / "finetuned_step1" / "reader").is_dir()  # step 2's teacher
    assert (out / "custom" / "offshelf_distill" / "retriever").is_dir()
    assert not (out / "custom" / "offshelf_distill" / "checkpoints").exists()  # dropped once the setting completed

    report = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    rows = {r["name"]: r for r in report["settings"]}
    # Table 1: HR@5 / EM / F1 and the number of test questions for every setting that ran
    t1 = text.split("## Table 1")[1].split("## Figure 1")[0]
    for name in RUN_ROWS:
        line = next(ln for ln in t1.splitlines() if f"| {name} |" in ln)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(c not in ("", "–") for c in cells[4:8]), line  # HR@1, HR@5, EM, F1
        assert cells[8] == "6"
    # Table 2: a filled row per analysed setting and signal, the reference rows marked
    t2 = text.split("## Table 2")[1].split("## Putting it together")[0]
    for label in (
        "1 offshelf_checkpoint (decoder, attention) — reference",
        "1b offshelf_checkpoint_fid (FiD, perplexity) — reference",
        "2 offshelf_distill (decoder, attention)",
        "5 encdec_distill (FiD, attention)",
        "6 perplexity_distill (FiD, perplexity)",
    ):
        line = next(ln for ln in t2.splitlines() if ln.startswith(f"| {label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] not in ("", "–"), line  # answer-related p90 attention is defined
    assert "mean ± std" in t2 and "### Verdicts" in t2
    assert "## Table 2b — controlled view: every reader on the initial retriever's passages" in text
    # the verdicts compare against the reference of the same family and signal
    assert rows["encdec_distill"]["reference"] == "offshelf_checkpoint_fid"
    assert rows["encdec_distill"]["verdict"]["compared_to_reference"]
    assert rows["offshelf_checkpoint"]["verdict"]["compared_to_reference"] is False
    # ΔHR@5 is the paired difference against row 1 over the same test questions
    for name in ("offshelf_distill", "finetuned_step2", "encdec_distill", "perplexity_distill"):
        r = rows[name]
        assert r["delta_hr5"] == pytest.approx(r["metrics"]["hr@5"] - rows["offshelf_checkpoint"]["metrics"]["hr@5"])
        assert r["delta_n"] == 6
    assert rows["finetuned_step1"]["delta_hr5"] is None  # no retriever trained
    # Figure 1 and histograms exist and are PNGs; the curve comes from metrics.jsonl
    fig1 = out / report["figures"]["figure1"]["custom"]
    assert fig1.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [s for s, _ in rows["offshelf_distill"]["curve"]] == [0, 2]
    hist = report["figures"]["histograms"]["custom"]
    assert hist and all((out / h).read_bytes()[:4] == b"\x89PNG" for h in hist)
    assert all(f"]({h})" in text for h in hist)
    # the optional decoder-perplexity row is listed as not run, with the flag that runs it
    not_run = text.split("## Settings not run")[1].split("##")[0]
    assert "perplexity_distill_decoder" in not_run and "--reader NAME" in not_run
    # the closing sections: together table, run details, environment, rerun command
    assert "| 4 | finetuned_step2 | finetuned_step1's final reader |" in text
    assert "## Run details" in text and "torch" in report["environment"] and "Rerun with: `ragdistill reproduce" in text


def test_rerun_reuses_every_finished_setting(run, capsys):
    before = _markers(run["out"])
    rc = main(_argv(run["models"], run["world"], run["out"]))
    assert rc == 0
    after = _markers(run["out"])
    assert {k: v["run_id"] for k, v in after.items()} == {k: v["run_id"] for k, v in before.items()}
    assert {k: v["analysis"]["key"] for k, v in after.items()} == {k: v["analysis"]["key"] for k, v in before.items()}
    report = json.loads((run["out"] / "report.json").read_text())
    assert {r["name"]: r["status"] for r in report["settings"] if r["name"] in RUN_ROWS} == {
        n: "reused" for n in RUN_ROWS
    }


def test_force_only_step1_reruns_it_and_its_dependant_only(run):
    before = _markers(run["out"])
    rc = main(_argv(run["models"], run["world"], run["out"], "--only", "finetuned_step1", "--force"))
    assert rc == 0
    after = _markers(run["out"])
    changed = {k for k in after if after[k]["run_id"] != before[k]["run_id"]}
    # step 1 was forced; step 2 reads its reader, so it re-ran too; nothing else did
    assert changed == {"finetuned_step1", "finetuned_step2"}
    assert after["finetuned_step2"]["deps"] == {"finetuned_step1": after["finetuned_step1"]["run_id"]}
    report = json.loads((run["out"] / "report.json").read_text())
    status = {r["name"]: r["status"] for r in report["settings"]}
    assert status["finetuned_step1"] == "ran" and status["finetuned_step2"] == "ran"
    assert status["offshelf_checkpoint"] == "reused" and status["encdec_distill"] == "reused"  # shown from earlier runs


def test_a_changed_config_reruns_only_that_setting(run):
    before = _markers(run["out"])
    rc = main(
        _argv(
            run["models"],
            run["world"],
            run["out"],
            "--set",
            "encdec_distill:optim.lr_reader=3e-4",
            "--only",
            "encdec_distill",
        )
    )
    assert rc == 0
    after = _markers(run["out"])
    changed = {k for k in after if after[k]["run_id"] != before[k]["run_id"]}
    assert changed == {"encdec_distill"}
    import yaml

    saved = yaml.safe_load((run["out"] / "custom" / "encdec_distill" / "config.yaml").read_text())
    assert saved["optim"]["lr_reader"] == pytest.approx(3e-4)

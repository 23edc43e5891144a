"""`ragdistill validate-indicators` (issue 18): predictors, correlations, decision record, teachers, dry run, e2e."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragdistill.analysis.indicators import DISTIL, FINE_TUNE, NO_BENEFIT
from ragdistill.cli.main import main
from ragdistill.experiments.sweep import stats as st
from tests.experiments.conftest import TINY_SETS

# --------------------------------------------------------------------------- predictors by hand


def test_ranking_skill_by_hand():
    scores = [[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.1, 0.7], [0.3, 0.3, 0.4]]
    hits = [
        [False, True, False],  # top-S hits, rank 1 misses: +1
        [True, False, False],  # both the same passage: 0
        [True, False, False],  # top-S misses, rank 1 hits: -1
        [False, False, False],
    ]  # nothing: 0
    assert st.ranking_skill_items(scores, hits).tolist() == [1, 0, -1, 0]
    assert st.ranking_skill(scores, hits) == pytest.approx(0.0)
    assert st.ranking_skill(scores[:1], hits[:1]) == pytest.approx(1.0)


def test_position_bias_by_hand():
    scores = [[2.0, 1.0, 1.0], [1.0, 1.0, 2.0]]  # shares [.5,.25,.25] and [.25,.25,.5]
    assert st.position_shares(scores) == pytest.approx([0.375, 0.25, 0.375])
    assert st.position_bias(scores) == pytest.approx(0.5 * (2 * (0.375 - 1 / 3) + (1 / 3 - 0.25)))
    assert st.position_bias([[1.0, 1.0, 1.0]]) == pytest.approx(0.0)
    assert st.position_bias([[1.0, 0.0, 0.0]]) == pytest.approx(2 / 3)
    # log-likelihoods (negative): softmax shares
    assert st.score_shares([-1.0, -1.0]) == pytest.approx([0.5, 0.5])


# --------------------------------------------------------------------------- correlations and the record


def _fixture(n_q=40, n_i=10):
    rng = np.random.default_rng(0)
    base = (rng.random(n_q) < 0.5).tolist()
    hits, inputs = {}, {}
    for t, gain in enumerate([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3]):
        h = [b or (rng.random() < max(0, gain)) for b in base]
        h = [x and not (rng.random() < max(0, -gain)) for x in h]
        hits[f"t{t}"] = h
        inputs[f"t{t}"] = {
            "good": (gain + 0.01 * rng.standard_normal(n_i)).tolist(),
            "noise": rng.standard_normal(n_i).tolist(),
            "position_bias": [[0.5 - gain, 0.5 + gain]] * n_i,
        }
    return inputs, hits, base


def test_correlation_and_bootstrap_on_fixture_numbers():
    inputs, hits, base = _fixture()
    c = st.indicator_correlations(inputs, hits, base, resamples=300, seed=0)
    assert set(c) == {"good", "noise", "position_bias"}
    delta = [np.mean(hits[t]) - np.mean(base) for t in inputs]
    assert c["good"]["rho"] == pytest.approx(st.spearman([np.mean(inputs[t]["good"]) for t in inputs], delta))
    assert c["good"]["rho"] > 0.8 and c["good"]["low"] <= c["good"]["rho"] <= c["good"]["high"]
    assert c["good"]["n_teachers"] == 6 and 0 < c["good"]["n_defined_resamples"] <= 300
    again = st.indicator_correlations(inputs, hits, base, resamples=300, seed=0)
    assert again["good"] == c["good"]  # seeded
    assert c["noise"]["low"] < c["good"]["low"]
    # undefined cases: a constant input gives no ρ; None values are skipped
    inputs["t0"]["good"][0] = None
    flat = {t: {"flat": [1.0] * 10} for t in inputs}
    assert st.indicator_correlations(flat, hits, base, resamples=20)["flat"]["rho"] is None
    assert st.spearman([1, 2, 3], [1, 2, 4]) == pytest.approx(1.0)


def test_decision_record_on_fixture_numbers():
    rows = [
        {"teacher": "a", "advice": DISTIL, "outcome": "improves"},
        {"teacher": "b", "advice": DISTIL, "outcome": "hurts"},
        {"teacher": "c", "advice": FINE_TUNE, "outcome": "no detectable change"},
        {"teacher": "d", "advice": NO_BENEFIT, "outcome": "hurts"},
        {"teacher": "e", "advice": NO_BENEFIT, "outcome": "improves"},
        {"teacher": "f", "advice": None, "outcome": "improves"},
    ]
    r = st.decision_record(rows)
    assert r["n"] == 5 and r["matched"] == 3 and r["share_matched"] == pytest.approx(0.6)
    assert r["table"][DISTIL] == {"improves": 1, "no detectable change": 0, "hurts": 1}
    assert r["per_advice"][NO_BENEFIT] == {"n": 2, "matched": 1}
    assert [x["matched"] for x in r["rows"]] == [True, False, True, True, False, None]


# --------------------------------------------------------------------------- teachers


def test_reinit_top_layers_changes_those_layers_only_and_is_seeded(tiny_models):
    import torch
    from transformers import AutoModelForCausalLM

    from ragdistill.experiments.sweep import reinit_top_layers

    def load():
        return AutoModelForCausalLM.from_pretrained(tiny_models["reader"])

    before = {k: v.clone() for k, v in load().state_dict().items()}
    a, b, c = load(), load(), load()
    assert reinit_top_layers(a, 1, seed=3) == [1]
    reinit_top_layers(b, 1, seed=3)
    reinit_top_layers(c, 1, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    changed = {k for k in before if not torch.equal(before[k], sa[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed)
    assert any("self_attn.q_proj" in k for k in changed)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed, same weights
    assert any(not torch.equal(sa[k], sc[k]) for k in changed)  # another seed, other weights


def test_builtin_teachers_cover_the_graded_set():
    from ragdistill.experiments.sweep import builtin_teachers, load_sweep_config

    sweep = load_sweep_config()
    known = builtin_teachers(sweep)
    assert len(sweep["teachers"]) >= 8 and all(t in known for t in sweep["teachers"])
    assert known["debiased"].signal == "attention-debiased" and known["debiased"].signal_options["orders"] == 4
    assert known["no-value-norm"].signal_options["value_norm"] is False
    assert known["layers-subset"].signal_options["layers"] == [-1]


def test_sweep_config_comments_every_key():
    from ragdistill.experiments.sweep import default_config_path

    for line in default_config_path().read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            assert "#" in line, line


# --------------------------------------------------------------------------- dry run, e2e, reuse


def _sweep_yaml(tmp: Path) -> Path:
    from ragdistill.experiments.sweep import default_config_path

    text = default_config_path().read_text()
    start = text.index("teachers:")
    end = text.index("analysis:")
    text = text[:start] + "teachers: [offshelf, step1-0.5, step1-1.0, perplexity, debiased]  # tiny\n\n" + text[end:]
    text = text.replace("snapshots: [0.125, 0.25, 0.5, 1.0]", "snapshots: [0.5, 1.0]")
    text = text.replace('step1_overrides: ["train.steps=16"]', "step1_overrides: []")
    text = text.replace("reinit_top: 10", "reinit_top: 1").replace("orders: 4 ", "orders: 2 ")
    text = text.replace("resamples: 2000", "resamples: 50").replace("n: 50 ", "n: 3 ")
    path = tmp / "sweep.yaml"
    path.write_text(text)
    return path


def _argv(models, world, out: Path, cfg: Path, *extra: str) -> list[str]:
    argv = [
        "validate-indicators",
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--corpus",
        world["corpus"],
        "--questions-train",
        world["train"],
        "--questions-dev",
        world["dev"],
        "--questions-test",
        world["test"],
        "--reader",
        models["reader"],
        "--fid-reader",
        models["fid"],
        "--retriever",
        models["retriever"],
        "--no-progress",
    ]
    for s in TINY_SETS + ["reader.max_prompt_tokens=128", "eval.every=0", "train.k=3", "data.max_test=4"]:
        argv += ["--set", s]
    return argv + list(extra)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, tiny_models, tiny_world, capsys):
    out = tmp_path / "out"
    rc = main(_argv(tiny_models, tiny_world, out, _sweep_yaml(tmp_path), "--dry-run", "--teachers", "fid-offshelf"))
    cap = capsys.readouterr()
    text = cap.out
    assert rc == 0 and not out.exists(), cap.err
    for name in ("offshelf", "step1-0.5", "step1-1.0", "debiased", "fid-offshelf"):
        assert f"| {name} |" in text
    assert "Estimated time:" in text and "source:step1" in text


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, tiny_models, tiny_world):
    tmp = tmp_path_factory.mktemp("sweep")
    cfg = _sweep_yaml(tmp)
    out = tmp / "out"
    rc = main(_argv(tiny_models, tiny_world, out, cfg))
    return {"rc": rc, "out": out, "cfg": cfg, "models": tiny_models, "world": tiny_world}


def test_end_to_end_writes_report_and_figures(e2e):
    out = e2e["out"]
    assert e2e["rc"] == 0
    report = json.loads((out / "report.json").read_text())
    assert [t["teacher"] for t in report["teachers"]] == [
        "offshelf",
        "step1-0.5",
        "step1-1.0",
        "perplexity",
        "debiased",
    ]
    for t in report["teachers"]:
        assert t["delta_hr@5"]["n"] == report["n_questions"] > 0
        assert t["outcome"] in ("improves", "hurts", "no detectable change")
        assert "answer.mean_attention.p95" in t["inputs"] and "ranking_skill" in t["inputs"]
        assert len(t["position_shares"]) == 3
    assert report["teachers"][0]["reference"] is None and report["teachers"][1]["reference"] == "offshelf"
    assert "ranking_skill" in report["correlations"] and "question.spearman.p90" in report["correlations"]
    assert report["decision_record"]["n"] <= 4
    for path in report["figures"].values():
        assert Path(path).is_file() and Path(path).read_bytes()[:4] == b"\x89PNG"
    ig = {t["teacher"]: t["ig"] for t in report["teachers"]}
    assert [n for n, v in ig.items() if v] == ["perplexity"]  # only the perplexity teacher's scores are IG gains
    assert ig["perplexity"]["n_instances"] == 3 and ig["perplexity"]["ig_nodes_median"] >= 5
    assert ig["perplexity"]["ig_completeness_error_median"] is not None
    md = (out / "report.md").read_text()
    assert "## The answer" in md and "## Decision record" in md and "| step1-1.0 |" in md
    assert "## Time" in md and "- perplexity: its token scores are integrated-gradients" in md
    snaps = out / "custom" / "sources" / "step1" / "snapshots"
    assert (snaps / "step-000001").is_dir()  # the half-way step-1 reader, exported
    assert not (out / "custom" / "sources" / "step1" / "run" / "checkpoints").exists()


def test_rerun_reuses_finished_teachers(e2e, capsys):
    out = e2e["out"]
    stamp = {p: p.stat().st_mtime_ns for p in (out / "custom" / "teachers").glob("*/sweep.json")}
    capsys.readouterr()
    rc = main(_argv(e2e["models"], e2e["world"], out, e2e["cfg"], "--dry-run"))
    assert rc == 0 and "| run |" not in capsys.readouterr().out
    rc = main(_argv(e2e["models"], e2e["world"], out, e2e["cfg"]))
    assert rc == 0
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing redone

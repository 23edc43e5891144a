"""The study report's statistics (issue 14 §4) and which attention decides its verdicts (issue 15 item 5).

Run directories are written by hand (eval/predictions.jsonl, analysis/<signal>/{indicators,instances}) and read
back by `collect`, as `ragdistill reproduce` reads its finished runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ragdistill.analysis.indicators import summarize
from ragdistill.analysis.quality import GroupMeasure, InstanceMeasures, SelectionMeasure
from ragdistill.experiments import report
from ragdistill.experiments.report import collect, verdict_lines
from ragdistill.experiments.settings import BY_NAME

N_Q = 40
N_INST = 60


def _inst(att: float, rho: float, n_tokens: int) -> InstanceMeasures:
    sel = SelectionMeasure(threshold=0.5, n_selected=5, mean_attention=att, lift=att * n_tokens, spearman=rho)
    g = {p: sel for p in (90, 95)}
    return InstanceMeasures(
        n_passage_tokens=n_tokens,
        groups={
            "answer": GroupMeasure(n_group_tokens=2, by_percentile=g),
            "question": GroupMeasure(n_group_tokens=2, by_percentile=g),
        },
    )


def _write_analysis(d: Path, name: str, atts: list[float], rhos: list[float], ns: list[int]) -> str:
    d.mkdir(parents=True)
    measures = [_inst(a, r, n) for a, r, n in zip(atts, rhos, ns)]
    with (d / "instances.jsonl").open("w") as f:
        for i, m in enumerate(measures):
            f.write(
                json.dumps({"reader": name, "question_id": f"q{i}", "passage_ids": ["p1", "p2"], **m.to_dict()}) + "\n"
            )
    (d / "indicators.json").write_text(
        json.dumps(
            {
                "readers": {name: summarize(measures)},
                "settings": {"percentiles": [90, 95], "n_instances": len(measures)},
            }
        )
    )
    return str(d)


def _write_eval(run_dir: Path, hits: list[bool], em: list[float]) -> None:
    (run_dir / "eval").mkdir(parents=True)
    with (run_dir / "eval" / "predictions.jsonl").open("w") as f:
        for i, (h, e) in enumerate(zip(hits, em)):
            f.write(
                json.dumps(
                    {
                        "id": f"t{i}",
                        "answers": ["x"],
                        "retrieved": [f"p{j}" for j in range(20)],
                        "hit_flags": [h] * 20,
                        "hit": h,
                        "em": e,
                        "f1": e,
                    }
                )
                + "\n"
            )


def _result(tmp: Path, name: str, hits, em, analysis: dict | None):
    s = BY_NAME[name]
    run_dir = tmp / name
    _write_eval(run_dir, hits, em)
    dirs = {}
    if analysis is not None:
        dirs[s.signal] = _write_analysis(run_dir / "analysis" / s.signal, name, **analysis)
    cfg = SimpleNamespace(
        reader=SimpleNamespace(name="smollm2-135m"),
        retriever=SimpleNamespace(name="minilm-l6"),
        train=SimpleNamespace(seed=0, k=5),
        data=SimpleNamespace(demo_seed=0, corpus=None),
        eval=SimpleNamespace(ks=[1, 5, 20], match="token"),
        index=SimpleNamespace(dir=None),
    )
    item = SimpleNamespace(
        dataset=SimpleNamespace(label="demo"),
        setting=s,
        reason="",
        flag="",
        run_dir=run_dir,
        config=cfg,
        config_path=Path("x.yaml"),
        overrides=[],
    )
    n = len(hits)
    marker = {
        "final_eval": {
            "n": n,
            "hr@1": sum(hits) / n,
            "hr@5": sum(hits) / n,
            "hr@20": sum(hits) / n,
            "em": sum(em) / n,
            "f1": sum(em) / n,
        },
        "analysis": {"dirs": dirs, "reader": name},
        "steps": 10,
    }
    return SimpleNamespace(item=item, status="ran", marker=marker, error="")


@pytest.fixture
def rows(tmp_path):
    ns = [100, 300] * (N_INST // 2)
    # reference: mean attention 0.015, lift 3.5; the step-1 reader: mean attention 0.022 (higher), lift 3.1 (lower)
    ref = {"atts": [0.01, 0.02] * (N_INST // 2), "rhos": [0.2, 0.25] * (N_INST // 2), "ns": ns}
    good = {"atts": [0.035, 0.009] * (N_INST // 2), "rhos": [0.6, 0.7] * (N_INST // 2), "ns": ns}
    base_hits = [True] * 30 + [False] * 10
    results = [
        _result(tmp_path, "offshelf_checkpoint", base_hits, [0.0] * N_Q, ref),
        # row 2: 12 questions lost, none gained -> hurts
        _result(tmp_path, "offshelf_distill", [True] * 18 + [False] * 22, [0.0] * N_Q, ref),
        _result(tmp_path, "finetuned_step1", base_hits, [1.0] * 20 + [0.0] * 20, good),
        # row 4: 2 gained -> the interval includes 0
        _result(tmp_path, "finetuned_step2", [True] * 32 + [False] * 8, [1.0] * 20 + [0.0] * 20, None),
    ]
    results[3].marker["analysis"] = {"dirs": results[2].marker["analysis"]["dirs"], "same_as": "finetuned_step1"}
    return {r["name"]: r for r in collect(None, results)}


def test_the_reproduce_verdict_decides_on_the_mean_attention_and_names_it(rows):
    """Issue 15.5: the lift says the step-1 reader attends less (3.1 < 3.5), the study's mean attention says more
    (0.022 > 0.015); in reproduce every reader saw the same prompts, so the mean attention decides."""
    v = rows["finetuned_step1"]["verdict"]
    assert v["attention_measure"] == "mean" and v["decided_by"] == "mean attention on M"
    assert v["indicator1"]["holds"] is True and v["indicator2"]["holds"] is True
    assert v["indicator1"]["lift_higher"] is False  # the lift, shown beside, disagrees
    line = next(ln for ln in verdict_lines(rows.values()) if "finetuned_step1" in ln.split("**")[1])
    assert "decided by the mean attention on M" in line and "lift 3.100 vs 3.500" in line
    assert rows["finetuned_step2"]["prediction"] == "helps"


def test_table1_differences_carry_intervals_n_and_outcome(rows):
    d = rows["offshelf_distill"]["deltas"]
    assert d["hr@5"].method == "exact McNemar" and d["hr@5"].discordant == (0, 12) and d["hr@5"].n == N_Q
    assert d["hr@5"].estimate == pytest.approx(-0.3) and d["hr@5"].outcome == "hurts"
    assert d["hr@5"].p_value == pytest.approx(2 / 2**12)
    assert set(d) == {"hr@1", "hr@5", "hr@20", "em", "f1"}
    assert rows["offshelf_distill"]["outcome"] == "hurts"
    assert rows["finetuned_step2"]["outcome"] == "no detectable change"
    assert rows["finetuned_step1"]["deltas"]["em"].outcome == "improves"
    assert "hr@5" not in rows["finetuned_step1"]["deltas"]  # no retriever trained: no ΔHR
    assert rows["offshelf_distill"]["delta_hr5"] == pytest.approx(-0.3)
    t = report.table1(list(rows.values()))
    line = next(ln for ln in t.splitlines() if "| offshelf_distill |" in ln)
    assert "-30.0 [" in line and "| hurts |" in line
    dt = report.differences_table(list(rows.values()))
    assert "| 2 | offshelf_distill | ΔHR@5 | 1 offshelf_checkpoint (retriever) | -30.0 |" in dt
    assert "exact McNemar (discordant 0/12)" in dt and "paired bootstrap" in dt


def test_indicator_intervals_are_paired_over_instances(rows):
    iv = rows["finetuned_step1"]["intervals"]
    d = iv["answer"]["mean_attention"]
    assert d.method == "paired bootstrap" and d.n == N_INST and d.estimate == pytest.approx(0.007)
    assert iv["answer"]["lift"].estimate == pytest.approx(-0.4)
    assert iv["indicator1"] == "holds" and iv["indicator2"] == "holds"


def test_putting_together_agreement_and_conclusion(rows):
    # row 2: its teacher (the off-the-shelf reader, same numbers as the reference) -> no gain, and it hurts: agrees
    assert rows["offshelf_distill"]["prediction"] == "no gain" and rows["offshelf_distill"]["agrees"] is True
    # row 4: predicted a gain, the interval includes 0: the agreement is undefined and says why
    assert rows["finetuned_step2"]["agrees"] is None
    assert "includes 0" in rows["finetuned_step2"]["agrees_why"]
    t = report.together_table(list(rows.values()))
    line = next(ln for ln in t.splitlines() if "| finetuned_step2 |" in ln)
    assert "no detectable change" in line and "holds (interval: holds)" in line and "includes 0" in line
    text = "\n".join(report.conclusion(list(rows.values())))
    assert "**Off-the-shelf distillation hurts the retriever (row 2)**: reproduced" in text
    assert "step 2, improves the retriever (row 4)**: could not be decided" in text and "includes 0 at n=40" in text
    assert "hold for a good teacher (row 3's fine-tuned reader, row 4's teacher)**: reproduced" in text
    assert "Encoder-decoder distillation: only Indicator 1's attention trend (row 5)**: could not be decided" in text
    assert "Interval half-widths (95 %)" in report.power_line(list(rows.values()))


# --------------------------------------------------------------------------- issue 14 §3/§4: two views, seeds


def _own_and_controlled(tmp: Path, name: str, own: dict, controlled: dict | None, passages: str = "p1,p2"):
    """A row's result whose marker has the own view (dirs) and the controlled view (controlled_dirs)."""
    r = _result(tmp, name, [True] * 30 + [False] * 10, [0.0] * N_Q, own)
    s = BY_NAME[name]
    dirs = r.marker["analysis"]["dirs"]
    if passages != "p1,p2":  # the own retriever retrieved other passages for the same questions
        path = Path(dirs[s.signal]) / "instances.jsonl"
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**x, "passage_ids": passages.split(",")}) + "\n" for x in lines))
    ctl = (
        dirs
        if controlled is None
        else {s.signal: _write_analysis(r.item.run_dir / "analysis-controlled" / s.signal, name, **controlled)}
    )
    r.marker["analysis"] = {"dirs": dirs, "controlled_dirs": ctl, "reader": name}
    return r


def test_two_views_own_retriever_and_controlled(tmp_path):
    ns = [100, 300] * (N_INST // 2)
    ref = {"atts": [0.01, 0.02] * (N_INST // 2), "rhos": [0.2, 0.25] * (N_INST // 2), "ns": ns}
    own = {"atts": [0.03, 0.04] * (N_INST // 2), "rhos": [0.5, 0.6] * (N_INST // 2), "ns": ns}
    ctl = {"atts": [0.011, 0.021] * (N_INST // 2), "rhos": [0.21, 0.26] * (N_INST // 2), "ns": ns}
    results = [
        _own_and_controlled(tmp_path, "offshelf_checkpoint", ref, None),
        _own_and_controlled(tmp_path, "offshelf_distill", own, ctl, passages="p7,p8"),
    ]
    rows = {r["name"]: r for r in collect(None, results)}
    r2 = rows["offshelf_distill"]
    assert r2["own_view"] is True and rows["offshelf_checkpoint"]["own_view"] is False
    # the own view decides the verdict, paired by question (its passages differ from the reference's)
    iv = r2["intervals"]
    assert iv["paired_by"] == "question" and iv["answer"]["mean_attention"].method == "paired bootstrap"
    assert iv["answer"]["mean_attention"].n == N_INST and iv["answer"]["mean_attention"].estimate == pytest.approx(0.02)
    assert r2["verdict"]["indicator1"]["holds"] is True
    # the controlled view: every reader on the initial retriever's passages, paired by instance
    ivc = r2["intervals_controlled"]
    assert ivc["paired_by"] == "instance" and ivc["answer"]["mean_attention"].estimate == pytest.approx(0.001)
    assert r2["verdict_controlled"]["attention_measure"] == "mean"
    # the report: Table 2 (own models) with standard errors, then Table 2b labelled as the controlled view
    plan = SimpleNamespace(
        options=SimpleNamespace(scale="demo", command="", out=tmp_path, analysis_seed=0),
        datasets=[SimpleNamespace(label="demo", notes=[], split=None)],
    )
    text = report.render(plan, list(rows.values()), {}, {}, 0.0)
    t2, t2b = text.split("## Table 2 — ")[1].split("## Table 2b — ")
    assert (
        "own final retriever" in t2
        and " ± " in t2.split("| 2 offshelf_distill (decoder, attention) |")[1].split("\n")[0]
    )
    assert t2b.startswith("controlled view: every reader on the initial retriever's passages")
    assert "### Verdicts, controlled view" in t2b
    line = next(ln for ln in t2b.splitlines() if ln.startswith("| 2 offshelf_distill"))
    assert "0.0160" in line  # the controlled mean attention (0.011 + 0.021) / 2


def test_seeds_fold_into_the_first_seeds_row_with_mean_and_sd(tmp_path):
    base = _result(tmp_path, "offshelf_checkpoint", [True] * 30 + [False] * 10, [0.0] * N_Q, None)
    runs = []
    for off, n_hit in ((0, 18), (1, 24), (2, 30)):
        r = _result(
            tmp_path / f"s{off}", "offshelf_distill", [True] * n_hit + [False] * (N_Q - n_hit), [0.0] * N_Q, None
        )
        r.item.seed_offset = off
        r.item.config.train = SimpleNamespace(seed=off, k=5)
        runs.append(r)
    rows = collect(None, [base, *runs])
    assert [r["name"] for r in rows] == ["offshelf_checkpoint", "offshelf_distill"]  # one row per setting
    r2 = rows[1]
    assert r2["seed_offset"] == 0 and r2["delta_hr5"] == pytest.approx(-0.3)  # the first seed's own run
    assert [x["seed_offset"] for x in r2["seed_runs"]] == [0, 1, 2]
    a = r2["across_seeds"]
    assert a["hr@5"]["mean"] == pytest.approx(0.6) and a["hr@5"]["sd"] == pytest.approx(0.15) and a["hr@5"]["n"] == 3
    assert a["delta_hr5"]["mean"] == pytest.approx(-0.15) and a["delta_hr5"]["sd"] == pytest.approx(0.15)
    t = report.table1(rows)
    assert "| seeds | HR@5 mean ± sd | EM mean ± sd | ΔHR@5 mean ± sd |" in t.splitlines()[0]
    line = next(ln for ln in t.splitlines() if "| offshelf_distill |" in ln)
    assert line.endswith("| 3 | 60.0 ± 15.0 | 0.0 ± 0.0 | -15.0 ± 15.0 |") and "-30.0 [" in line
    st = report.seeds_table(rows)
    assert "| 2 | offshelf_distill | +2 | 2 | 75.0 |" in st and "| 2 | offshelf_distill | +0 | 0 | 45.0 |" in st
    assert "3 seeds: -15.0 ± 15.0" in report.together_table(rows)

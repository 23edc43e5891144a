"""The reproduce plan: settings table, both scales' dry runs, --only, overrides, model probes, the not-run listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragdistill.errors import ConfigError, InputError
from ragdistill.experiments.plan import Options, build_plan, format_plan, model_available, planned_status
from ragdistill.experiments.runner import RunResult
from ragdistill.experiments.settings import BY_NAME, SETTINGS, markdown_table

PAPER_STEPS = {  # METHOD.md §4: (steps, warm-up) for NQ / TriviaQA
    "nq": {
        "offshelf_distill": (160000, 2000),
        "finetuned_step1": (160000, 2000),
        "finetuned_step2": (6000, 300),
        "encdec_distill": (10000, 500),
        "perplexity_distill": (20000, 1000),
    },
    "triviaqa": {
        "offshelf_distill": (320000, 4000),
        "finetuned_step1": (320000, 4000),
        "finetuned_step2": (32000, 600),
        "encdec_distill": (30000, 600),
        "perplexity_distill": (10000, 500),
    },
}
PAPER_LR = {
    "offshelf_distill": (1e-5, 1e-5),
    "finetuned_step1": (1e-5, None),
    "finetuned_step2": (None, 5e-7),
    "encdec_distill": (4e-5, 4e-5),
    "perplexity_distill": (4e-5, 4e-5),
}


def test_settings_table_covers_the_study():
    names = [s.name for s in SETTINGS]
    assert names[:7] == [
        "offshelf_checkpoint",
        "offshelf_checkpoint_fid",
        "offshelf_distill",
        "finetuned_step1",
        "finetuned_step2",
        "encdec_distill",
        "perplexity_distill",
    ]
    assert BY_NAME["finetuned_step2"].depends_on == ("finetuned_step1",)
    assert BY_NAME["finetuned_step2"].reader_from == "finetuned_step1"
    assert {s.regime for s in SETTINGS} == {"none", "joint", "reader", "retriever"}
    for s in SETTINGS:  # every row's reference is a reference row of the same family
        if s.reference:
            ref = BY_NAME[s.reference]
            assert ref.regime == "none" and ref.family == s.family
    assert "finetuned_step2" in markdown_table()


def test_paper_dry_run_plans_nq_and_triviaqa_with_the_papers_hyperparameters(tmp_path):
    out = tmp_path / "paper"
    plan = build_plan(Options(out=out, scale="paper", check_hub=False))
    planned_status(plan)
    assert [d.label for d in plan.datasets] == ["nq", "triviaqa"]
    assert len(plan.items) == 2 * len(SETTINGS)
    for it in plan.items:
        cfg, name = it.config, it.setting.name
        assert (cfg.train.batch_size, cfg.train.k, cfg.reader.max_prompt_tokens, cfg.reader.max_new_tokens) == (
            1,
            5,
            128,
            32,
        )
        assert cfg.optim.name == "adam"
        if name in PAPER_STEPS[it.dataset.label]:
            assert (cfg.train.steps, cfg.optim.warmup_steps) == PAPER_STEPS[it.dataset.label][name]
            lr_r, lr_q = PAPER_LR[name]
            if lr_r is not None:
                assert cfg.optim.lr_reader == pytest.approx(lr_r)
            if lr_q is not None:
                assert cfg.optim.lr_retriever == pytest.approx(lr_q)
        # nothing can run here (no data files, no hub, or no GPU) — and each says why and how
        assert it.status == "not run" and it.reason and it.flag
    step2 = plan.find("nq", "finetuned_step2")
    assert step2.config.reader.name == str(out / "nq" / "finetuned_step1" / "reader")
    text = format_plan(plan)
    for needle in (
        "## Plan",
        "## Hyper-parameters (resolved)",
        "## Estimated work",
        "## Resolved configs",
        "| nq | offshelf_distill | tiiuae/falcon-rw-1b",
        "| triviaqa | finetuned_step2 |",
        "320000",
        "32000",
    ):
        assert needle in text
    assert not out.exists()  # a dry run writes nothing


def test_demo_dry_run_writes_nothing_and_lists_the_optional_row(tmp_path):
    out = tmp_path / "demo"
    plan = build_plan(Options(out=out, scale="demo", check_hub=False))
    planned_status(plan)
    status = {it.setting.name: it for it in plan.items}
    assert all(status[n].status == "run" for n in BY_NAME if n != "perplexity_distill_decoder")
    opt = status["perplexity_distill_decoder"]
    assert opt.status == "not run" and "--reader" in opt.flag
    # every setting shares one initial index, and step 2 reads step 1's reader
    assert len({it.config.index.dir for it in plan.items}) == 1
    assert status["finetuned_step2"].config.reader.name.endswith("finetuned_step1/reader")
    # the demo world is planned (counted in memory), not written
    assert plan.datasets[0].counts["corpus"] > 0 and not out.exists()
    text = format_plan(plan)
    assert f"| demo | offshelf_distill | {status['offshelf_distill'].config.train.steps} |" in text


def test_with_a_reader_the_decoder_perplexity_variant_runs_and_the_reference_analyses_both_signals(
    tmp_path, tiny_models
):
    plan = build_plan(Options(out=tmp_path, scale="demo", reader=tiny_models["reader"], check_hub=False))
    rows = {it.setting.name: it for it in plan.items}
    assert rows["perplexity_distill_decoder"].status == "run"
    assert rows["perplexity_distill_decoder"].config.reader.name == tiny_models["reader"]
    assert rows["perplexity_distill_decoder"].config.reader.kind == "decoder"
    assert rows["perplexity_distill_decoder"].config.signal.name == "perplexity"
    assert sorted(rows["offshelf_checkpoint"].signals) == ["attention", "perplexity"]
    assert rows["offshelf_distill"].config.reader.name == tiny_models["reader"]
    # --reader is for the decoder rows only; the FiD rows read the offline BERT2BERT, fitted first (issue 14 §2)
    assert rows["encdec_distill"].base_reader == "minilm-bert2bert"
    assert rows["encdec_distill"].config.reader.name == str(tmp_path / "demo" / "fid_reader_fit" / "reader")


def test_only_selects_dependencies_and_references(tmp_path):
    plan = build_plan(Options(out=tmp_path, only=["finetuned_step2"], check_hub=False))
    status = {it.setting.name: it.status for it in plan.items}
    assert status["finetuned_step2"] == status["finetuned_step1"] == status["offshelf_checkpoint"] == "run"
    for name in ("offshelf_distill", "encdec_distill", "perplexity_distill", "offshelf_checkpoint_fid"):
        assert status[name] == "not run"
        assert "--only" in next(it for it in plan.items if it.setting.name == name).reason


def test_overrides_global_and_per_setting(tmp_path):
    plan = build_plan(
        Options(
            out=tmp_path,
            overrides=["train.steps=3", "finetuned_step2:train.steps=7", "finetuned_step2:optim.lr_retriever=1e-4"],
            check_hub=False,
        )
    )
    steps = {it.setting.name: it.config.train.steps for it in plan.items}
    assert steps["finetuned_step2"] == 7 and steps["offshelf_distill"] == 3 and steps["encdec_distill"] == 3
    assert plan.find("demo", "finetuned_step2").config.optim.lr_retriever == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="not a setting"):
        build_plan(Options(out=tmp_path, overrides=["step9:train.steps=1"], check_hub=False))
    with pytest.raises(ConfigError, match="train.stepz"):
        build_plan(Options(out=tmp_path, overrides=["train.stepz=1"], check_hub=False))


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="questions-train"):
        Options(out=tmp_path, corpus=__file__)
    with pytest.raises(InputError, match="not found"):
        Options(out=tmp_path, corpus="/nonexistent.tsv", questions_train=__file__, questions_test=__file__)
    with pytest.raises(ConfigError, match="only"):
        Options(out=tmp_path, only=["step_9"])
    with pytest.raises(ConfigError, match="scale"):
        Options(out=tmp_path, scale="huge")
    with pytest.raises(ConfigError, match="split-by-article"):
        Options(out=tmp_path, split_by_article=True)


def test_model_availability(tmp_path, tiny_models):
    assert model_available(tiny_models["reader"])[0]
    ok, why = model_available(str(tmp_path / "no-such-model"))
    assert not ok and "does not exist" in why
    ok, why = model_available("someone/surely-not-cached-model-xyz", check_hub=False)
    assert not ok and "cache" in why


def test_unavailable_encdec_reader_rows_are_listed_not_run_in_the_report(tmp_path):
    from ragdistill.experiments.report import write_report

    missing = str(tmp_path / "no-t5")
    plan = build_plan(Options(out=tmp_path / "out", encdec_reader=missing, check_hub=False))
    rows = {it.setting.name: it for it in plan.items}
    for name in ("offshelf_checkpoint_fid", "encdec_distill", "perplexity_distill"):
        assert rows[name].status == "not run"
        assert "reader not available" in rows[name].reason and "--encdec-reader" in rows[name].flag
    (tmp_path / "out").mkdir()
    report = write_report(plan, [RunResult(it, "not run") for it in plan.items])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Settings not run" in text
    for name in ("encdec_distill", "perplexity_distill", "perplexity_distill_decoder"):
        assert f"| {name} |" in text.split("## Settings not run")[1]
    assert "--encdec-reader NAME" in text and "--reader NAME" in text
    assert {r["setting"] for r in report["not_run"]} == set(BY_NAME)
    assert Path(tmp_path / "out" / "report.json").is_file()


def test_configs_ship_inside_the_package():
    """An installed wheel carries the configs (package data); the checkout's configs/ is a link to them."""
    import tomllib

    import ragdistill
    from ragdistill.experiments.plan import configs_root

    package_dir = Path(ragdistill.__file__).resolve().parent
    assert configs_root() == package_dir / "configs"
    shipped = sorted(p.relative_to(package_dir).as_posix() for p in (package_dir / "configs").glob("*/*.yaml"))
    assert {"configs/demo/offshelf_distill.yaml", "configs/paper/offshelf_distill.yaml"} <= set(shipped)
    root = package_dir.parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "configs/**/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["ragdistill"]
    assert (root / "configs").resolve() == package_dir / "configs"


# --------------------------------------------------------------------------- issue 14: the FiD reader fit, --seeds


def test_the_offline_fid_reader_is_fitted_first_and_rows_1b_5_6_start_from_it(tmp_path):
    plan = build_plan(Options(out=tmp_path, check_hub=False))
    planned_status(plan)
    assert plan.items[0].setting.name == "fid_reader_fit" and plan.items[0].status == "run"
    fit = plan.items[0]
    assert fit.config.train.regime == "reader" and fit.config.reader.name == "minilm-bert2bert"
    assert (
        fit.config.eval.final is False and fit.config.index.dir == plan.find("demo", "encdec_distill").config.index.dir
    )
    for name in ("offshelf_checkpoint_fid", "encdec_distill", "perplexity_distill"):
        it = plan.find("demo", name)
        assert it.config.reader.name == str(tmp_path / "demo" / "fid_reader_fit" / "reader")
        assert it.depends_on[0] == "fid_reader_fit" and it.dep_keys["fid_reader_fit"] == fit.key
        assert it.reader_from == "fid_reader_fit" and it.setting.reader_from is None
    assert plan.find("demo", "offshelf_distill").depends_on == []
    text = format_plan(plan)
    assert "| demo | 0b | fid_reader_fit | reader only (retriever fixed) | minilm-bert2bert | run |" in text
    assert "stand-in for the study's pre-trained T5-large" in text
    # --only a FiD row pulls the fit in; --only a decoder row leaves it out
    only = build_plan(Options(out=tmp_path, only=["encdec_distill"], check_hub=False))
    assert only.find("demo", "fid_reader_fit").status == "run"
    assert (
        build_plan(Options(out=tmp_path, only=["finetuned_step1"], check_hub=False))
        .find("demo", "fid_reader_fit")
        .status
        == "not run"
    )
    # per-item overrides reach it
    o = build_plan(Options(out=tmp_path, overrides=["fid_reader_fit:train.steps=3"], check_hub=False))
    as_configured = build_plan(Options(out=tmp_path, check_hub=False)).find("demo", "encdec_distill").config.train.steps
    assert o.find("demo", "fid_reader_fit").config.train.steps == 3 != as_configured
    assert o.find("demo", "encdec_distill").config.train.steps == as_configured  # only the named setting changed


def test_a_named_encdec_reader_needs_no_fit(tmp_path, tiny_models):
    plan = build_plan(Options(out=tmp_path, encdec_reader=tiny_models["fid"], check_hub=False))
    assert plan.find("demo", "fid_reader_fit") is None
    assert plan.find("demo", "encdec_distill").config.reader.name == tiny_models["fid"]
    assert plan.find("demo", "encdec_distill").depends_on == []
    paper = build_plan(Options(out=tmp_path / "p", scale="paper", check_hub=False))
    assert not any(it.setting.name == "fid_reader_fit" for it in paper.items)  # T5-large: nothing to fit


def test_seeds_repeat_the_training_settings_with_their_own_dirs_seeds_and_dependencies(tmp_path):
    plan = build_plan(Options(out=tmp_path, seeds=3, check_hub=False))
    counts = {}
    for it in plan.items:
        counts[it.setting.name] = counts.get(it.setting.name, 0) + 1
    assert counts["offshelf_checkpoint"] == counts["offshelf_checkpoint_fid"] == counts["fid_reader_fit"] == 1
    assert counts["offshelf_distill"] == counts["finetuned_step1"] == counts["finetuned_step2"] == 3
    assert counts["encdec_distill"] == counts["perplexity_distill"] == 3
    base = plan.find("demo", "finetuned_step1").config.train.seed
    for off in range(3):
        s1, s2 = plan.find("demo", "finetuned_step1", off), plan.find("demo", "finetuned_step2", off)
        assert s1.config.train.seed == base + off
        assert s2.config.train.seed == plan.find("demo", "finetuned_step2").config.train.seed + off
        assert s1.run_dir == tmp_path / "demo" / ("finetuned_step1" if off == 0 else f"finetuned_step1-seed{off}")
        assert s2.config.reader.name == str(s1.run_dir / "reader") and s2.dep_keys["finetuned_step1"] == s1.key
        e5 = plan.find("demo", "encdec_distill", off)
        assert e5.dep_keys["fid_reader_fit"] == "demo/fid_reader_fit"  # every seed starts from the one fitted reader
    assert len({it.key for it in plan.items}) == len(plan.items)
    text = format_plan(plan)
    assert "seeds: 3" in text and "| demo | 4 | finetuned_step2-seed2 |" in text
    est = text.split("## Estimated work")[1]
    steps = plan.find("demo", "offshelf_distill").config.train.steps
    assert f"| demo | offshelf_distill-seed1 | {steps} |" in est
    # the repeats are not analysed: the estimate counts their training only
    assert plan.find("demo", "offshelf_distill", 1).estimate["analysis_instances"] == 0
    assert plan.find("demo", "offshelf_distill").estimate["analysis_views"] == 2
    with pytest.raises(ConfigError, match="seeds"):
        Options(out=tmp_path, seeds=0)


def test_the_estimate_counts_each_rows_analyses(tmp_path):
    from ragdistill.experiments.estimate import estimate_work

    o = Options(out=tmp_path, check_hub=False, analysis_n=50)
    plan = build_plan(o)
    views = {it.setting.name: estimate_work(it, o)["analysis_views"] for it in plan.items}
    assert views == {
        "fid_reader_fit": 0,
        "offshelf_checkpoint": 1,
        "offshelf_checkpoint_fid": 1,
        "offshelf_distill": 2,
        "finetuned_step1": 1,
        "finetuned_step2": 1,
        "encdec_distill": 2,
        "perplexity_distill": 2,
        "perplexity_distill_decoder": 2,
    }
    e = estimate_work(plan.find("demo", "offshelf_checkpoint_fid"), o)
    assert e["analysis_instances"] == 50 * 2 and e["analysis_reembeds"] == 0  # two signals, one view
    e = estimate_work(plan.find("demo", "offshelf_distill"), o)
    assert e["analysis_instances"] == 100 and e["analysis_reembeds"] == 1
    big = Options(out=tmp_path, check_hub=False)  # 300 requested, capped by the demo world's test questions
    n_test = plan.datasets[0].counts["test"]
    assert estimate_work(plan.find("demo", "offshelf_checkpoint"), big)["analysis_instances_per_view"] == min(
        300, n_test
    )

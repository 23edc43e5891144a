"""`ragdistill reproduce` on the command line: dry runs of both scales, and user mistakes (exit 2)."""

from __future__ import annotations

import pytest

from ragdistill.cli.main import main


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for needle in (
        "off-the-shelf checkpoint",
        "fine-tuned distillation step 2",
        "perplexity distillation",
        "--encdec-reader",
        "--split-by-article",
        "--dry-run",
        "--only",
        "--force",
    ):
        assert needle in out


def test_paper_dry_run_prints_the_plan_for_nq_and_triviaqa(tmp_path, capsys):
    out_dir = tmp_path / "paper"
    assert main(["reproduce", "--scale", "paper", "--dry-run", "--no-hub-check", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "dataset nq:" in out and "dataset triviaqa:" in out
    # the paper's hyper-parameters: Falcon-1B / T5-large readers, Contriever, steps per dataset, Adam, lr 1e-5 / 4e-5 / 5e-7
    assert (
        "| nq | offshelf_distill | tiiuae/falcon-rw-1b | facebook/contriever | 160000 | 2000 | 1 | 5 | 128 | 32 | 1e-05 |"
        in out
    )
    assert "| triviaqa | offshelf_distill | tiiuae/falcon-rw-1b | facebook/contriever | 320000 | 4000 |" in out
    assert "| nq | finetuned_step2 |" in out and "| 6000 | 300 |" in out and "5e-07" in out
    assert "| triviaqa | encdec_distill | google-t5/t5-large | facebook/contriever | 30000 | 600 |" in out
    assert "## Estimated work" in out and "GPU-h" in out
    assert not out_dir.exists()


def test_demo_dry_run_with_one_dataset_and_overrides(tmp_path, capsys):
    assert (
        main(
            [
                "reproduce",
                "--dry-run",
                "--no-hub-check",
                "--out",
                str(tmp_path / "d"),
                "--set",
                "train.steps=3",
                "--only",
                "offshelf_distill",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| demo | offshelf_distill | smollm2-135m | minilm-l6 | 3 |" in out
    assert "not selected by --only" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--corpus", "nope.tsv"], "questions-train"),
        (["--set", "train.stepz=3"], "train.stepz"),
        (["--set", "nosuch:train.steps=3"], "not a setting"),
        (["--only", "step9"], "unknown setting"),
        (["--split-by-article"], "split-by-article"),
    ],
)
def test_user_mistakes_exit_2_with_the_option_named(tmp_path, capsys, argv, needle):
    assert main(["reproduce", "--dry-run", "--no-hub-check", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err

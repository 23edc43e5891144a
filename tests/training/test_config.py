"""Config loading: every shipped config validates, overrides and dataset sections merge, mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragdistill.config import Config, config_from_dict, load_config, parse_override
from ragdistill.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*/*.yaml"))
SETTINGS = ["offshelf_distill", "finetuned_step1", "finetuned_step2", "encdec_distill", "perplexity_distill"]


def test_every_setting_exists_at_both_scales():
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for scale in ("demo", "paper"):
        for s in SETTINGS:
            assert (scale, s) in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_load_and_comment_every_key(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            assert "#" in line, f"{path.name}: key without a comment: {line!r}"
    raw = yaml.safe_load(path.read_text())
    keys = {k for k in raw if k != "datasets"}
    assert keys == set(Config().to_dict()), "every top-level section is spelled out"
    for section, values in raw.items():
        if isinstance(values, dict) and section != "datasets":
            assert set(values) == set(Config().to_dict()[section]), f"{path.name}: section {section} lists every key"


PAPER = {  # METHOD.md §4: (steps, warm-up) for NQ and TriviaQA, learning rate of the trained model(s)
    "offshelf_distill": ((160000, 2000), (320000, 4000), 1e-5),
    "finetuned_step1": ((160000, 2000), (320000, 4000), 1e-5),
    "finetuned_step2": ((6000, 300), (32000, 600), 5e-7),
    "encdec_distill": ((10000, 500), (30000, 600), 4e-5),
    "perplexity_distill": ((20000, 1000), (10000, 500), 4e-5),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_paper_hyperparameters(name):
    nq, tqa, lr = PAPER[name]
    for dataset, (steps, warmup) in (("nq", nq), ("triviaqa", tqa)):
        cfg = load_config(ROOT / "configs" / "paper" / f"{name}.yaml", [f"dataset={dataset}"])
        assert (cfg.train.steps, cfg.optim.warmup_steps) == (steps, warmup)
        assert cfg.train.batch_size == 1 and cfg.train.k == 5 and cfg.optim.name == "adam"
        assert cfg.reader.max_prompt_tokens == 128 and cfg.reader.max_new_tokens == 32
        trained = [g for g, on in (("reader", cfg.trains_reader), ("retriever", cfg.trains_retriever)) if on]
        for g in trained:
            assert getattr(cfg.optim, f"lr_{g}") == lr
        assert dataset in cfg.data.train


def test_overrides_win_over_dataset_section():
    path = ROOT / "configs" / "paper" / "offshelf_distill.yaml"
    cfg = load_config(
        path, ["dataset=triviaqa", "train.steps=7", "optim.lr_reader=1e-6", "eval.ks=[1,3]", "signal.layers=[0, 2]"]
    )
    assert cfg.dataset == "triviaqa" and cfg.train.steps == 7 and cfg.optim.warmup_steps == 4000
    assert cfg.optim.lr_reader == 1e-6 and cfg.eval.ks == [1, 3] and cfg.signal.layers == [0, 2]
    cfg = load_config(path, ["datasets.nq.train.steps=9"])
    assert cfg.train.steps == 9
    assert parse_override("index.refresh=0-100:10,100-1000:50") == (["index", "refresh"], "0-100:10,100-1000:50")


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.kk=5", "train.kk"),  # unknown key
        ("trian.k=5", "trian"),  # unknown section
        ("train.k=0", "train.k"),  # impossible value
        ("train.k=five", "train.k"),  # wrong type
        ("train.k=2.5", "train.k"),
        ("train.steps=true", "train.steps"),  # a bool is not an int
        ("optim.lr_reader=-1e-5", "optim.lr_reader"),  # negative learning rate
        ("retriever.temperature=0", "retriever.temperature"),
        ("signal.tau_gold=0", "signal.tau_gold"),
        ("signal.tau_gold=nan", "signal.tau_gold"),
        ("train.regime=both", "train.regime"),
        ("signal.name=gradients", "signal.name"),
        ("optim.schedule=step", "optim.schedule"),
        ("optim.warmup_steps=-1", "optim.warmup_steps"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("eval.ks=[]", "eval.ks"),
        ("eval.ks=[0, 5]", "eval.ks[0]"),
        ("index.refresh=every-now-and-then", "index.refresh"),
        ("runtime.mixed_precision=no", "runtime.mixed_precision"),  # YAML boolean
        ("runtime.precision=no", "runtime.precision"),  # YAML boolean
        ("optim.impl=magic", "optim.impl"),
        ("train=5", "train"),
        ("dataset=squad", "dataset"),
        ("train.batch_size=0", "train.batch_size"),
        ("data.chunk_words=0", "data.chunk_words"),
        ("train.reader_loss_weight=0", "train.reader_loss_weight"),  # joint trains both
    ],
)
def test_mistakes_name_the_key(override, key):
    path = ROOT / "configs" / "paper" / "offshelf_distill.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'optim.lr_reader'"):
        config_from_dict({"optim": {"lr_raeder": 1e-5}})


def test_trained_model_needs_a_learning_rate():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"train": {"regime": "retriever"}, "optim": {"lr_retriever": 0.0}})
    assert err.value.key == "optim.lr_retriever"
    config_from_dict({"train": {"regime": "reader"}, "optim": {"lr_retriever": 0.0}})  # fixed retriever: fine


def test_more_gpus_than_exist_is_refused_before_work():
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError) as err:
        config_from_dict({"runtime": {"gpus": n + 1}}, check_hardware=True)
    assert err.value.key == "runtime.gpus"
    config_from_dict({"runtime": {"gpus": n + 1}})  # without the hardware check (e.g. a dry run) it loads


def test_yaml_quirks_and_bad_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr_reader: 1e-5\n")  # YAML 1.1 reads this as a string
    assert load_config(p).optim.lr_reader == 1e-5
    p.write_text("train: [1, 2\n")
    with pytest.raises(InputError) as err:
        load_config(p)
    assert str(p) in str(err.value)
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    p.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=str(p).replace(".", r"\.")):
        load_config(p)


def test_resolved_config_round_trips():
    cfg = load_config(ROOT / "configs" / "demo" / "finetuned_step2.yaml", ["train.steps=3"])
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert cfg.trains_retriever and not cfg.trains_reader

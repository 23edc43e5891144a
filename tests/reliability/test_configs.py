"""Training configs: unknown keys, wrong types and impossible values are refused before any work, naming the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ragdistill.config import Config, config_from_dict, load_config
from ragdistill.errors import ConfigError
from tests.reliability.conftest import ROOT, count

DEMO = ROOT / "configs" / "demo" / "offshelf_distill.yaml"


def leaves(cls=Config, prefix: str = "") -> dict[str, typing.Any]:
    """Dotted key -> annotation of every scalar/list field of the config."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out.update(leaves(tp, key + "."))
        else:
            out[key] = tp
    return out


LEAVES = leaves()


def nested(key: str, value) -> dict:
    parts = key.split(".")
    d: dict = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        d = {p: d}
    return d


def wrong_values(tp) -> list:
    """Values no field of annotation `tp` may accept."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        return [v for v in wrong_values(inner[0]) if v is not None] if len(inner) == 1 else []
    if origin is list:
        return [5, "x", {"a": 1}, [{"a": 1}]]
    if origin is dict:
        return [5, "x", [1]]
    if tp is bool:
        return ["yes", 1, 0.0, [True], None]
    if tp is int:
        return ["ten", 1.5, [1], {"a": 1}, True, None]
    if tp is float:
        return ["fast", [0.1], {"a": 1}, True, None]
    if tp is str:
        return [[1], {"a": 1}, True, None]
    return []


CASES = [(k, v) for k, tp in LEAVES.items() for v in wrong_values(tp)]


@given(case=st.sampled_from(CASES))
def test_wrong_type_names_the_key(case):
    key, value = case
    count("bad-input cases generated")
    if value is None and typing.get_origin(LEAVES[key]) in (typing.Union, __import__("types").UnionType):
        return  # Optional fields accept null
    with pytest.raises(ConfigError) as err:
        config_from_dict(nested(key, value))
    assert err.value.key == key or err.value.key.startswith(key + "["), (key, value, str(err.value))
    assert key.split(".")[-1] in str(err.value)


@given(
    section=st.sampled_from(["", *sorted({k.split(".")[0] for k in LEAVES if "." in k})]),
    name=st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True),
)
def test_unknown_keys_are_refused(section, name):
    count("bad-input cases generated")
    known = {k.split(".")[-1] for k in LEAVES if (k.split(".")[0] == section if section else "." not in k)}
    known |= {f.name for f in dataclasses.fields(Config)} if not section else set()
    if name in known or (not section and name == "datasets"):
        return
    raw = {section: {name: 1}} if section else {name: 1}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert err.value.key == (f"{section}.{name}" if section else name)
    assert "unknown key" in str(err.value)


IMPOSSIBLE = [
    ("train.k", 0),
    ("train.k", -3),
    ("train.steps", 0),
    ("train.batch_size", 0),
    ("train.grad_accum", 0),
    ("optim.lr_reader", -1e-5),
    ("optim.lr_retriever", -1.0),
    ("optim.lr_retriever", float("nan")),
    ("optim.lr_reader", float("inf")),
    ("retriever.temperature", 0),
    ("retriever.temperature", -0.1),
    ("retriever.temperature", float("nan")),
    ("signal.tau_gold", 0.0),
    ("signal.tau_gold", float("-inf")),
    ("optim.eps", 0),
    ("optim.betas", [1.0, 0.9]),
    ("optim.betas", [0.9]),
    ("optim.min_lr_ratio", 1.5),
    ("optim.warmup_steps", -1),
    ("optim.clip_grad_norm", -1),
    ("eval.ks", []),
    ("eval.ks", [0, 5]),
    ("signal.layers", []),
    ("index.refresh", "every so often"),
    ("index.refresh", "0"),
    ("train.regime", "both"),
    ("signal.name", "vibes"),
    ("signal.mode", "max"),
    ("reader.kind", "rnn"),
    ("reader.dtype", "float8"),
    ("runtime.device", "tpu"),
    ("runtime.precision", "fp8"),
    ("runtime.mixed_precision", "fp8"),
    ("runtime.gpus", -1),
    ("data.chunk_words", 0),
    ("reader.name", ""),
    ("data.corpus", ""),
    ("retriever.max_length", 0),
    ("reader.max_prompt_tokens", -1),
    ("train.keep_last", 0),
    ("eval.split", "validation"),
    ("optim.name", "sgd"),
]


@pytest.mark.parametrize("key,value", IMPOSSIBLE, ids=[f"{k}={v}" for k, v in IMPOSSIBLE])
def test_impossible_values_name_the_key(key, value):
    count("bad-input cases generated")
    with pytest.raises(ConfigError) as err:
        config_from_dict(nested(key, value))
    assert err.value.key == key or err.value.key.startswith(key + "["), str(err.value)


def test_regime_needs_a_positive_learning_rate():
    with pytest.raises(ConfigError, match="optim.lr_retriever"):
        config_from_dict({"train": {"regime": "retriever"}, "optim": {"lr_retriever": 0}})
    config_from_dict({"train": {"regime": "reader"}, "optim": {"lr_retriever": 0}})  # not trained: allowed


def test_more_gpus_than_exist_and_cuda_without_gpu():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [f"runtime.gpus={n + 1}"], check_hardware=True)
    assert err.value.key == "runtime.gpus" and f"{n + 1} GPU" in str(err.value)
    load_config(DEMO, [f"runtime.gpus={n + 1}"], check_hardware=False)  # --dry-run on a laptop still validates the rest
    if n == 0:
        with pytest.raises(ConfigError, match="runtime.device"):
            load_config(DEMO, ["runtime.device=cuda"], check_hardware=True)


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.k=0", "train.k"),
        ("optim.lr_reader=-1e-5", "optim.lr_reader"),
        ("retriever.temperature=0", "retriever.temperature"),
        ("runtime.gpus=64", "runtime.gpus"),
        ("train.kk=5", "train.kk"),
        ("train.steps=ten", "train.steps"),
        ("signal.tau_gold=0", "signal.tau_gold"),
    ],
)
def test_cli_refuses_before_any_work(override, key, tmp_path, capsys):
    """Exit 2, the key named, and the run directory not even created."""
    from ragdistill.cli.main import main

    out = tmp_path / "run"
    code = main(["train", "--config", str(DEMO), "--out", str(out), "--set", override])
    err = capsys.readouterr().err
    count("bad-input cases generated")
    assert code == 2, err[-2000:]
    assert f"'{key}'" in err and "Traceback" not in err
    assert not out.exists()


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  steps: 3\n  k: [1, 2\nreader:\n  name: x\n")
    from ragdistill.errors import InputError

    with pytest.raises(InputError) as err:
        load_config(p)
    assert err.value.line is not None and str(p) in str(err.value)


def test_layers_beyond_the_model_are_refused_before_indexing(tiny_models, tiny_world, tmp_path):
    from ragdistill.training.loop import Trainer
    from tests.reliability.test_kill_resume import train_args

    out = tmp_path / "run"
    argv = train_args(tiny_models, tiny_world, out)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = load_config(DEMO, [*sets, "signal.layers=[7]"])
    with pytest.raises(ConfigError) as err:
        Trainer(cfg, out, progress=False).setup()
    assert err.value.key == "signal.layers"
    assert not (out / "index").exists()

"""Experiment trackers (runtime.log_with, --log-with): accelerate's trackers behind the metrics log.

A fake `GeneralTracker` registered with accelerate stands in for wandb / mlflow (neither is installed offline):
it records what it is given. A missing package is simulated by patching accelerate's `is_<name>_available`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker

from ragdistill.cli.main import main
from ragdistill.config import Config, load_config
from ragdistill.errors import ConfigError
from ragdistill.training.rundir import MetricsLog, check_same_config, same_saved_config, write_config
from ragdistill.training.trackers import Trackers, flat_config
from tests.tiny_models import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo" / "offshelf_distill.yaml"


class FakeTracker(GeneralTracker):
    """Records every call; `runs` holds one record per instance."""

    name = "fake"
    requires_logging_directory = False
    runs: list[dict] = []

    def __init__(self, project: str, **kwargs):
        super().__init__()
        self.record = {
            "project": project,
            "kwargs": kwargs,
            "started": False,
            "config": None,
            "logs": [],
            "finished": 0,
        }
        FakeTracker.runs.append(self.record)

    @property
    def tracker(self):
        return self

    def start(self):
        self.record["started"] = True

    def store_init_configuration(self, values: dict):
        self.record["config"] = dict(values)

    def log(self, values: dict, step=None, **kwargs):
        self.record["logs"].append((step, dict(values)))

    def finish(self):
        self.record["finished"] += 1


@pytest.fixture
def fake(monkeypatch):
    """The fake tracker registered as `fake` for one test."""
    FakeTracker.runs = []
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "fake", FakeTracker)
    return FakeTracker


def _args(models, world, out, **extra):
    args = ["train", "--config", str(CONFIG), "--out", str(out), "--no-progress"]
    for o in tiny_overrides(models, world, **extra):
        args += ["--set", o]
    return args


def _tags(record: dict, kind: str) -> list[tuple[int, dict]]:
    return [(step, v) for step, v in record["logs"] if any(k.startswith(f"{kind}/") for k in v)]


# ------------------------------------------------------------------------------------------------ config


def test_the_default_is_tensorboard_and_every_shipped_config_says_so():
    assert Config().runtime.log_with == ["tensorboard"]
    for path in sorted((ROOT / "configs").glob("*/*.yaml")):
        assert load_config(path).runtime.log_with == ["tensorboard"], path.name
        line = next(x for x in path.read_text().splitlines() if x.strip().startswith("log_with:"))
        assert "#" in line, path.name


def test_an_unknown_tracker_is_refused_naming_the_known_ones(tmp_path, capsys):
    with pytest.raises(ConfigError) as exc:
        load_config(CONFIG, ["runtime.log_with=[wandbb]"])
    msg = str(exc.value)
    assert "runtime.log_with" in msg and "did you mean 'wandb'" in msg
    for name in ("tensorboard", "wandb", "mlflow", "comet_ml"):
        assert name in msg
    out = tmp_path / "never"
    assert main(["train", "--config", str(CONFIG), "--out", str(out), "--log-with", "tensorboard,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown tracker 'bogus'" in err and "mlflow" in err and "Traceback" not in err
    assert not out.exists()  # refused before any work
    assert main(["reproduce", "--dry-run", "--no-hub-check", "--out", str(tmp_path / "r"), "--log-with", "bogus"]) == 2
    assert "unknown tracker 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("name,pip", [("wandb", "wandb"), ("mlflow", "mlflow"), ("comet_ml", "comet-ml")])
def test_a_tracker_whose_package_is_missing_is_refused_with_the_pip_install(monkeypatch, tmp_path, capsys, name, pip):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, f"is_{name}_available", lambda: False)
    load_config(CONFIG, [f"runtime.log_with=[{name}]"])  # the name alone is fine (e.g. --dry-run elsewhere)
    with pytest.raises(ConfigError, match=f"pip install {pip}"):
        load_config(CONFIG, [f"runtime.log_with=[{name}]"], check_hardware=True)
    out = tmp_path / "never"
    assert main(["train", "--config", str(CONFIG), "--out", str(out), "--log-with", name]) == 2
    err = capsys.readouterr().err
    assert f"the {name} tracker needs the {pip} package" in err and f"pip install {pip}" in err
    assert not out.exists()


def test_the_flag_parses_names_and_none():
    from ragdistill.cli.train import _log_with, log_with_override

    assert _log_with("tensorboard, wandb,wandb") == ["tensorboard", "wandb"]
    assert _log_with("none") == []
    assert log_with_override(None) == []
    cfg = load_config(CONFIG, log_with_override(["tensorboard", "mlflow"]))
    assert cfg.runtime.log_with == ["tensorboard", "mlflow"]
    assert load_config(CONFIG, log_with_override([])).runtime.log_with == []


def test_trackers_change_neither_fingerprint_nor_reuse_key_and_may_change_on_resume(tmp_path):
    from ragdistill.experiments.markers import train_key

    a = load_config(CONFIG)
    b = load_config(CONFIG, ["runtime.log_with=[tensorboard, wandb]"])
    assert a.fingerprint() == b.fingerprint()
    item = lambda cfg: SimpleNamespace(config=cfg, setting=SimpleNamespace(name="offshelf_distill", regime="joint"))  # noqa: E731
    assert train_key(item(a), {}) == train_key(item(b), {})
    write_config(tmp_path, a)
    check_same_config(tmp_path, b, tmp_path / "config.yaml")  # no ConfigError: RESUMABLE_CHANGES
    assert same_saved_config(tmp_path / "config.yaml", b)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del old["runtime"]["log_with"]  # a run directory written before the key existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert same_saved_config(tmp_path / "config.yaml", a)
    assert not same_saved_config(tmp_path / "config.yaml", load_config(CONFIG, ["train.steps=7"]))


# ------------------------------------------------------------------------------------------------ the log


def test_default_tensorboard_output_is_one_event_stream_as_before(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    log = MetricsLog(out, cfg=load_config(CONFIG))
    log.open(0, resumed=False)
    log.log({"step": 0, "kind": "eval", "split": "dev", "hr@5": 0.5})
    log.log({"step": 1, "kind": "train", "loss": 1.0, "time/reader": 0.1, "skipped": False})
    log.close()
    log.close()  # idempotent
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "tensorboard"]
    files = list((out / "tensorboard").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.") and files[0].is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["eval/hr@5", "time/reader", "train/loss"]
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the config, same stream


def test_the_log_with_no_trackers_writes_metrics_jsonl_only(tmp_path):
    log = MetricsLog(tmp_path, cfg=load_config(CONFIG, ["runtime.log_with=[]"]))
    log.open(0, resumed=False)
    log.log({"step": 1, "kind": "train", "loss": 1.0})
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_only_the_main_process_logs(fake, tmp_path):
    log = MetricsLog(tmp_path, enabled=False, cfg=load_config(CONFIG, ["runtime.log_with=[tensorboard, fake]"]))
    log.open(0, resumed=False)  # another rank's log: no file, no tracker
    log.log({"step": 1, "kind": "train", "loss": 1.0})
    log.close()
    assert fake.runs == [] and list(tmp_path.iterdir()) == []


def test_mlflow_gets_names_it_accepts_and_a_failing_tracker_is_dropped(monkeypatch, tmp_path, caplog):
    import accelerate.utils

    class Flaky(FakeTracker):
        name = "flaky"

        def log(self, values, step=None, **kwargs):
            raise ConnectionError("server gone")

    FakeTracker.runs = []
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "mlflow", FakeTracker)  # mlflow's place, the fake's calls
    monkeypatch.setattr(accelerate.utils, "is_mlflow_available", lambda: True)
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "flaky", Flaky)
    t = Trackers(["mlflow", "flaky"], tmp_path, run_name="offshelf_distill", config={"a": {"b": [1, 2]}, "c": None})
    mlflow, flaky = FakeTracker.runs
    assert mlflow["project"] == "ragdistill" and mlflow["kwargs"] == {"run_name": "offshelf_distill"}
    assert mlflow["config"] == {"a.b": "[1, 2]", "c": None}
    t.log({"step": 3, "kind": "eval", "split": "dev", "hr@5": 0.25, "time/eval": 2.0})
    assert mlflow["logs"] == [(3, {"eval/hr_at_5": 0.25, "time/eval": 2.0})]
    assert "the flaky tracker failed (ConnectionError: server gone)" in caplog.text and flaky["finished"] == 1
    t.log({"step": 4, "kind": "train", "loss": 1.0})
    t.finish()
    assert len(mlflow["logs"]) == 2 and mlflow["finished"] == 1 and flaky["finished"] == 1


def test_flat_config_dots_sections_and_writes_lists_as_json():
    flat = flat_config(load_config(CONFIG).to_dict())
    assert flat["optim.betas"] == "[0.9, 0.999]" and flat["train.regime"] == "joint" and flat["signal.layers"] is None
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in flat.values())


# ------------------------------------------------------------------------------------------------ runs


def test_a_run_sends_config_step_and_final_metrics_to_the_tracker(fake, tiny_models, tiny_world, tmp_path, capsys):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_world, out, **{"train.steps": 2, "eval.every": 1, "train.save_every": 0})
    assert main(args + ["--log-with", "tensorboard,fake"]) == 0
    (run,) = fake.runs
    assert run["started"] and run["finished"] == 1 and run["project"] == "ragdistill"
    cfg = run["config"]
    assert cfg["train.steps"] == 2 and cfg["train.k"] == 3 and cfg["name"] == "offshelf_distill"
    assert cfg["runtime.log_with"] == '["tensorboard", "fake"]' and cfg["retriever.name"] == tiny_models["retriever"]
    train = _tags(run, "train")
    assert [s for s, _ in train] == [1, 2] and all("train/loss" in v and "time/reader" in v for _, v in train)
    assert [s for s, _ in _tags(run, "eval")] == [0, 1, 2]
    ((final_step, final),) = _tags(run, "final")
    assert final_step == 2 and {"final/em", "final/f1", "final/hr@1"} <= set(final)
    done = json.loads((out / "completed.json").read_text())
    assert final["final/em"] == done["final_eval"]["em"]
    # TensorBoard's files are as without the other tracker: one event stream, nothing beside it
    files = list((out / "tensorboard").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
    assert "log_with: [tensorboard, fake]" in (out / "config.yaml").read_text()


def test_trackers_are_closed_on_sigterm_and_on_errors(fake, monkeypatch, tiny_models, tiny_world, tmp_path, capsys):
    from ragdistill.training import loop
    from ragdistill.utils import faults

    out = tmp_path / "run"
    args = _args(tiny_models, tiny_world, out, **{"train.steps": 4, "eval.every": 0}) + ["--log-with", "fake"]
    faults.reset()
    monkeypatch.setenv(faults.ENV, "step:1:SIGTERM")
    try:
        assert main(args) == 143  # the step finishes, a checkpoint, exit 143
    finally:
        faults.reset()
    monkeypatch.delenv(faults.ENV)
    assert fake.runs[-1]["finished"] == 1 and [s for s, _ in _tags(fake.runs[-1], "train")] == [1]
    assert not (out / "tensorboard").exists()  # --log-with fake: TensorBoard left out

    def boom(self, seconds):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop.Trainer, "_finish", boom)  # an error after the last step, on --resume with
    with pytest.raises(RuntimeError, match="boom"):  # other trackers than the run started with
        main(args[:-1] + ["tensorboard,fake", "--resume"])
    assert fake.runs[-1]["finished"] == 1 and [s for s, _ in _tags(fake.runs[-1], "train")] == [2, 3, 4]


def test_reproduce_passes_the_trackers_to_every_setting_and_refuses_missing_ones(fake, monkeypatch, tmp_path, capsys):
    assert (
        main(
            ["reproduce", "--dry-run", "--no-hub-check", "--out", str(tmp_path / "d"), "--log-with", "tensorboard,fake"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    lines = [x for x in printed.splitlines() if x.startswith("reproduce overrides:")]
    assert lines and all('runtime.log_with=["tensorboard", "fake"]' in x for x in lines)

    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    out = tmp_path / "r"
    assert main(["reproduce", "--no-hub-check", "--no-progress", "--out", str(out), "--log-with", "wandb"]) == 2
    assert "pip install wandb" in capsys.readouterr().err
    assert not list(out.rglob("reproduce.json")) and not list(out.rglob("metrics.jsonl"))  # no setting ran

"""Security: no pickle of untrusted data, no remote code without the flag, writes stay in the run directory."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.training import checkpoint as ckpt
from ragdistill.utils.io import sha256_file
from tests.reliability.conftest import ROOT, count

SRC = ROOT / "src" / "ragdistill"


class _Exploit:
    """Pickles into a call of os.system: what a booby-trapped checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_in_a_checkpoint_is_refused(tmp_path):
    root = tmp_path / "checkpoints"
    path = ckpt.save_checkpoint(
        root, 1, modules={"retriever": torch.nn.Linear(2, 2)}, objects={"optimizer": {"state": {}, "param_groups": []}}
    )
    marker = tmp_path / "pwned"
    torch.save({"state": _Exploit(marker)}, path / "optimizer.pt")  # the attacker replaces the file ...
    manifest = json.loads((path / "manifest.json").read_text())  # ... and fixes up the manifest too
    manifest["files"]["optimizer.pt"] = {
        "sha256": sha256_file(path / "optimizer.pt"),
        "bytes": (path / "optimizer.pt").stat().st_size,
    }
    # ... in the manifest's own serialisation, so even the byte check passes
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    assert ckpt.verify_checkpoint(path) == []  # checksums cannot help here
    with pytest.raises(InputError, match="optimizer.pt"):
        ckpt.load_object(path, "optimizer")  # weights_only=True refuses the code
    count("corrupted files tried")
    assert not marker.exists()


def test_weight_files_are_safetensors_not_pickle(tmp_path):
    path = ckpt.save_checkpoint(
        tmp_path / "c", 1, modules={"reader": torch.nn.Linear(3, 3)}, tensors={"snap": {"w": torch.ones(2)}}
    )
    for name in ("reader.safetensors", "snap.safetensors"):
        head = (path / name).read_bytes()[:8]
        assert int.from_bytes(head, "little") < 10_000_000  # safetensors: a little-endian JSON header length
        assert not (path / name).read_bytes().startswith(b"\x80")  # not a pickle stream


def _calls(pattern: str) -> list[tuple[str, int, str]]:
    out = []
    for f in sorted(SRC.rglob("*.py")):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(pattern, code):
                out.append((str(f.relative_to(ROOT)), i, line.strip()))
    return out


def test_source_never_unpickles_untrusted_data_or_trusts_remote_code():
    """A static scan of the package: every torch.load is weights_only=True; no pickle/eval/unsafe YAML."""
    loads = _calls(r"torch\.load\(")
    assert all("weights_only=True" in line for _, _, line in loads), loads
    for pattern in (
        r"\bpickle\.loads?\(",
        r"allow_pickle\s*=\s*True",
        r"\byaml\.load\(",
        r"(?<![\w.])eval\(",
        r"(?<![\w.])exec\(",
        r"trust_remote_code\s*=\s*True",
        r"yaml\.unsafe_load",
        r"yaml\.full_load",
    ):
        assert not _calls(pattern), (pattern, _calls(pattern))


def _custom_code_model(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "remote-code-model"
    d.mkdir()
    marker = tmp_path / "custom-code-ran"
    (d / "config.json").write_text(
        json.dumps(
            {
                "model_type": "ragdistill-evil",
                "architectures": ["EvilModel"],
                "auto_map": {
                    "AutoConfig": "evil.EvilConfig",
                    "AutoModel": "evil.EvilModel",
                    "AutoModelForCausalLM": "evil.EvilModel",
                },
            }
        )
    )
    (d / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    return d, marker


@pytest.mark.parametrize("what", ["causal_lm", "encoder", "reader_kind", "tokenizer"])
def test_remote_code_is_not_run_without_the_flag(tmp_path, what):
    from ragdistill import models
    from ragdistill.readers import detect_kind

    d, marker = _custom_code_model(tmp_path)
    load = {
        "causal_lm": models.load_causal_lm,
        "encoder": models.load_encoder,
        "reader_kind": detect_kind,
        "tokenizer": models.load_tokenizer,
    }[what]
    with pytest.raises(ModelError) as err:
        load(str(d))
    assert str(d) in str(err.value) or "remote-code-model" in str(err.value)
    assert not marker.exists(), "custom model code ran without trust_remote_code"


def test_configs_default_to_no_remote_code():
    from ragdistill.config import load_config

    for f in sorted((ROOT / "configs").glob("*/*.yaml")):  # the training configs (sweep/ holds the sweep's own)
        assert load_config(f).reader.trust_remote_code is False, f


def test_a_run_writes_only_inside_its_directory(tiny_models, tiny_world, tmp_path):
    """Config strings that look like paths (name, description, ../ data paths) never steer where files go."""
    from ragdistill.config import load_config
    from ragdistill.training.loop import train
    from tests.reliability.test_kill_resume import CONFIG, train_args

    box = tmp_path / "box"
    (box / "data").mkdir(parents=True)
    for k in ("corpus", "train", "dev", "test"):
        shutil.copy(tiny_world[k], box / "data" / Path(tiny_world[k]).name)
    run = box / "runs" / "r1"
    argv = train_args(tiny_models, tiny_world, run)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    rel = {k: f"{run}/../../data/{Path(tiny_world[k]).name}" for k in ("corpus", "train", "dev", "test")}
    sets += [f"data.{k}={v}" for k, v in rel.items()]
    sets += ["name=../../../escaped", "description=../../../escaped/also", "train.steps=2", "eval.final=false"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    train(load_config(CONFIG, sets), run, progress=False)
    new_or_changed = [
        p for p in tmp_path.rglob("*") if p not in before or (p.is_file() and p.stat().st_mtime_ns != before[p])
    ]
    outside = [p for p in new_or_changed if run not in p.parents and p not in (run, box / "runs")]
    assert not outside, outside
    assert not list(tmp_path.rglob("escaped*")) and not (ROOT.parent / "escaped").exists()


def test_monitor_options_cannot_redirect_its_output(tiny_models, tiny_world, tmp_path):
    from ragdistill.config import load_config
    from ragdistill.training.loop import Trainer
    from tests.reliability.test_kill_resume import CONFIG, train_args

    run = tmp_path / "run"
    argv = train_args(tiny_models, tiny_world, run)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    with pytest.raises(ConfigError, match="monitor.options.*out_dir"):  # refused when the config loads
        cfg = load_config(CONFIG, [*sets, "monitor.every=1", f"monitor.options={{out_dir: {tmp_path / 'elsewhere'}}}"])
        Trainer(cfg, run, progress=False).setup()
    assert not (tmp_path / "elsewhere").exists() and not run.exists()

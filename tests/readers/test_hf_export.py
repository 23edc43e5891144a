"""Issue 16 item 2: a saved reader directory is a plain Hugging Face model, with a model card.

Each reader is saved, then loaded in a fresh Python process that never imports ragdistill, with
`AutoModelForCausalLM` / `AutoModelForSeq2SeqLM`, `AutoTokenizer` and `GenerationConfig`; its
logits must equal the reader's model's within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.readers.card import CARD_FILE, render_model_card, write_model_card
from ragdistill.readers.decoder import DecoderReader
from ragdistill.readers.fid import FiDReader
from ragdistill.readers.fid_tiny import tiny_bert2bert, tiny_t5, tiny_tokenizer
from tests.readers.test_decoder_reference import tiny_model, tokenizer

TEXT = "question: who wrote Moby Dick? title: Moby Dick context: Herman Melville wrote Moby Dick in 1851."
DECODER_IN = "Herman Melville wrote Moby Dick"

PLAIN_LOAD = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

    path, kind, text, out = sys.argv[1:5]
    auto = AutoModelForCausalLM if kind == "decoder" else AutoModelForSeq2SeqLM
    model = auto.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    gen = GenerationConfig.from_pretrained(path)
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        if kind == "decoder":
            logits = model(input_ids=ids).logits
        else:
            dec = torch.tensor([[gen.decoder_start_token_id] + tok("Herman Melville", add_special_tokens=False)["input_ids"]])
            logits = model(input_ids=ids, decoder_input_ids=dec).logits
        generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3)
    torch.save({"ids": ids, "logits": logits, "class": type(model).__name__, "generated": generated,
                "gen": gen.to_dict(), "chat": bool(getattr(tok, "chat_template", None)),
                "ragdistill_imported": any(m.split(".")[0] == "ragdistill" for m in sys.modules)}, out)
""")


def _load_plain(path, kind: str, text: str, tmp_path) -> dict:
    out = tmp_path / "plain.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(path), kind, text, str(out)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=False)


def _front_matter(text: str) -> dict[str, str | list[str]]:
    assert text.startswith("---\n")
    head = text.split("---\n")[1]
    out: dict[str, str | list[str]] = {}
    key = None
    for line in head.splitlines():
        if line.startswith("- "):
            out[key].append(line[2:])
        else:
            key, _, value = line.partition(":")
            out[key] = json.loads(value) if value.strip().startswith('"') else (value.strip() or [])
    return out


def test_decoder_reader_loads_as_plain_causal_lm(tmp_path):
    tok = tokenizer()
    reader = DecoderReader(tiny_model("llama", seed=2), tok, max_new_tokens=7)
    reader.save_pretrained(tmp_path / "reader")
    plain = _load_plain(tmp_path / "reader", "decoder", DECODER_IN, tmp_path)
    assert not plain["ragdistill_imported"] and plain["class"] == "LlamaForCausalLM"
    assert plain["ids"][0].tolist() == tok(DECODER_IN)["input_ids"]
    with torch.no_grad():
        mine = reader.model(input_ids=plain["ids"]).logits
    torch.testing.assert_close(plain["logits"], mine, rtol=0, atol=1e-5)
    gen = plain["gen"]  # the reader's own decoding: greedy, its stop ids, pad id and answer length
    assert gen["do_sample"] is False and gen["max_new_tokens"] == 7
    assert sorted(gen["eos_token_id"]) == reader.stop_token_ids and gen["pad_token_id"] == reader.pad_token_id
    assert plain["chat"]  # SmolLM2's chat template travels with the tokenizer
    with torch.no_grad():
        greedy = reader.model.generate(
            input_ids=plain["ids"],
            attention_mask=torch.ones_like(plain["ids"]),
            max_new_tokens=3,
            do_sample=False,
            eos_token_id=reader.stop_token_ids,
            pad_token_id=reader.pad_token_id,
        )
    assert plain["generated"].tolist() == greedy.tolist()
    card = (tmp_path / "reader" / CARD_FILE).read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["tags"] == ["ragdistill", "retrieval-augmented-generation"]
    # reloading as a reader keeps the base model; a bundled name is written as its hub id
    again = DecoderReader(str(tmp_path / "reader"))
    assert again.base_model == reader.base_model


@pytest.mark.parametrize("arch", ["t5", "bert2bert"])
def test_fid_reader_loads_as_plain_seq2seq_lm(tmp_path, arch):
    tok = tiny_tokenizer()
    model = tiny_t5(tok, seed=2) if arch == "t5" else tiny_bert2bert(tok, seed=2)
    reader = FiDReader(model, tok, name="tiny-base/model", max_new_tokens=5)
    reader.save_pretrained(tmp_path / "reader")
    plain = _load_plain(tmp_path / "reader", "fid", TEXT, tmp_path)
    assert not plain["ragdistill_imported"]
    assert plain["class"] == ("T5ForConditionalGeneration" if arch == "t5" else "EncoderDecoderModel")
    assert plain["ids"][0].tolist() == tok(TEXT)["input_ids"]
    gen = plain["gen"]
    assert (gen["decoder_start_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (
        reader.start_id,
        reader.eos_id,
        reader.pad_id,
    )
    assert gen["do_sample"] is False and gen["max_new_tokens"] == 5
    dec = torch.tensor([[reader.start_id] + tok("Herman Melville", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        mine = reader.model(input_ids=plain["ids"], decoder_input_ids=dec).logits
    torch.testing.assert_close(plain["logits"], mine, rtol=0, atol=1e-5)
    # one passage through the reader = the plain model on that passage's encoder input
    [answer] = reader.generate(
        ["who wrote Moby Dick?"], [[Passage("a", "Moby Dick", "Herman Melville wrote Moby Dick in 1851.")]]
    )
    with torch.no_grad():
        ids = reader.model.generate(
            input_ids=plain["ids"],
            attention_mask=torch.ones_like(plain["ids"]),
            max_new_tokens=3,
            do_sample=False,
            decoder_start_token_id=reader.start_id,
            eos_token_id=reader.eos_id,
            pad_token_id=reader.pad_id,
        )
    assert plain["generated"].tolist() == ids.tolist()
    assert isinstance(answer, str)
    meta = _front_matter((tmp_path / "reader" / CARD_FILE).read_text())
    assert meta["pipeline_tag"] == "text2text-generation" and meta["base_model"] == "tiny-base/model"
    assert FiDReader.from_pretrained(str(tmp_path / "reader")).base_model == "tiny-base/model"


def test_model_card_holds_the_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"is_encoder_decoder": True}))
    path = write_model_card(
        tmp_path,
        base_model="google/flan-t5-base",
        setting="finetuned_step1",
        data="NQ train (79,168)",
        steps=1200,
        metrics={"em": 0.41237, "f1": 0.5, "hr@5": 0.7},
        indicators={"answer": {"p95": {"lift": 3.2}}, "verdict": "good"},
        extra={"regime": "joint"},
    )
    text = path.read_text()
    meta = _front_matter(text)
    assert meta == {
        "library_name": "transformers",
        "base_model": "google/flan-t5-base",
        "tags": ["ragdistill", "retrieval-augmented-generation"],
        "pipeline_tag": "text2text-generation",
    }
    for needle in (
        "| Base model | google/flan-t5-base |",
        "| Setting | finetuned_step1 |",
        "| Data | NQ train (79,168) |",
        "| Training steps | 1200 |",
        "| regime | joint |",
        "## Final metrics",
        "| em | 0.4124 |",
        "| hr@5 | 0.7 |",
        "## Attention-quality indicators",
        "| answer.p95.lift | 3.2 |",
        "| verdict | good |",
        "AutoModelForSeq2SeqLM.from_pretrained",
    ):
        assert needle in text, needle
    # unknowns say so; a local path is no hub id, so it stays out of the front matter
    bare = render_model_card(kind="decoder", base_model=str(tmp_path), setting=None, data=None, steps=None)
    assert "base_model" not in _front_matter(bare) and "| Training steps | not recorded |" in bare
    assert "## Final metrics" not in bare and _front_matter(bare)["pipeline_tag"] == "text-generation"


def test_bundled_names_map_to_hub_ids():
    from ragdistill.errors import ModelError
    from ragdistill.models import BERT2BERT, SMOLLM2, _gguf_cache, base_model_id, resolve

    assert base_model_id(SMOLLM2) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id(BERT2BERT) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("google/flan-t5-base") == "google/flan-t5-base"
    try:
        cached = _gguf_cache(resolve(SMOLLM2))
    except ModelError:  # the bundled package may be absent
        return
    assert base_model_id(str(cached)) == "HuggingFaceTB/SmolLM2-135M-Instruct"

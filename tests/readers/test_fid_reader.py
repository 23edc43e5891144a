"""FiD reader API: generation, perplexity, LM loss, loading/saving, errors, and the bundled BERT2BERT default."""

from __future__ import annotations

import json

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.readers.fid import BERT2BERT, READER_FILE, FiDReader, is_fid_name
from ragdistill.readers.fid_tiny import tiny_bert2bert, tiny_t5, tiny_tokenizer, write_tiny_bert2bert, write_tiny_t5

Q = "who wrote the novel Moby Dick?"
A = "Herman Melville"
PASSAGES = [
    Passage("a", "Moby Dick", "Herman Melville wrote Moby Dick in 1851."),
    Passage("b", "Rome", "Rome is the capital city of Italy."),
    Passage("c", "", "Mount Everest is the highest mountain on Earth."),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def t5(tok):
    return tiny_t5(tok, seed=1)


@pytest.fixture(scope="module")
def reader(t5, tok):
    return FiDReader(t5, tok, max_passage_tokens=64)


@pytest.fixture(scope="module")
def bert_tok():
    from transformers import AutoTokenizer

    from ragdistill.models import resolve

    return AutoTokenizer.from_pretrained(resolve("minilm-l6").path)


def _row(tok, q, p):
    title = f"title: {p.title} " if p.title else ""
    return tok(f"question: {q} {title}context: {p.text}", return_tensors="pt")["input_ids"]


def test_kind_and_embeddings(reader, t5):
    assert reader.kind == "fid"
    emb = reader.input_embedding_matrix()
    assert emb.shape == (t5.config.vocab_size, t5.config.d_model)
    assert torch.equal(emb, t5.shared.weight) and not emb.requires_grad


def test_encoder_input_format(reader, tok):
    res = reader.attention_scores(Q, PASSAGES, A)  # span="block": a passage's whole encoder input
    s, e = res.passage_spans[2]
    assert (
        tok.decode(res.input_ids[s:e]) == f"question: {Q} context: Mount Everest is the highest mountain on Earth.</s>"
    )  # no title: no "title:"
    first = res.input_ids[: res.passage_spans[0][1]]
    assert tok.decode(first) == f"question: {Q} title: Moby Dick context: Herman Melville wrote Moby Dick in 1851.</s>"


def test_perplexity_matches_hf_loss_per_passage(reader, t5, tok):
    S = reader.perplexity_scores(Q, PASSAGES, A)
    assert S.shape == (3,) and S.dtype == torch.float32
    labels = tok(A, add_special_tokens=False, return_tensors="pt")["input_ids"]  # the answer's tokens, no EOS
    with torch.no_grad():
        ref = torch.stack([-t5(input_ids=_row(tok, Q, p), labels=labels).loss for p in PASSAGES])
    torch.testing.assert_close(S, ref, rtol=1e-5, atol=1e-6)
    small = FiDReader(t5, tok, max_passage_tokens=64, batch_size=2)  # chunked over passages
    torch.testing.assert_close(small.perplexity_scores(Q, PASSAGES, A), S, rtol=1e-5, atol=1e-6)
    assert reader.perplexity_scores(Q, [], A).shape == (0,)


def test_lm_loss_single_passage_is_plain_seq2seq_loss(reader, t5, tok):
    labels = tok(A, return_tensors="pt")["input_ids"]  # answer + </s>
    with torch.no_grad():
        ref = t5(input_ids=_row(tok, Q, PASSAGES[0]), labels=labels).loss
        got = reader.lm_loss([Q], [[PASSAGES[0]]], [A])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_lm_loss_fuses_passages_in_the_decoder(reader, t5, tok):
    """K passages: the decoder reads the concatenation of the K separately encoded rows."""
    labels = tok(A, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = torch.cat([t5.get_encoder()(input_ids=_row(tok, Q, p)).last_hidden_state for p in PASSAGES], dim=1)
        ref = t5(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), labels=labels).loss
        got = reader.lm_loss([Q], [PASSAGES], [A])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_lm_loss_is_differentiable_and_joint_variant_agrees(tok):
    model = tiny_t5(tok, seed=2)
    r = FiDReader(model, tok, max_passage_tokens=48)
    qs, ps, ans = [Q, "where is Everest?"], [PASSAGES, PASSAGES[1:]], [A, "Nepal"]
    model.train()
    loss = r.lm_loss(qs, ps, ans)
    loss.backward()
    assert model.shared.weight.grad is not None and model.shared.weight.grad.abs().sum() > 0
    assert model.decoder.block[0].layer[1].EncDecAttention.q.weight.grad.abs().sum() > 0
    model.zero_grad()
    joint, results = r.lm_loss_and_attention(qs, ps, ans, layers=[0], aggregation="mean")
    torch.testing.assert_close(joint, r.lm_loss(qs, ps, ans))
    joint.backward()
    assert model.shared.weight.grad.abs().sum() > 0
    assert len(results) == 2 and all(not x.passage_scores.requires_grad for x in results)
    assert model.training  # scoring did not flip the mode
    single = r.attention_scores(qs[1], ps[1], ans[1], layers=[0], aggregation="mean")
    assert model.training
    torch.testing.assert_close(results[1].passage_scores, single.passage_scores, rtol=1e-5, atol=1e-7)


def test_generate_matches_hf_generate_and_batches(bert_tok):
    model = tiny_bert2bert(bert_tok, seed=7)
    r = FiDReader(model, bert_tok, max_passage_tokens=64, max_new_tokens=6)
    out = r.generate([Q], [[PASSAGES[0]]])
    with torch.no_grad():
        ref = model.generate(input_ids=_row(bert_tok, Q, PASSAGES[0]), max_new_tokens=6, do_sample=False, num_beams=1)
    assert out == [" ".join(bert_tok.decode(ref[0], skip_special_tokens=True).split())]
    assert out[0] and len(ref[0]) <= 7  # start token + at most max_new_tokens
    qs = [Q, "where is Everest?", "capital of Italy?"]
    ps = [PASSAGES, PASSAGES[2:], []]
    batched = r.generate(qs, ps)
    assert batched == [r.generate([q], [p])[0] for q, p in zip(qs, ps)]
    assert all(isinstance(a, str) and a == a.strip() for a in batched)


@pytest.mark.parametrize("write", [write_tiny_t5, write_tiny_bert2bert], ids=["t5", "bert2bert"])
def test_save_and_load_roundtrip(tmp_path, write):
    src = write(tmp_path / "tiny", seed=4)
    r = FiDReader.from_pretrained(str(src), max_passage_tokens=40, device="cpu", dtype="float32")
    assert r.name == str(src) and r.max_passage_tokens == 40
    assert r.model.get_decoder().config._attn_implementation == "sdpa"
    before = r.attention_scores(Q, PASSAGES, A)
    r.save_pretrained(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / READER_FILE).read_text())
    assert meta["kind"] == "fid" and meta["options"]["max_passage_tokens"] == 40
    again = FiDReader.from_pretrained(str(tmp_path / "saved"))
    assert again.max_passage_tokens == 40
    after = again.attention_scores(Q, PASSAGES, A)
    assert torch.equal(before.input_ids, after.input_ids)
    torch.testing.assert_close(before.passage_scores, after.passage_scores)
    assert FiDReader.from_pretrained(str(tmp_path / "saved"), max_passage_tokens=20).max_passage_tokens == 20


def test_errors(tmp_path, tok, t5):
    from transformers import LlamaConfig, LlamaForCausalLM

    causal = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    with pytest.raises(ModelError, match="decoder-only"):
        FiDReader(causal, tok)
    causal.save_pretrained(tmp_path / "causal")
    tok.save_pretrained(tmp_path / "causal")
    with pytest.raises(ModelError, match="decoder-only"):
        FiDReader.from_pretrained(str(tmp_path / "causal"))
    with pytest.raises(ModelError):
        FiDReader.from_pretrained(str(tmp_path / "does-not-exist"))
    with pytest.raises(ConfigError, match="template"):
        FiDReader.from_pretrained(str(write_tiny_t5(tmp_path / "t5")), template="{question}")
    # the decoder reader's budget name is the per-encoder-input budget here (the training loop passes it to any reader)
    assert FiDReader.from_pretrained(str(tmp_path / "t5"), max_prompt_tokens=24).max_passage_tokens == 24
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        FiDReader.from_pretrained(str(tmp_path / "t5"), max_prompt_tokens=24, max_passage_tokens=30)
    with pytest.raises(ConfigError, match="max_passage_tokens"):
        FiDReader(t5, tok, max_passage_tokens=0)
    with pytest.raises(ConfigError, match="dtype"):
        FiDReader.from_pretrained(str(tmp_path / "t5"), dtype="float33")
    no_pad = tiny_tokenizer()
    no_pad.pad_token = None
    t5_nopad = tiny_t5(no_pad, seed=0)
    t5_nopad.config.pad_token_id = None
    with pytest.raises(ModelError, match="pad"):
        FiDReader(t5_nopad, no_pad)
    r = FiDReader(t5, tok)
    with pytest.raises(InputError, match="empty answer"):
        r.attention_scores(Q, PASSAGES, "  ")
    with pytest.raises(InputError, match="empty question"):
        r.generate([""], [PASSAGES])
    with pytest.raises(InputError, match="2 questions but 1"):
        r.generate([Q, Q], [PASSAGES])


def test_bert_position_limit_is_a_config_error(bert_tok):
    with pytest.raises(ConfigError, match="max_passage_tokens"):
        FiDReader(tiny_bert2bert(bert_tok), bert_tok, max_passage_tokens=1000)  # tiny BERT has 256 positions


def test_bundled_name_is_known_without_loading():
    assert is_fid_name(BERT2BERT) and is_fid_name(" MiniLM-BERT2BERT ") and not is_fid_name("smollm2-135m")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tok):
    cpu = FiDReader(tiny_t5(tok, seed=1), tok)
    gpu = FiDReader(tiny_t5(tok, seed=1).to("cuda"), tok)
    torch.testing.assert_close(
        gpu.attention_scores(Q, PASSAGES, A).passage_scores,
        cpu.attention_scores(Q, PASSAGES, A).passage_scores,
        rtol=1e-4,
        atol=1e-6,
    )
    assert isinstance(gpu.generate([Q], [PASSAGES])[0], str)


@pytest.mark.slow
def test_minilm_bert2bert_offline_default(minilm):
    r = FiDReader.from_pretrained(BERT2BERT, device="cpu")
    tok = r.tokenizer
    assert r.name == BERT2BERT and r.kind == "fid"
    assert (r.start_id, r.eos_id, r.pad_id) == (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    # warm start: encoder and decoder both begin from MiniLM's weights
    word = minilm[0].embeddings.word_embeddings.weight
    assert torch.equal(r.model.encoder.embeddings.word_embeddings.weight, word)
    assert torch.equal(r.model.decoder.bert.embeddings.word_embeddings.weight, word)
    res = r.attention_scores(Q, PASSAGES, A)
    assert res.passage_scores.shape == (3,) and torch.all(res.passage_scores > 0)
    s, e = res.passage_spans[1]
    q = tok.decode(tok(Q, add_special_tokens=False)["input_ids"])
    assert (
        tok.decode(res.input_ids[s:e])
        == f"[CLS] question : {q} title : rome context : rome is the capital city of italy. [SEP]"
    )
    content = r.attention_scores(Q, PASSAGES, A, span="content")
    assert [tok.decode(content.input_ids[a:b]) for a, b in content.passage_pieces(1)] == [
        "rome",
        "rome is the capital city of italy.",
    ]
    assert torch.isfinite(r.perplexity_scores(Q, PASSAGES, A)).all()
    [answer] = FiDReader(r.model, tok, max_new_tokens=4).generate([Q], [PASSAGES])
    assert isinstance(answer, str)
    # the decoder's fresh cross-attention is seeded: a second build is identical
    from ragdistill.models import build_minilm_bert2bert

    again, _ = build_minilm_bert2bert()
    w = "decoder.bert.encoder.layer.0.crossattention.self.query.weight"
    assert torch.equal(again.state_dict()[w], r.model.state_dict()[w])


def test_get_reader_picks_fid_for_an_encoder_decoder_directory(tmp_path):
    from ragdistill.readers import get_reader

    path = str(write_tiny_t5(tmp_path / "t5"))
    reader = get_reader(path, device="cpu", max_prompt_tokens=32, max_new_tokens=4, batch_size=2)
    assert isinstance(reader, FiDReader) and reader.kind == "fid" and reader.max_passage_tokens == 32
    assert isinstance(reader.generate([Q], [PASSAGES])[0], str)

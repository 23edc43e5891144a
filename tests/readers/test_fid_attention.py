"""FiD cross-attention scores against a brute force from `output_attentions=True` + value-projection hooks.

The reader runs on an SDPA model (and on an eager one); the reference runs an eager copy with the
same weights, encodes each passage row separately *without* padding, concatenates them, feeds the
decoder [start, A_1..A_{|A|-1}] and reads `cross_attentions` and the cross-attention value vectors.
"""

from __future__ import annotations

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.readers.fid import FiDReader
from ragdistill.readers.fid_tiny import tiny_bert2bert, tiny_t5, tiny_tokenizer

QUESTION = "who wrote the novel Moby Dick?"
ANSWER = "Herman Melville"
PASSAGES = [
    Passage("a", "Moby Dick", "Herman Melville wrote Moby Dick in 1851, a novel about a whale."),
    Passage("b", "Rome", "Rome is the capital city of Italy."),
    Passage("c", "Everest", "Mount Everest is the highest mountain on Earth, on the border of Nepal and China."),
]
OPTIONS = [
    {},
    {"layers": [1]},
    {"layers": [-1, 0]},
    {"value_norm": False},
    {"aggregation": "mean"},
    {"layers": [0], "value_norm": False, "aggregation": "mean"},
]


def _rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    a, b = a.double(), b.double()
    assert torch.all((a - b).abs() <= rel * b.abs().clamp_min(1e-12) + 1e-12), (a, b)


@pytest.fixture(scope="module")
def t5_tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def t5_models(t5_tok):
    sdpa = tiny_t5(t5_tok, seed=3, num_layers=2, attn_implementation="sdpa")
    eager = tiny_t5(t5_tok, seed=3, num_layers=2, attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


@pytest.fixture(scope="module")
def bert_tok():
    from transformers import AutoTokenizer

    from ragdistill.models import resolve

    return AutoTokenizer.from_pretrained(resolve("minilm-l6").path)  # a real BERT WordPiece tokenizer, offline


@pytest.fixture(scope="module")
def bert_models(bert_tok):
    sdpa = tiny_bert2bert(bert_tok, seed=5, attn_implementation="sdpa")
    eager = tiny_bert2bert(bert_tok, seed=5, attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


def _value_modules(model):
    if hasattr(model, "decoder") and hasattr(model.decoder, "block"):  # T5
        return [blk.layer[1].EncDecAttention.v for blk in model.decoder.block]
    if hasattr(model, "model"):  # BART
        return [layer.encoder_attn.v_proj for layer in model.model.decoder.layers]
    return [layer.crossattention.self.value for layer in model.decoder.bert.encoder.layer]  # BERT2BERT


def _n_heads(model):
    cfg = model.config
    if hasattr(cfg, "decoder_attention_heads"):
        return cfg.decoder_attention_heads
    return cfg.num_heads if hasattr(cfg, "num_heads") else cfg.decoder.num_attention_heads


def brute_force(model, tok, question, passages, answer, layers=None, value_norm=True, aggregation="sum"):
    """Reference S_i, w_t, concatenated ids and spans, computed the slow, obvious way."""
    rows, spans, offset = [], [], 0
    n_q = len(tok(f"question: {question}", add_special_tokens=False)["input_ids"])
    n_prefix = 1 if tok.cls_token_id is not None else 0  # BERT: [CLS] in front; T5-like: only </s> behind
    for p in passages:
        ids = tok(f"question: {question} title: {p.title} context: {p.text}")["input_ids"]
        rows.append(ids)
        n_suffix = 1
        spans.append((offset + n_prefix + n_q, offset + len(ids) - n_suffix))
        offset += len(ids)
    encoder = model.get_encoder()
    with torch.no_grad():
        hidden = torch.cat([encoder(input_ids=torch.tensor([r])).last_hidden_state for r in rows], dim=1)
        a_ids = tok(answer, add_special_tokens=False)["input_ids"]
        start = model.config.decoder_start_token_id
        dec_in = torch.tensor([[start] + a_ids[:-1]])
        captured = []
        hooks = [m.register_forward_hook(lambda mod, args, out: captured.append(out)) for m in _value_modules(model)]
        from transformers.modeling_outputs import BaseModelOutput

        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=dec_in,
                    output_attentions=True, use_cache=False)
        for h in hooks:
            h.remove()
    n_layers = len(out.cross_attentions)
    chosen = sorted({l % n_layers for l in layers}) if layers is not None else list(range(n_layers))
    H = _n_heads(model)
    T = hidden.shape[1]
    w = torch.zeros(T, dtype=torch.float64)
    for l in chosen:
        alpha = out.cross_attentions[l][0].double()                  # [H, |A|, T]
        v = captured[l][0].double().reshape(T, H, -1)                  # [T, H, d]
        norms = v.norm(dim=-1).T if value_norm else torch.ones(H, T, dtype=torch.float64)
        for h in range(H):
            for a in range(alpha.shape[1]):
                w += alpha[h, a] * norms[h] / (H * alpha.shape[1])
    w /= len(chosen)
    S = torch.stack([w[s:e].sum() if aggregation == "sum" else w[s:e].mean() for s, e in spans])
    return S, w, [i for r in rows for i in r], spans


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("impl", [0, 1], ids=["reader-sdpa", "reader-eager"])
def test_t5_scores_match_brute_force(t5_models, t5_tok, opts, impl):
    reader = FiDReader(t5_models[impl], t5_tok, max_passage_tokens=512)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
    S, w, ids, spans = brute_force(t5_models[1], t5_tok, QUESTION, PASSAGES, ANSWER, **opts)
    assert res.input_ids.tolist() == ids
    assert res.passage_spans == spans
    _rel_close(res.token_scores, w)
    _rel_close(res.passage_scores, S)
    assert not res.passage_scores.requires_grad and res.passage_scores.dtype == torch.float32


@pytest.mark.parametrize("opts", OPTIONS[:1] + OPTIONS[3:5] + [{"layers": [1]}], ids=["default", "no-norm", "mean", "layer1"])
def test_bert2bert_scores_match_brute_force(bert_models, bert_tok, opts):
    reader = FiDReader(bert_models[0], bert_tok, max_passage_tokens=256)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
    S, w, ids, spans = brute_force(bert_models[1], bert_tok, QUESTION, PASSAGES, ANSWER, **opts)
    assert res.input_ids.tolist() == ids
    assert res.passage_spans == spans
    _rel_close(res.token_scores, w)
    _rel_close(res.passage_scores, S)


@pytest.mark.parametrize("which", ["t5", "bert"])
def test_spans_decode_to_passage_text_and_sum_to_scores(which, t5_models, t5_tok, bert_models, bert_tok):
    model, tok = (t5_models[0], t5_tok) if which == "t5" else (bert_models[0], bert_tok)
    reader = FiDReader(model, tok, max_passage_tokens=256)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    norm = (lambda s: " ".join(s.split())) if which == "t5" else (lambda s: "".join(s.lower().split()))
    for p, (s, e) in zip(PASSAGES, res.passage_spans):
        assert norm(tok.decode(res.input_ids[s:e])) == norm(f"title: {p.title} context: {p.text}")
        assert torch.isclose(res.token_scores[s:e].sum(), res.passage_scores[PASSAGES.index(p)], rtol=1e-6)
    qs, qe = res.question_span
    assert norm(tok.decode(res.input_ids[qs:qe])) == norm(QUESTION)
    assert res.answer_span == (0, len(res.answer_ids))
    assert tok.decode(res.answer_ids).replace(" ", "").lower() == ANSWER.replace(" ", "").lower()
    # tokens outside every passage (question prefix, special tokens) carry attention but no passage score
    assert res.token_scores[~res.passage_token_mask()].sum() > 0
    mean = reader.attention_scores(QUESTION, PASSAGES, ANSWER, aggregation="mean")
    for i, (s, e) in enumerate(mean.passage_spans):
        assert torch.isclose(mean.passage_scores[i], res.token_scores[s:e].mean(), rtol=1e-6)


def test_batched_and_padded_scores_equal_single(t5_models, t5_tok):
    """Questions with different K and lengths in one batch score as they do alone (padding is masked)."""
    reader = FiDReader(t5_models[0], t5_tok, max_passage_tokens=64)
    qs = [QUESTION, "where is the highest mountain?"]
    ps = [PASSAGES, PASSAGES[2:]]
    ans = [ANSWER, "Nepal"]
    _, batched = reader.lm_loss_and_attention(qs, ps, ans)
    for q, p, a, b in zip(qs, ps, ans, batched):
        single = reader.attention_scores(q, p, a)
        assert single.input_ids.tolist() == b.input_ids.tolist()
        assert single.passage_spans == b.passage_spans
        torch.testing.assert_close(b.passage_scores, single.passage_scores, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(b.token_scores, single.token_scores, rtol=1e-5, atol=1e-7)


def test_truncation_cuts_passages_never_the_question(t5_models, t5_tok):
    budget = 16
    reader = FiDReader(t5_models[0], t5_tok, max_passage_tokens=budget)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    n_q = len(t5_tok(f"question: {QUESTION}", add_special_tokens=False)["input_ids"])
    offset = 0
    for p, (s, e) in zip(PASSAGES, res.passage_spans):
        row_len = e + 1 - offset  # passage tokens then </s>
        assert row_len == budget
        full = f"title: {p.title} context: {p.text}"
        assert full.startswith(t5_tok.decode(res.input_ids[s:e]).strip())
        assert e - s == budget - n_q - 1
        offset = e + 1
    # a question longer than the budget is kept whole; its passages get no tokens and score 0
    long_q = " ".join(["who wrote the novel about the whale"] * 4)
    res = FiDReader(t5_models[0], t5_tok, max_passage_tokens=8).attention_scores(long_q, PASSAGES, ANSWER)
    qs, qe = res.question_span
    assert " ".join(t5_tok.decode(res.input_ids[qs:qe]).split()) == long_q
    assert all(s == e for s, e in res.passage_spans)
    assert torch.all(res.passage_scores == 0)


def test_t5_cross_attention_has_no_position_bias(t5_models, t5_tok):
    """T5 adds a relative position bias in self-attention only: what reaches cross-attention is zero."""
    biases = []
    hooks = [blk.layer[1].EncDecAttention.register_forward_hook(lambda m, args, out: biases.append(out[1]))
             for blk in t5_models[0].decoder.block]
    try:
        FiDReader(t5_models[0], t5_tok).attention_scores(QUESTION, PASSAGES, ANSWER)
    finally:
        for h in hooks:
            h.remove()
    assert len(biases) == 2 and all(torch.count_nonzero(b) == 0 for b in biases)
    assert all(not blk.layer[1].EncDecAttention.has_relative_attention_bias for blk in t5_models[0].decoder.block)


def test_option_errors(t5_models, t5_tok):
    reader = FiDReader(t5_models[0], t5_tok)
    with pytest.raises(ConfigError, match="layers"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, layers=[2])
    with pytest.raises(ConfigError, match="aggregation"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, aggregation="max")
    # the capture restored the model's own attention implementation
    assert t5_models[0].decoder.config._attn_implementation == "sdpa"


def test_no_passages_gives_empty_scores(t5_models, t5_tok):
    reader = FiDReader(t5_models[0], t5_tok)
    res = reader.attention_scores(QUESTION, [], ANSWER)
    assert res.passage_scores.shape == (0,) and res.passage_spans == []
    assert res.token_scores.shape[0] == res.input_ids.shape[0] > 0


def test_bart_scores_match_brute_force(t5_tok):
    """Beyond T5 and BERT2BERT: a BART-family decoder (`encoder_attn`) through the same capture."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = dict(vocab_size=len(t5_tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
               pad_token_id=0, eos_token_id=1, bos_token_id=1, decoder_start_token_id=1, forced_eos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sdpa = BartForConditionalGeneration._from_config(BartConfig(**cfg), attn_implementation="sdpa").eval()
    eager = BartForConditionalGeneration._from_config(BartConfig(**cfg), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.model.decoder.config._attn_implementation == "sdpa"
    reader = FiDReader(sdpa, t5_tok)
    for opts in ({}, {"layers": [0], "value_norm": False}):
        res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
        S, w, ids, spans = brute_force(eager, t5_tok, QUESTION, PASSAGES, ANSWER, **opts)
        assert res.input_ids.tolist() == ids and res.passage_spans == spans
        _rel_close(res.token_scores, w)
        _rel_close(res.passage_scores, S)

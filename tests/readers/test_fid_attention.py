"""FiD cross-attention scores against a brute force from `output_attentions=True` + value-projection hooks.

The reader runs on an SDPA model (and on an eager one); the reference runs an eager copy with the
same weights, encodes each passage row separately *without* padding, concatenates them, feeds the
decoder [start, A_1..A_{|A|-1}] and reads `cross_attentions` and the cross-attention value vectors.
What S_i sums (METHOD §3.3) is checked for both modes: ``span="block"`` (the training signal, as
ATLAS: passage i's whole encoder input) and ``span="content"`` (the analysis: title and text tokens,
without the "title:"/"context:" labels), with the reference's spans counted from the pieces.
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


def _n(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def brute_force(model, tok, question, passages, answer, layers=None, value_norm=True, aggregation="sum", span="block"):
    """Reference S_i, w_t, concatenated ids and passage pieces, computed the slow, obvious way.

    Pieces per passage: span="block" one span, the whole row; span="content" the title's and the
    text's tokens, located by counting the tokens of each piece of the template separately.
    """
    rows, pieces, offset = [], [], 0
    n_q = _n(tok, f"question: {question}")
    n_prefix = 1 if tok.cls_token_id is not None else 0  # BERT: [CLS] in front; T5-like: only </s> behind
    for p in passages:
        ids = tok(f"question: {question} title: {p.title} context: {p.text}")["input_ids"]
        rows.append(ids)
        n_suffix = 1
        t0 = offset + n_prefix + n_q + _n(tok, "title:")
        t1 = t0 + _n(tok, p.title)
        c0 = t1 + _n(tok, "context:")
        c1 = c0 + _n(tok, p.text)
        assert c1 == offset + len(ids) - n_suffix  # the pieces tile the row
        pieces.append([(offset, offset + len(ids))] if span == "block" else [(t0, t1), (c0, c1)])
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

        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            decoder_input_ids=dec_in,
            output_attentions=True,
            use_cache=False,
        )
        for h in hooks:
            h.remove()
    n_layers = len(out.cross_attentions)
    chosen = sorted({l % n_layers for l in layers}) if layers is not None else list(range(n_layers))
    H = _n_heads(model)
    T = hidden.shape[1]
    w = torch.zeros(T, dtype=torch.float64)
    for l in chosen:
        alpha = out.cross_attentions[l][0].double()  # [H, |A|, T]
        v = captured[l][0].double().reshape(T, H, -1)  # [T, H, d]
        norms = v.norm(dim=-1).T if value_norm else torch.ones(H, T, dtype=torch.float64)
        for h in range(H):
            for a in range(alpha.shape[1]):
                w += alpha[h, a] * norms[h] / (H * alpha.shape[1])
    w /= len(chosen)
    own = [torch.cat([w[s:e] for s, e in ps]) for ps in pieces]
    S = torch.stack([o.sum() if aggregation == "sum" else o.mean() for o in own])
    return S, w, [i for r in rows for i in r], pieces


def _check_pieces(res, pieces, span):
    if span == "block":
        assert res.passage_token_spans is None and res.passage_spans == [ps[0] for ps in pieces]
    else:
        assert res.passage_token_spans == pieces
        assert res.passage_spans == [(ps[0][0], ps[-1][1]) for ps in pieces]
    assert [res.passage_pieces(i) for i in range(len(pieces))] == pieces


@pytest.mark.parametrize("span", ["block", "content"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("impl", [0, 1], ids=["reader-sdpa", "reader-eager"])
def test_t5_scores_match_brute_force(t5_models, t5_tok, opts, impl, span):
    reader = FiDReader(t5_models[impl], t5_tok, max_passage_tokens=512)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, span=span, **opts)
    S, w, ids, pieces = brute_force(t5_models[1], t5_tok, QUESTION, PASSAGES, ANSWER, span=span, **opts)
    assert res.input_ids.tolist() == ids
    _check_pieces(res, pieces, span)
    _rel_close(res.token_scores, w)
    _rel_close(res.passage_scores, S)
    assert not res.passage_scores.requires_grad and res.passage_scores.dtype == torch.float32


@pytest.mark.parametrize("span", ["block", "content"])
@pytest.mark.parametrize(
    "opts", OPTIONS[:1] + OPTIONS[3:5] + [{"layers": [1]}], ids=["default", "no-norm", "mean", "layer1"]
)
def test_bert2bert_scores_match_brute_force(bert_models, bert_tok, opts, span):
    reader = FiDReader(bert_models[0], bert_tok, max_passage_tokens=256)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, span=span, **opts)
    S, w, ids, pieces = brute_force(bert_models[1], bert_tok, QUESTION, PASSAGES, ANSWER, span=span, **opts)
    assert res.input_ids.tolist() == ids
    _check_pieces(res, pieces, span)
    _rel_close(res.token_scores, w)
    _rel_close(res.passage_scores, S)


def test_training_signal_sums_the_whole_encoder_block(t5_models, t5_tok):
    """Issue 15 item 6: the training signal's S_i includes the question prefix and the labels, as ATLAS's sum.

    (Before, S_i summed only the "title: T context: C" tokens: it dropped the question prefix.)
    """
    from ragdistill.signals import get_signal

    reader = FiDReader(t5_models[0], t5_tok, max_passage_tokens=512)
    _, w, _, blocks = brute_force(t5_models[1], t5_tok, QUESTION, PASSAGES, ANSWER)
    whole = torch.stack([w[s:e].sum() for [(s, e)] in blocks])
    n_q = _n(t5_tok, f"question: {QUESTION}")
    without_question = torch.stack([w[s + n_q : e - 1].sum() for [(s, e)] in blocks])  # the old sum
    assert torch.all(whole - without_question > 1e-3 * whole)
    signal = get_signal("attention")(reader, QUESTION, PASSAGES, ANSWER)  # training, retriever-only
    _rel_close(signal, whole)
    _, [joint] = reader.lm_loss_and_attention([QUESTION], [PASSAGES], [ANSWER])  # training, joint
    torch.testing.assert_close(joint.passage_scores, signal, rtol=1e-5, atol=1e-7)
    # every encoder position belongs to exactly one passage block: the blocks' scores add up to all of w
    torch.testing.assert_close(signal.sum(), w.sum().float(), rtol=1e-5, atol=1e-7)
    assert bool(reader.attention_scores(QUESTION, PASSAGES, ANSWER).passage_token_mask().all())


@pytest.mark.parametrize("which", ["t5", "bert"])
def test_spans_decode_to_passage_text_and_sum_to_scores(which, t5_models, t5_tok, bert_models, bert_tok):
    model, tok = (t5_models[0], t5_tok) if which == "t5" else (bert_models[0], bert_tok)
    reader = FiDReader(model, tok, max_passage_tokens=256)
    norm = (lambda s: " ".join(s.split())) if which == "t5" else (lambda s: "".join(s.lower().split()))
    block = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, span="content")
    torch.testing.assert_close(block.token_scores, res.token_scores)  # the option changes the sums, not w_t
    for i, p in enumerate(PASSAGES):
        ((s, e),) = block.passage_pieces(i)
        row = norm(tok.decode(block.input_ids[s:e], skip_special_tokens=True))
        assert row == norm(f"question: {QUESTION} title: {p.title} context: {p.text}")
        assert torch.isclose(block.token_scores[s:e].sum(), block.passage_scores[i], rtol=1e-6)
        title, text = res.passage_pieces(i)
        assert norm(tok.decode(res.input_ids[title[0] : title[1]])) == norm(p.title)
        assert norm(tok.decode(res.input_ids[text[0] : text[1]])) == norm(p.text)
        own = torch.cat([res.token_scores[a:b] for a, b in (title, text)])
        assert torch.isclose(own.sum(), res.passage_scores[i], rtol=1e-6)
        assert res.passage_spans[i] == (title[0], text[1]) and s < title[0] and text[1] < e
    qs, qe = res.question_span
    assert norm(tok.decode(res.input_ids[qs:qe])) == norm(QUESTION)
    assert res.answer_span == (0, len(res.answer_ids))
    assert tok.decode(res.answer_ids).replace(" ", "").lower() == ANSWER.replace(" ", "").lower()
    # content: the question prefix, the labels and the special tokens carry attention but belong to no passage
    outside = res.input_ids[~res.passage_token_mask()]
    assert norm(tok.decode(outside, skip_special_tokens=True)) == norm(
        " ".join(f"question: {QUESTION} title: context:" for _ in PASSAGES)
    )
    assert res.token_scores[~res.passage_token_mask()].sum() > 0
    mean = reader.attention_scores(QUESTION, PASSAGES, ANSWER, aggregation="mean", span="content")
    for i in range(len(PASSAGES)):
        own = torch.cat([res.token_scores[a:b] for a, b in res.passage_pieces(i)])
        assert torch.isclose(mean.passage_scores[i], own.mean(), rtol=1e-6)


def test_content_without_title_is_the_text_alone(t5_models, t5_tok):
    reader = FiDReader(t5_models[0], t5_tok)
    p = Passage("x", "", "Mount Everest is the highest mountain on Earth.")
    res = reader.attention_scores(QUESTION, [p], ANSWER, span="content")
    [(s, e)] = res.passage_pieces(0)
    assert t5_tok.decode(res.input_ids[s:e]) == p.text and res.passage_spans == [(s, e)]
    assert t5_tok.decode(res.input_ids[s - _n(t5_tok, "context:") : s]) == "context:"


@pytest.mark.parametrize("which", ["t5", "bert"])
def test_content_spans_without_offsets_match(which, t5_models, t5_tok, bert_models, bert_tok):
    """Tokenizers without offset mappings (slow ones) find the same title/text pieces by counting tokens."""
    model, tok = (t5_models[0], t5_tok) if which == "t5" else (bert_models[0], bert_tok)
    reader = FiDReader(model, tok, max_passage_tokens=24)  # the budget cuts some passages inside their text
    passages = PASSAGES + [Passage("d", "", "Paris is in France.")]
    fast = reader.attention_scores(QUESTION, passages, ANSWER, span="content")
    reader._fast = False
    slow = reader.attention_scores(QUESTION, passages, ANSWER, span="content")
    assert slow.input_ids.tolist() == fast.input_ids.tolist()
    assert slow.passage_token_spans == fast.passage_token_spans and slow.passage_spans == fast.passage_spans
    torch.testing.assert_close(slow.passage_scores, fast.passage_scores)


def test_batched_and_padded_scores_equal_single(t5_models, t5_tok):
    """Questions with different K and lengths in one batch score as they do alone (padding is masked)."""
    reader = FiDReader(t5_models[0], t5_tok, max_passage_tokens=64)
    qs = [QUESTION, "where is the highest mountain?"]
    ps = [PASSAGES, PASSAGES[2:]]
    ans = [ANSWER, "Nepal"]
    for span in ("block", "content"):
        _, batched = reader.lm_loss_and_attention(qs, ps, ans, span=span)
        for q, p, a, b in zip(qs, ps, ans, batched):
            single = reader.attention_scores(q, p, a, span=span)
            assert single.input_ids.tolist() == b.input_ids.tolist()
            assert single.passage_spans == b.passage_spans and single.passage_token_spans == b.passage_token_spans
            torch.testing.assert_close(b.passage_scores, single.passage_scores, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(b.token_scores, single.token_scores, rtol=1e-5, atol=1e-7)


def test_truncation_cuts_passages_never_the_question(t5_models, t5_tok):
    budget = 16
    reader = FiDReader(t5_models[0], t5_tok, max_passage_tokens=budget)
    block = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, span="content")
    n_q = _n(t5_tok, f"question: {QUESTION}")
    for i, p in enumerate(PASSAGES):
        s, e = block.passage_spans[i]
        assert e - s == budget  # the whole (cut) encoder input, </s> included
        kept = t5_tok.decode(block.input_ids[s + n_q : e - 1]).strip()
        assert f"title: {p.title} context: {p.text}".startswith(kept)
        pieces = res.passage_pieces(i)  # the content pieces stop where the cut is
        assert pieces and pieces[-1][1] == e - 1 and all(s + n_q < a < b for a, b in pieces)
    # a question longer than the budget is kept whole; its passages get no tokens
    long_q = " ".join(["who wrote the novel about the whale"] * 4)
    short = FiDReader(t5_models[0], t5_tok, max_passage_tokens=8)
    res = short.attention_scores(long_q, PASSAGES, ANSWER, span="content")
    qs, qe = res.question_span
    assert " ".join(t5_tok.decode(res.input_ids[qs:qe]).split()) == long_q
    assert all(s == e for s, e in res.passage_spans) and res.passage_token_spans == [[], [], []]
    assert torch.all(res.passage_scores == 0)
    block = short.attention_scores(long_q, PASSAGES, ANSWER)  # the block still holds the question: a score
    assert torch.all(block.passage_scores > 0)


def test_span_option_errors(t5_models, t5_tok):
    reader = FiDReader(t5_models[0], t5_tok)
    with pytest.raises(ConfigError, match="span"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, span="passage")
    with pytest.raises(ConfigError, match="span"):
        reader.lm_loss_and_attention([QUESTION], [PASSAGES], [ANSWER], span="labels")


def test_t5_cross_attention_has_no_position_bias(t5_models, t5_tok):
    """T5 adds a relative position bias in self-attention only: what reaches cross-attention is zero."""
    biases = []
    hooks = [
        blk.layer[1].EncDecAttention.register_forward_hook(lambda m, args, out: biases.append(out[1]))
        for blk in t5_models[0].decoder.block
    ]
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

    cfg = dict(
        vocab_size=len(t5_tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        decoder_start_token_id=1,
        forced_eos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sdpa = BartForConditionalGeneration._from_config(BartConfig(**cfg), attn_implementation="sdpa").eval()
    eager = BartForConditionalGeneration._from_config(BartConfig(**cfg), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.model.decoder.config._attn_implementation == "sdpa"
    reader = FiDReader(sdpa, t5_tok)
    for opts in ({}, {"layers": [0], "value_norm": False}, {"span": "content"}):
        res = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
        S, w, ids, pieces = brute_force(eager, t5_tok, QUESTION, PASSAGES, ANSWER, **opts)
        assert res.input_ids.tolist() == ids
        _check_pieces(res, pieces, opts.get("span", "block"))
        _rel_close(res.token_scores, w)
        _rel_close(res.passage_scores, S)

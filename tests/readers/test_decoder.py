"""DecoderReader behaviour on tiny random models: spans, perplexity, LM loss, generation, factory, errors."""

from __future__ import annotations

import pytest
import torch

from ragdistill.errors import ConfigError, ModelError
from ragdistill.readers import Reader, detect_kind, get_reader
from ragdistill.readers.attention import capture_attention
from ragdistill.readers.decoder import DecoderReader
from ragdistill.readers.eq1 import row_attention_scores
from ragdistill.readers.prompt import PromptTemplate
from tests.readers.test_decoder_reference import ANSWER, PASSAGES, QUESTION, tiny_model, tokenizer


@pytest.fixture(scope="module")
def reader():
    return DecoderReader(tiny_model("llama", seed=3), tokenizer())


def test_result_spans_and_sums(reader):
    tok = reader.tokenizer
    res = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    assert isinstance(reader, Reader) and reader.kind == "decoder"
    assert res.input_ids.shape == res.token_scores.shape
    for p, (s, e) in zip(PASSAGES, res.passage_spans):
        assert tok.decode(res.input_ids[s:e]).strip() == p.as_text()
    a0, a1 = res.answer_span
    assert a1 == res.input_ids.shape[0] and tok.decode(res.input_ids[a0:a1]) == ANSWER
    assert torch.equal(res.input_ids[a0:a1], res.answer_ids)
    qs, qe = res.question_span
    assert tok.decode(res.input_ids[qs:qe]).strip() == QUESTION
    sums = torch.stack([res.token_scores[s:e].sum() for s, e in res.passage_spans])
    torch.testing.assert_close(sums, res.passage_scores)
    mask = res.passage_token_mask()
    torch.testing.assert_close(res.token_scores[mask].sum(), res.passage_scores.sum())
    assert (res.token_scores >= 0).all() and res.passage_scores.dtype == torch.float32
    # without value norms each answer row is a distribution; the prompt receives all but what answer tokens get
    plain = reader.attention_scores(QUESTION, PASSAGES, ANSWER, value_norm=False)
    assert 0.5 < plain.token_scores.sum().item() <= 1.0 + 1e-6


def _reference_answer_logprob(reader, question, passages, answer):
    item = reader._item(question, passages, answer)
    ids = torch.tensor([item.ids])
    with torch.no_grad():
        logp = torch.log_softmax(reader.model(ids).logits[0].float(), -1)
    return torch.stack([logp[r, t] for r, t in zip(item.rows, item.answer_ids)])


def test_perplexity_scores_match_one_passage_forwards(reader):
    reader.batch_size = 2  # exercise chunking and right padding
    got = reader.perplexity_scores(QUESTION, PASSAGES, ANSWER)
    want = torch.stack([_reference_answer_logprob(reader, QUESTION, [p], ANSWER).mean() for p in PASSAGES])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    reader.batch_size = 8


def test_lm_loss_matches_reference_and_backprops(reader):
    reader.train_eos = False
    qs, ps, ans = [QUESTION, "Which river?"], [PASSAGES, PASSAGES[1:2]], [ANSWER, "the Spree"]
    loss = reader.lm_loss(qs, ps, ans)
    lps = torch.cat([_reference_answer_logprob(reader, q, p, a) for q, p, a in zip(qs, ps, ans)])
    torch.testing.assert_close(loss, -lps.mean(), rtol=1e-5, atol=1e-5)
    loss.backward()
    grad = reader.model.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    reader.model.zero_grad()
    reader.train_eos = True


def test_lm_loss_and_attention_is_one_consistent_forward(reader):
    qs, ps, ans = [QUESTION, "Which river?"], [PASSAGES, PASSAGES[::-1]], [ANSWER, "the Spree"]
    loss, results = reader.lm_loss_and_attention(qs, ps, ans, layers=[0, 2])
    torch.testing.assert_close(loss, reader.lm_loss(qs, ps, ans))
    assert loss.requires_grad
    for q, p, a, r in zip(qs, ps, ans, results):
        single = reader.attention_scores(q, p, a, layers=[0, 2])
        assert not r.passage_scores.requires_grad and not r.token_scores.requires_grad
        assert torch.equal(r.input_ids, single.input_ids)  # the end-of-turn target is not in the result
        torch.testing.assert_close(r.passage_scores, single.passage_scores, rtol=1e-5, atol=1e-8)
    loss.backward()
    reader.model.zero_grad()


def test_generate_batched_left_padding_equals_one_by_one(reader):
    qs = [QUESTION, "Which river flows through the capital of Germany, please tell me?"]
    ps = [PASSAGES, PASSAGES[1:]]
    batch = reader.generate(qs, ps, max_new_tokens=6)
    single = [reader.generate([q], [p], max_new_tokens=6)[0] for q, p in zip(qs, ps)]
    assert batch == single and all(isinstance(a, str) for a in batch)


def test_clean_cuts_at_end_of_turn_and_newline(reader):
    tok = reader.tokenizer
    ids = tok("  Paris\nFrance", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert reader.clean(ids) == "Paris"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert reader.clean([im_end] + tok("x", add_special_tokens=False)["input_ids"]) == ""
    assert reader.clean([]) == ""


def test_save_and_reload_round_trip(tmp_path, reader):
    custom = DecoderReader(
        reader.model,
        reader.tokenizer,
        max_prompt_tokens=400,
        template=PromptTemplate(document="Passage {i}: {passage}", chat=False),
    )
    custom.save_pretrained(tmp_path / "r")
    assert detect_kind(str(tmp_path / "r")) == "decoder"
    again = get_reader(str(tmp_path / "r"))
    assert isinstance(again, DecoderReader) and again.max_prompt_tokens == 400
    assert again.prompt.template.document == "Passage {i}: {passage}"
    a = custom.attention_scores(QUESTION, PASSAGES, ANSWER)
    b = again.attention_scores(QUESTION, PASSAGES, ANSWER)
    torch.testing.assert_close(a.passage_scores, b.passage_scores)


def test_span_option_is_the_passage_own_tokens_for_either_value(reader):
    """The decoder's passage tokens hold no template labels: "block" and "content" give the same result."""
    block = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    content = reader.attention_scores(QUESTION, PASSAGES, ANSWER, span="content")
    assert block.passage_spans == content.passage_spans and content.passage_token_spans is None
    torch.testing.assert_close(block.passage_scores, content.passage_scores)
    _, [joint] = reader.lm_loss_and_attention([QUESTION], [PASSAGES], [ANSWER], span="content")
    assert joint.passage_spans == block.passage_spans
    with pytest.raises(ConfigError, match="span"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, span="labels")


def test_option_and_input_errors(reader):
    with pytest.raises(ConfigError, match="layers"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, layers=[3])
    with pytest.raises(ConfigError, match="layers"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, layers=[])
    with pytest.raises(ConfigError, match="aggregation"):
        reader.attention_scores(QUESTION, PASSAGES, ANSWER, aggregation="max")
    with pytest.raises(ConfigError, match="answer"):
        reader.attention_scores(QUESTION, PASSAGES, " ")
    with pytest.raises(ConfigError, match="batch"):
        reader.lm_loss([QUESTION], [PASSAGES, PASSAGES], [ANSWER])
    with pytest.raises(ConfigError, match="reader.kind"):
        get_reader("smollm2-135m", kind="seq2seq")
    small = DecoderReader(reader.model, reader.tokenizer, max_prompt_tokens=10)
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        small.attention_scores(QUESTION, PASSAGES, ANSWER)
    assert reader.model.config._attn_implementation == "sdpa"


def test_unsupported_architectures_raise_model_error():
    import transformers as tf

    bloom = tf.BloomForCausalLM(tf.BloomConfig(vocab_size=len(tokenizer()), hidden_size=32, n_layer=2, n_head=4)).eval()
    r = DecoderReader(bloom, tokenizer())
    with pytest.raises(ModelError, match="Supported: .*Llama.*Falcon"):
        r.attention_scores(QUESTION, PASSAGES, ANSWER)
    assert isinstance(r.generate([QUESTION], [PASSAGES[:1]], max_new_tokens=2)[0], str)  # generation still works
    t5 = tf.T5ForConditionalGeneration(
        tf.T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    )
    with pytest.raises(ModelError, match="fid"):
        DecoderReader(t5, tokenizer())


def test_row_attention_scores_helper_masks_and_gqa():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    pad = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]).bool()
    rows = torch.tensor([[4, 5], [2, 3]])
    got = row_attention_scores(q, k, v, rows, attention_mask=pad, scaling=0.5)
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    logits = (q @ kk.transpose(-1, -2)) * 0.5
    logits = logits.masked_fill(~pad[:, None, None, :], float("-inf"))
    probs = torch.softmax(logits, -1) * vv.norm(dim=-1)[:, :, None, :]
    want = torch.stack([probs[b][:, rows[b]].mean(dim=(0, 1)) for b in range(2)])
    torch.testing.assert_close(got, want)
    assert got[1, 4:].abs().sum() == 0  # padded keys get nothing
    # causal without a mask: row r sees keys 0..r
    causal = row_attention_scores(q, k, v, rows, causal=True, value_norm=False)
    assert causal[1, 4:].abs().sum() == 0 and causal[1].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_capture_restores_implementation_on_error(reader):
    rows = torch.tensor([[1]])
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(reader.model, rows):
            assert reader.model.config._attn_implementation == "ragdistill_capture"
            raise RuntimeError("boom")
    assert reader.model.config._attn_implementation == "sdpa"


def test_detect_kind_for_bundled_names():
    assert detect_kind("smollm2-135m") == "decoder"
    pytest.importorskip("ragdistill.readers.fid")
    assert detect_kind("minilm-bert2bert") == "fid"

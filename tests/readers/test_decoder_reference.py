"""Tiny randomly initialised causal LMs and a brute-force w_t reference (eager attention + value hooks)."""

from __future__ import annotations

import functools

import torch

from ragdistill.data.types import Passage

PASSAGES = [
    Passage("p1", "Paris", "Paris is the capital and largest city of France."),
    Passage("p2", "Berlin", "Berlin is the capital of Germany; it lies on the Spree."),
    Passage("p3", "", "Mount Everest is the highest mountain above sea level."),
]
QUESTION = "What is the capital of France?"
ANSWER = "Paris, France"


@functools.lru_cache(maxsize=1)
def tokenizer():
    from ragdistill.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def tiny_model(arch: str = "llama", seed: int = 0, **overrides):
    """A 3-layer random model with grouped-query attention (4 query heads, 2 KV heads) where the arch has it."""
    import transformers as tf

    vocab = len(tokenizer())
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=1024,
        attn_implementation="sdpa",
    )
    if arch == "falcon":
        cfg = tf.FalconConfig(**{**common, "num_hidden_layers": 2, **overrides})
        cls = tf.FalconForCausalLM
    else:
        cfg_cls, cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[arch]
        cfg = cfg_cls(**{**common, "intermediate_size": 64, "num_key_value_heads": 2, **overrides})
    torch.manual_seed(seed)
    return cls(cfg).eval()


def brute_force_w(
    model, input_ids: torch.Tensor, rows: list[int], layers=None, value_norm: bool = True
) -> torch.Tensor:
    """w_t over all positions from output_attentions=True (eager) and hooks on the value projections."""
    values = {}
    blocks = model.model.layers
    hooks = [
        b.self_attn.v_proj.register_forward_hook(lambda m, i, o, k=k: values.__setitem__(k, o.detach()))
        for k, b in enumerate(blocks)
    ]
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids[None], output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(previous)
        for h in hooks:
            h.remove()
    n_heads = model.config.num_attention_heads
    n_kv = model.config.num_key_value_heads
    head_dim = model.config.hidden_size // n_heads
    chosen = range(len(blocks)) if layers is None else [l % len(blocks) for l in layers]
    total = torch.zeros(input_ids.shape[0], dtype=torch.float64)
    for l in chosen:
        att = out.attentions[l][0].double()  # [H, T, T]
        v = values[l][0].view(-1, n_kv, head_dim).transpose(0, 1)  # [Hkv, T, d]
        vn = v.double().norm(dim=-1).repeat_interleave(n_heads // n_kv, dim=0)  # head h reads kv head h // group
        a = att[:, rows, :]  # [H, A, T]
        contrib = a * vn[:, None, :] if value_norm else a
        total += contrib.mean(dim=(0, 1))
    return (total / len(list(chosen))).float()


def falcon_brute_force_w(model, input_ids: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Falcon reference from the fused QKV projection (ALiBi or rotary), checked against the layer's own output."""
    import math

    from transformers.models.falcon.modeling_falcon import apply_rotary_pos_emb, build_alibi_tensor

    fused, outputs, pos = {}, {}, {}
    blocks = model.transformer.h
    hooks = []
    for k, b in enumerate(blocks):
        hooks.append(
            b.self_attention.query_key_value.register_forward_hook(
                lambda m, i, o, k=k: fused.__setitem__(k, o.detach())
            )
        )

        def keep(module, args, kwargs, output, k=k):
            outputs[k] = output[0].detach()
            pos[k] = kwargs.get("position_embeddings")

        hooks.append(b.self_attention.register_forward_hook(keep, with_kwargs=True))
    try:
        with torch.no_grad():
            model(input_ids[None], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    cfg = model.config
    n_heads, t = cfg.num_attention_heads, input_ids.shape[0]
    d = cfg.hidden_size // n_heads
    total = torch.zeros(t, dtype=torch.float64)
    for l, b in enumerate(blocks):
        att_mod = b.self_attention
        q, k, v = att_mod._split_heads(fused[l])  # [1, T, heads, d]
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [1, heads, T, d]
        if not cfg.alibi:
            cos, sin = pos[l]
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = k.expand(1, n_heads, t, d) if k.shape[1] == 1 else k
        v = v.expand(1, n_heads, t, d) if v.shape[1] == 1 else v
        logits = (q @ k.transpose(-1, -2)).double() / math.sqrt(d)
        if cfg.alibi:
            alibi = build_alibi_tensor(torch.ones(1, t, dtype=torch.long), n_heads, torch.float32).view(
                1, n_heads, 1, t
            )
            logits = logits + alibi.double() / math.sqrt(d)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        probs = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        # the reference must reproduce what the layer computed
        ctx = (probs.float() @ v).transpose(1, 2).reshape(1, t, n_heads * d)
        torch.testing.assert_close(att_mod.dense(ctx), outputs[l], rtol=1e-4, atol=1e-5)
        vn = v[0].double().norm(dim=-1)  # [heads, T]
        total += (probs[0][:, rows, :] * vn[:, None, :]).mean(dim=(0, 1))
    return (total / len(blocks)).float()


def answer_rows(result) -> list[int]:
    start, end = result.answer_span
    return list(range(start - 1, end - 1))


# --------------------------------------------------------------------------- reference tests

import pytest  # noqa: E402

from ragdistill.readers.decoder import DecoderReader  # noqa: E402

OPTIONS = [
    dict(),
    dict(layers=[0, 2]),
    dict(layers=[-1]),
    dict(value_norm=False),
    dict(aggregation="mean"),
    dict(layers=[1], value_norm=False, aggregation="mean"),
]


def _check(result, ref: torch.Tensor, aggregation: str = "sum") -> None:
    start = result.answer_span[0]
    torch.testing.assert_close(result.token_scores[:start], ref[:start], rtol=1e-5, atol=1e-9)
    assert torch.all(result.token_scores[start:] == 0)
    for (s, e), score in zip(result.passage_spans, result.passage_scores):
        want = ref[s:e].sum() if aggregation == "sum" else ref[s:e].mean()
        torch.testing.assert_close(score, want, rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def llama_reader():
    return DecoderReader(tiny_model("llama"), tokenizer())


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_llama_gqa_matches_brute_force(llama_reader, opts):
    model = llama_reader.model
    assert model.config.num_attention_heads // model.config.num_key_value_heads == 2  # GQA is exercised
    result = llama_reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
    ref = brute_force_w(model, result.input_ids, answer_rows(result), opts.get("layers"), opts.get("value_norm", True))
    _check(result, ref, opts.get("aggregation", "sum"))
    assert model.config._attn_implementation == "sdpa"  # restored after the capture


@pytest.mark.parametrize(
    "arch,overrides", [("qwen2", {}), ("mistral", {"sliding_window": 4096}), ("llama", {"num_key_value_heads": 4})]
)
def test_other_interface_architectures_match_brute_force(arch, overrides):
    reader = DecoderReader(tiny_model(arch, seed=1, **overrides), tokenizer())
    for opts in (dict(), dict(layers=[1], value_norm=False)):
        result = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **opts)
        ref = brute_force_w(
            reader.model, result.input_ids, answer_rows(result), opts.get("layers"), opts.get("value_norm", True)
        )
        _check(result, ref)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(alibi=False, multi_query=True, new_decoder_architecture=False),
        dict(alibi=True, multi_query=False, new_decoder_architecture=False),
        dict(alibi=False, new_decoder_architecture=True, num_kv_heads=2),
    ],
    ids=["rotary-multiquery", "alibi", "new-arch-gqa"],
)
def test_falcon_matches_brute_force(overrides):
    reader = DecoderReader(tiny_model("falcon", **overrides), tokenizer())
    result = reader.attention_scores(QUESTION, PASSAGES, ANSWER)
    ref = falcon_brute_force_w(reader.model, result.input_ids, answer_rows(result))
    _check(result, ref)


def test_batched_right_padding_matches_single(llama_reader):
    questions = [QUESTION, "Which river flows through Berlin, the capital of Germany?", "Highest mountain?"]
    passages = [PASSAGES, PASSAGES[1:], PASSAGES[::-1]]
    answers = [ANSWER, "the Spree", "Everest"]
    batch = llama_reader.attention_scores_batch(questions, passages, answers, layers=[0, 1])
    for q, p, a, got in zip(questions, passages, answers, batch):
        single = llama_reader.attention_scores(q, p, a, layers=[0, 1])
        assert torch.equal(single.input_ids, got.input_ids)
        torch.testing.assert_close(got.token_scores, single.token_scores, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(got.passage_scores, single.passage_scores, rtol=1e-5, atol=1e-8)

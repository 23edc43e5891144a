"""The fast training path: precision resolution, bf16 autocast tolerance of the signal, the optimiser kernels,
the batched signal of the retriever regime."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.signals import get_signal_spec, target
from ragdistill.training.optim import build_optimizer, optimizer_impl
from ragdistill.utils.precision import autocast, bf16_supported, resolve_precision

PASSAGES = [
    Passage(f"p{i}", f"T{i}", text)
    for i, text in enumerate(
        [
            "Paris is the capital of France and its largest city.",
            "The Nile is a river in Africa, among the longest in the world.",
            "Berlin is the capital of Germany.",
            "Mount Everest is the highest mountain above sea level.",
            "The Seine flows through Paris to the English Channel.",
        ]
    )
]
QUESTIONS = ["What is the capital of France?", "Which river flows through Paris?", "What is the capital of Germany?"]
ANSWERS = ["Paris", "the Seine", "Berlin"]

# bf16 autocast vs fp32 on the passage scores S and on p_gold = softmax(S / tau): stated tolerances
S_RTOL = 0.05  # per passage, relative to the largest |S| of the question
P_GOLD_ATOL = 0.05  # absolute, on p_gold with a sharp tau = 0.1 x the spread of S (SmolLM2: 0.037)


def test_auto_resolves_to_bf16_only_where_native():
    cpu = resolve_precision("auto", "cpu")
    assert cpu == ("bf16" if bf16_supported("cpu") else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # honoured (with a warning when emulated)
    assert resolve_precision("fp16", "cpu") == "fp32"  # fp16 autocast is CUDA only
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")


def _scores(reader, precision):
    spec = get_signal_spec("attention")
    with torch.no_grad(), autocast(precision, "cpu"):
        return spec.scores_batch(
            reader, QUESTIONS, [PASSAGES] * len(QUESTIONS), ANSWERS, layers=None, value_norm=True, aggregation="sum"
        )


def _compare(S32, S16):
    rel = ((S16 - S32).abs().amax(1) / S32.abs().amax(1)).max().item()
    tau = 0.1 * (S32.amax(1) - S32.amin(1)).clamp(min=1e-6)
    p32 = torch.stack([target(s, float(t)) for s, t in zip(S32, tau)])
    p16 = torch.stack([target(s, float(t)) for s, t in zip(S16, tau)])
    return rel, (p16 - p32).abs().max().item()


def test_bf16_autocast_keeps_attention_scores_within_tolerance(tiny_models):
    from ragdistill.readers import get_reader

    reader = get_reader(tiny_models["reader"], kind="decoder", device="cpu")
    S32, S16 = _scores(reader, "fp32"), _scores(reader, "bf16")
    assert S16.dtype == torch.float32 and torch.isfinite(S16).all()
    rel, dp = _compare(S32, S16)
    assert rel <= S_RTOL, rel
    assert dp <= P_GOLD_ATOL, dp
    assert next(reader.model.parameters()).dtype == torch.float32  # autocast, weights untouched


@pytest.mark.slow
def test_bf16_autocast_keeps_smollm2_attention_scores_within_tolerance():
    from ragdistill.readers import get_reader

    reader = get_reader("smollm2-135m", kind="decoder", device="cpu")
    S32, S16 = _scores(reader, "fp32"), _scores(reader, "bf16")
    rel, dp = _compare(S32, S16)
    assert rel <= S_RTOL, rel
    assert dp <= P_GOLD_ATOL, dp
    assert (S16.argmax(1) == S32.argmax(1)).all()


def test_batched_signal_equals_one_question_at_a_time(tiny_models):
    from ragdistill.readers import get_reader

    reader = get_reader(tiny_models["reader"], kind="decoder", device="cpu", batch_size=8)
    spec = get_signal_spec("attention")
    opts = dict(layers=None, value_norm=True, aggregation="sum")
    with torch.no_grad():
        batched = spec.scores_batch(reader, QUESTIONS, [PASSAGES] * 3, ANSWERS, **opts)
        single = dataclasses.replace(spec, batch=None).scores_batch(reader, QUESTIONS, [PASSAGES] * 3, ANSWERS, **opts)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("impl", ["loop", "foreach", "fused"])
def test_optimiser_kernels_compute_the_same_update(impl):
    from ragdistill.config import OptimConfig

    torch.manual_seed(0)
    ref = torch.nn.Linear(16, 8)
    grads = [torch.randn_like(p) for p in ref.parameters()]

    def run(kind):
        model = torch.nn.Linear(16, 8)
        model.load_state_dict(ref.state_dict())
        opt = build_optimizer([("reader", list(model.parameters()), 1e-2)], OptimConfig(impl=kind, weight_decay=0.01))
        for _ in range(3):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in model.parameters()], opt

    base, _ = run("loop")
    got, opt = run(impl)
    for a, b in zip(base, got):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    flags = opt.param_groups[0]
    assert bool(flags.get("fused")) == (impl == "fused") and bool(flags.get("foreach")) == (impl == "foreach")


def test_auto_picks_fused_on_cpu():
    assert optimizer_impl("auto", [torch.nn.Parameter(torch.zeros(2))]) == {"fused": True}


def test_bf16_refresh_embeddings_keep_the_top_k():
    import numpy as np

    from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

    r = make_tiny_retriever(normalize=True)
    ps = synthetic_passages(60)
    full = r.encode_passages(ps, batch_size=16)
    r.precision = "bf16"
    half = r.encode_passages(ps, batch_size=16)
    q = full[:20]
    top = lambda x: np.argsort(-(q @ x.T), axis=1)[:, :5]  # noqa: E731
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top(full).tolist(), top(half).tolist())])
    assert overlap >= 0.9, overlap

"""Numerical edge cases: targets and losses stay finite; a non-finite loss skips the step, names the batch, counts it.

All-equal and all-zero signals, a single passage (K = 1), huge scores, tiny temperatures,
half precision; one-token answers, identical passages and bf16 weights in a real (tiny)
reader; an infinite reader signal inside the training loop.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError
from ragdistill.signals import distillation_loss, p_retr, target
from tests.reliability.conftest import count

TEMPS = st.sampled_from([1e-45, 1e-30, 1e-8, 1e-3, 0.05, 1.0, 1e3, 1e30])
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16])


@st.composite
def score_rows(draw):
    """[B, K] scores: all-equal, all-zero, one-hot huge, random wide-range, or K = 1."""
    b = draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 1, 2, 5]))
    kind = draw(st.sampled_from(["equal", "zero", "spike", "random", "tiny"]))
    if kind == "equal":
        v = draw(st.floats(-1e4, 1e4, allow_nan=False))
        return torch.full((b, k), v, dtype=torch.float64)
    if kind == "zero":
        return torch.zeros(b, k, dtype=torch.float64)
    if kind == "spike":
        x = torch.zeros(b, k, dtype=torch.float64)
        x[:, draw(st.integers(0, k - 1))] = draw(st.sampled_from([1e4, -1e4, 6e4]))
        return x
    if kind == "tiny":
        return torch.tensor(
            draw(st.lists(st.floats(0, 1e-38), min_size=b * k, max_size=b * k)), dtype=torch.float64
        ).view(b, k)
    vals = draw(st.lists(st.floats(-6e4, 6e4, allow_nan=False), min_size=b * k, max_size=b * k))
    return torch.tensor(vals, dtype=torch.float64).view(b, k)


@given(
    S=score_rows(), s=score_rows(), tau=TEMPS, theta=TEMPS, dtype=DTYPES, mode=st.sampled_from(["softmax", "normalize"])
)
def test_targets_and_loss_stay_finite(S, s, tau, theta, dtype, mode):
    count("numerical edge cases generated")
    if s.shape != S.shape:
        s = s.flatten()[: S.numel()].reshape(S.shape) if s.numel() >= S.numel() else torch.zeros_like(S)
    S, s = S.to(dtype), s.to(dtype)
    if mode == "normalize":
        S = S.abs()  # normalize needs non-negative scores (attention is)
    p = target(S, tau, mode)
    assert torch.isfinite(p).all() and (p >= 0).all()
    assert torch.allclose(p.double().sum(-1), torch.ones(S.shape[0], dtype=torch.float64), atol=1e-2)
    q = p_retr(s, theta)
    assert torch.isfinite(q).all()
    s = s.clone().requires_grad_(True)
    loss = distillation_loss(s, S, theta, tau, mode=mode)
    assert torch.isfinite(loss) and loss.item() >= -1e-3
    loss.backward()
    assert torch.isfinite(s.grad).all()
    if S.shape[1] == 1:
        assert loss.item() == pytest.approx(0.0, abs=1e-6)  # one passage: nothing to distil


def test_equal_scores_give_uniform_targets():
    for S in (torch.zeros(2, 5), torch.full((2, 5), 3.0)):
        assert torch.allclose(target(S, 1e-30), torch.full((2, 5), 0.2))
        assert torch.allclose(target(S, 1.0, "normalize"), torch.full((2, 5), 0.2))
    assert distillation_loss(torch.zeros(1, 5), torch.zeros(1, 5), 1e-30, 1e-30).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_scores_make_the_loss_nonfinite_not_silently_wrong(bad):
    """A broken signal must surface as a non-finite loss, which the training loop detects and skips."""
    S = torch.tensor([[1.0, bad, 0.5]])
    s = torch.tensor([[0.1, 0.2, 0.3]], requires_grad=True)
    loss = distillation_loss(s, S, 0.1, 1.0)
    if bad == float("-inf"):
        assert torch.isfinite(loss)  # -inf is a legitimate "never this passage" score
    else:
        assert not torch.isfinite(loss)


def test_temperature_zero_or_negative_is_refused():
    for t in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            target(torch.zeros(3), t)
        with pytest.raises(ConfigError):
            distillation_loss(torch.zeros(1, 3), torch.zeros(1, 3), t)


# --------------------------------------------------------------------------- a real (tiny) reader


@pytest.fixture(scope="module")
def tiny_reader(tiny_models):
    from ragdistill.readers.decoder import DecoderReader

    return DecoderReader(tiny_models["reader"], device="cpu", max_prompt_tokens=120, max_new_tokens=2)


PASSAGES = [
    Passage(str(i), f"T{i}", t)
    for i, t in enumerate(
        [
            "Paris is the capital of France.",
            "The Nile flows north.",
            "Copper conducts heat.",
            "Owls hunt at night.",
            "Tea comes from leaves.",
        ]
    )
]


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("answer", ["Paris", "x", "France and the Nile"])
def test_attention_signal_is_finite_for_small_k_and_one_token_answers(tiny_reader, k, answer):
    res = tiny_reader.attention_scores("What is the capital of France?", PASSAGES[:k], answer)
    count("numerical edge cases generated")
    assert (
        res.passage_scores.shape == (k,)
        and torch.isfinite(res.passage_scores).all()
        and (res.passage_scores >= 0).all()
    )
    assert torch.isfinite(target(res.passage_scores, 0.1)).all()
    ppl = tiny_reader.perplexity_scores("What is the capital of France?", PASSAGES[:k], answer)
    assert torch.isfinite(ppl).all()


def test_identical_passages_and_bf16_weights(tiny_models):
    from ragdistill.readers.decoder import DecoderReader

    same = [PASSAGES[0]] * 4
    reader = DecoderReader(tiny_models["reader"], device="cpu", dtype=torch.bfloat16, max_prompt_tokens=120)
    res = reader.attention_scores("Capital of France?", same, "Paris")
    count("numerical edge cases generated")
    assert torch.isfinite(res.passage_scores).all()
    assert torch.isfinite(distillation_loss(torch.zeros(1, 4), res.passage_scores[None].float(), 0.05, 0.1))
    loss = reader.lm_loss(["Capital of France?"], [same], ["Paris"])
    assert torch.isfinite(loss)


def test_empty_answer_is_a_clear_error(tiny_reader):
    """An empty (e.g. generated) answer cannot be scored: a ConfigError that says so, not NaN."""
    with pytest.raises(ConfigError, match="answer"):
        tiny_reader.attention_scores("Capital of France?", PASSAGES[:2], "")
    with pytest.raises(ConfigError, match="answer"):
        tiny_reader.attention_scores("Capital of France?", PASSAGES[:2], "   ")


# --------------------------------------------------------------------------- the training loop


def test_infinite_signal_skips_the_step_names_the_batch_and_keeps_weights(tiny_models, tiny_world, tmp_path, caplog):
    from ragdistill.config import load_config
    from ragdistill.training.loop import Trainer
    from tests.reliability.test_kill_resume import CONFIG, train_args

    argv = train_args(tiny_models, tiny_world, tmp_path / "run")
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = load_config(
        CONFIG,
        [
            *sets,
            "train.regime=retriever",
            "train.steps=3",
            "eval.final=false",
            "train.save_every=0",
            "optim.lr_retriever=1e-2",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.setup()
    real = trainer.signal_fn
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        S = real(*args, **kwargs)
        b = cfg.train.batch_size
        return S * float("inf") if b < calls["n"] <= 2 * b else S  # the 2nd step's batch

    import dataclasses

    trainer.signal = dataclasses.replace(trainer.signal, fn=broken, batch=None)  # one question per call
    trainer.train_step()
    after_first = {k: v.clone() for k, v in trainer.retriever.state_dict().items()}
    with caplog.at_level("WARNING"):
        rec = trainer.train_step()
    count("non-finite losses injected")
    assert rec["skipped"] and trainer.state.skipped_steps == 1
    assert "step 1 skipped" in caplog.text and "demo-train" in caplog.text  # names the batch's question ids
    now = trainer.retriever.state_dict()
    assert all(torch.equal(after_first[k], now[k]) for k in now)  # no update from the bad batch
    assert all(torch.isfinite(v).all() for v in now.values() if v.is_floating_point())
    rec = trainer.train_step()  # and training goes on
    assert not rec["skipped"] and math.isfinite(rec["loss"]) and trainer.state.step == 3
    trainer._close_logs()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16/bf16 autocast on a GPU needs CUDA (CPU bf16 is covered above)"
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_gpu(tiny_models, dtype):
    from ragdistill.readers.decoder import DecoderReader

    reader = DecoderReader(tiny_models["reader"], device="cuda", dtype=dtype, max_prompt_tokens=120)
    res = reader.attention_scores("What is the capital of France?", PASSAGES, "Paris")
    assert torch.isfinite(res.passage_scores).all()
    s = torch.zeros(1, 5, device="cuda", dtype=dtype, requires_grad=True)
    loss = distillation_loss(s, res.passage_scores[None].to("cuda", dtype), 0.05, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()

"""The paper configs' τ_gold reproduce ATLAS's attention-distillation target (issue 15, item 1).

ATLAS (facebookresearch/atlas, src/fid.py) re-implemented here from its code, on a tiny T5:
per decoder cross-attention layer it stores ``(‖v‖[:, :, None] * α).mean(dim=1)`` (mean over
heads), then ``aggregate_value`` sums over layers, label positions and the passage row's tokens
and divides by ``256 * n_layers * n_labels`` ("normssum"); the target is
``softmax(gold_score / temperature_gold)`` with ATLAS's default temperature_gold = 0.01.
The reference runs an eager copy, encodes each passage row alone (ATLAS pads and masks; the
same numbers) and reads ``cross_attentions`` and the value projections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.readers.fid import FiDReader
from ragdistill.readers.fid_tiny import tiny_t5, tiny_tokenizer
from ragdistill.signals import target

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "ragdistill" / "configs"
ATLAS_TEMPERATURE_GOLD = 0.01  # ATLAS's --temperature_gold default
ATLAS_DIVISOR = 256  # ATLAS: ntokens_sum = 256 * n_layers * n_labels

QUESTION = "who wrote the novel Moby Dick?"
ANSWER = "Herman Melville"
PASSAGES = [
    Passage("a", "Moby Dick", "Herman Melville wrote Moby Dick in 1851, a novel about a whale."),
    Passage("b", "Rome", "Rome is the capital city of Italy."),
    Passage("c", "Everest", "Mount Everest is the highest mountain on Earth, on the border of Nepal and China."),
    Passage("d", "Melville", "The answer is forty two, said the computer after seven and a half million years."),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def models(tok):
    sdpa = tiny_t5(tok, seed=11, num_layers=3, attn_implementation="sdpa")
    eager = tiny_t5(tok, seed=11, num_layers=3, attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


def atlas_gold_score(
    model, tok, question, passages, answer, include_eos: bool = False, whole_row: bool = False
) -> torch.Tensor:
    """ATLAS's "normssum" gold score per passage.

    ATLAS's own token sets are ``include_eos=True`` (labels = A + EOS) and ``whole_row=True``
    (every non-padding encoder token of the row). The defaults use the sets our reader scores
    (positions predicting A_1..A_|A|, the ``title: .. context: ..`` tokens), so that the
    comparison checks the normalisation and the temperature, which is what τ_gold is about.
    """
    rows, spans, offset = [], [], 0
    n_q = len(tok(f"question: {question}", add_special_tokens=False)["input_ids"])
    for p in passages:
        ids = tok(f"question: {question} title: {p.title} context: {p.text}")["input_ids"]  # ... </s>
        rows.append(ids)
        spans.append((offset, offset + len(ids)) if whole_row else (offset + n_q, offset + len(ids) - 1))
        offset += len(ids)
    a_ids = tok(answer, add_special_tokens=False)["input_ids"]
    labels = a_ids + [tok.eos_token_id]
    dec_in = torch.tensor([[model.config.decoder_start_token_id] + labels[:-1]])  # shift_right(labels)
    n_labels = len(labels) if include_eos else len(a_ids)
    from transformers.modeling_outputs import BaseModelOutput

    values = []
    hooks = [
        blk.layer[1].EncDecAttention.v.register_forward_hook(lambda m, a, out: values.append(out))
        for blk in model.decoder.block
    ]
    with torch.no_grad():
        hidden = torch.cat([model.get_encoder()(input_ids=torch.tensor([r])).last_hidden_state for r in rows], dim=1)
        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            decoder_input_ids=dec_in,
            output_attentions=True,
            use_cache=False,
        )
    for h in hooks:
        h.remove()
    n_layers, H, T = len(out.cross_attentions), model.config.num_heads, hidden.shape[1]
    total = torch.zeros(T, dtype=torch.float64)
    for layer in range(n_layers):
        attn = out.cross_attentions[layer][0].double()  # [H, Q, T]
        norm = values[layer][0].double().view(T, H, -1).norm(dim=-1).T  # [H, T]
        stored = (norm[:, None, :] * attn).mean(dim=0)  # ATLAS: .mean(dim=1), heads
        total += stored[:n_labels].sum(dim=0)  # label positions
    gold = torch.stack([total[s:e].sum() for s, e in spans])  # passage tokens
    return gold / (ATLAS_DIVISOR * n_layers * n_labels)


def _signal_options(cfg) -> dict:
    s = cfg.signal
    return {"layers": s.layers, "value_norm": s.value_norm, "aggregation": s.aggregation}


def test_paper_encdec_config_reproduces_atlas_target(models, tok):
    from ragdistill.config import load_config

    cfg = load_config(CONFIGS / "paper" / "encdec_distill.yaml")
    assert cfg.signal.name == "attention" and cfg.signal.mode == "softmax"
    reader = FiDReader(models[0], tok, max_passage_tokens=512)
    S = reader.attention_scores(QUESTION, PASSAGES, ANSWER, **_signal_options(cfg)).passage_scores
    ours = target(S.double(), cfg.signal.tau_gold)
    gold = atlas_gold_score(models[1], tok, QUESTION, PASSAGES, ANSWER, whole_row=True)  # S sums the whole block
    atlas = torch.softmax(gold / ATLAS_TEMPERATURE_GOLD, dim=-1)
    # the scores are the same up to ATLAS's constant: S = 256 · gold
    torch.testing.assert_close(S.double(), ATLAS_DIVISOR * gold, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours, atlas, rtol=1e-4, atol=1e-6)
    assert ours.max() < 0.99  # not the one-hot target τ = 0.01 gave on our S


def test_tau_from_atlas_and_the_other_paper_configs():
    from ragdistill.config import load_config
    from ragdistill.signals.targets import ATLAS_NORMS_SCALE, tau_from_atlas

    assert ATLAS_NORMS_SCALE == ATLAS_DIVISOR
    assert tau_from_atlas(0.01) == pytest.approx(2.56)
    assert tau_from_atlas(0.01, "perplexity") == 0.01
    tau = {p.stem: load_config(p).signal.tau_gold for p in sorted((CONFIGS / "paper").glob("*.yaml"))}
    # decoder-only attention: ATLAS's temperature_gold with ATLAS's score scale, as for the FiD reader
    for name in ("encdec_distill", "offshelf_distill", "finetuned_step1", "finetuned_step2"):
        assert tau[name] == pytest.approx(tau_from_atlas(ATLAS_TEMPERATURE_GOLD)), name
    # perplexity: S = −mean NLL is ATLAS's "ppmean" score unscaled, so temperature_gold carries over
    assert tau["perplexity_distill"] == pytest.approx(tau_from_atlas(ATLAS_TEMPERATURE_GOLD, "perplexity"))


def test_atlas_token_sets_differ_only_slightly(models, tok):
    """ATLAS's own sets (EOS position, whole row) move the target, but it stays a soft distribution."""
    reader = FiDReader(models[0], tok, max_passage_tokens=512)
    S = reader.attention_scores(QUESTION, PASSAGES, ANSWER).passage_scores.double()
    full = torch.softmax(
        atlas_gold_score(models[1], tok, QUESTION, PASSAGES, ANSWER, include_eos=True, whole_row=True)
        / ATLAS_TEMPERATURE_GOLD,
        dim=-1,
    )
    ours = target(S, 256 * ATLAS_TEMPERATURE_GOLD)
    assert torch.isclose(full.sum(), torch.tensor(1.0, dtype=full.dtype))
    print("p_gold ours", ours.tolist(), "ATLAS (own token sets)", full.tolist())

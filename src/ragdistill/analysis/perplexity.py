"""Per-token scores for the perplexity signal: the per-token answer log-likelihood gains.

The perplexity signal scores a passage by how well the reader predicts the answer when it
reads that passage alone, S_i = mean_a log p(A_a | Q, n_i, A_<a) (DESIGN §3). The attention
analysis needs a per-token quantity; the study's appendix looks at "the distribution of
per-token answer log-likelihood gains". We define the gain of token t of passage n_i by
**integrated gradients** on the reader's input embeddings (Sundararajan et al., 2017):

    g_t = (x_t − x'_t) · (1/m) Σ_{k=1..m} ∂S_i/∂x_t |_{x' + (k − ½)/m · (x − x')}

with x the input embeddings of the single-passage input (prompt + answer), and the baseline
x' equal to x except that passage i's token embeddings are zero ("the passage is absent,
its length kept"). By IG's completeness, Σ_{t ∈ n_i} g_t = S_i(x) − S_i(x'), the gain in the
answer's mean log-likelihood that passage i brings, up to the midpoint-rule error in m
(exact as m → ∞; m = 1 is gradient × input at the midpoint). The token scores analysed are
the positive parts w_t = max(g_t, 0) (the tokens that raise the answer's likelihood) — â
needs non-negative scores; the raw gains are kept in the diagnostics.

Cost: one forward+backward of a batch of m copies per passage (K × m sequences), plus one
call of the reader's ``attention_scores`` on the single passage to get its exact prompt layout
(the same template its ``perplexity_scores`` uses: passage i alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ragdistill.data.types import Passage
from ragdistill.readers.base import AttentionResult


@dataclass
class PerplexityTokenDiagnostics:
    """What the gains were computed from, per passage (for checks and the report)."""

    loglik: list[float]            # S_i(x): mean answer log-likelihood with passage i
    baseline_loglik: list[float]   # S_i(x'): the same with passage i's embeddings zeroed
    gain_sums: list[float]         # Σ_t g_t (≈ loglik − baseline_loglik by completeness)
    raw_gains: list[torch.Tensor]  # g_t of each passage's tokens, signed


def _answer_loglik(reader: Any, kind: str, embeds: torch.Tensor, layout: AttentionResult) -> torch.Tensor:
    """Mean log-likelihood of the answer for a batch of input-embedding sequences [B, T, D] -> [B]."""
    model = reader.model
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    if kind == "fid":
        # teacher forcing as the FiD reader does it: decoder input = [start] + A_1..A_{|A|-1}, targets A (no EOS)
        answer = layout.answer_ids.to(embeds.device)
        start = getattr(reader, "start_id", None)
        if start is None:
            start = model.config.decoder_start_token_id
        dec_in = torch.cat([torch.tensor([int(start)], device=embeds.device), answer[:-1]])
        dec_in = dec_in.unsqueeze(0).expand(embeds.shape[0], -1)
        logits = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=dec_in, use_cache=False).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, answer.view(1, -1, 1).expand(embeds.shape[0], -1, 1)).squeeze(-1).mean(-1)
    s, e = layout.answer_span
    targets = layout.input_ids[s:e].to(embeds.device)
    logits = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits[:, s - 1:e - 1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.view(1, -1, 1).expand(embeds.shape[0], -1, 1)).squeeze(-1).mean(-1)


BASELINES = ("mean", "zero")


def _baseline_row(emb_layer: torch.nn.Module, baseline: str) -> torch.Tensor:
    if baseline == "zero":
        return torch.zeros_like(emb_layer.weight[0])
    return emb_layer.weight.detach().mean(0)


def passage_token_gains(reader: Any, question: str, passage: Passage, answer: str, steps: int = 4,
                        baseline: str = "mean") -> tuple[AttentionResult, torch.Tensor, float, float]:
    """(single-passage layout, g_t over the passage's tokens, S_i(x), S_i(x')) for one passage."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}")
    layout = reader.attention_scores(question, [passage], answer, span="content")
    # readers may build these under torch.inference_mode(); autograd needs ordinary tensors
    layout.input_ids, layout.answer_ids = layout.input_ids.clone(), layout.answer_ids.clone()
    kind = getattr(reader, "kind", "decoder")
    model = reader.model
    emb_layer = model.get_input_embeddings()
    device = emb_layer.weight.device
    ids = layout.input_ids.to(device)
    start, end = layout.passage_spans[0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = emb_layer(ids).detach()                     # [T, D]
            base = x.clone()
            base[start:end] = _baseline_row(emb_layer, baseline)
            ends = _answer_loglik(reader, kind, torch.stack([x, base]), layout)
        alphas = (torch.arange(steps, device=device, dtype=x.dtype) + 0.5) / steps
        path = (base.unsqueeze(0) + alphas.view(-1, 1, 1) * (x - base).unsqueeze(0)).requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            ll = _answer_loglik(reader, kind, path, layout)
            (grad,) = torch.autograd.grad(ll.sum(), path)
        finally:
            for p in params:
                p.requires_grad_(True)
        gains = ((x - base) * grad.mean(0)).sum(-1)[start:end].detach().float().cpu()
    finally:
        model.train(was_training)
    return layout, gains, float(ends[0]), float(ends[1])


def perplexity_token_scores(reader: Any, question: str, passages: Sequence[Passage], answer: str, steps: int = 4,
                            baseline: str = "mean") -> tuple[AttentionResult, PerplexityTokenDiagnostics]:
    """An AttentionResult whose token scores are the positive per-token gains over the K passages.

    ``input_ids`` is the concatenation of the K passages' own tokens (as the reader tokenises
    them in its single-passage inputs), ``passage_spans`` their spans, ``token_scores`` the
    positive parts of the gains and ``passage_scores`` their sums (so Σ_{t∈n_i} w_t = S_i of
    this result, as for every AttentionResult).
    """
    ids, scores, spans, diag = [], [], [], PerplexityTokenDiagnostics([], [], [], [])
    answer_ids = None
    pos = 0
    for passage in passages:
        layout, gains, ll, base_ll = passage_token_gains(reader, question, passage, answer, steps, baseline)
        s, e = layout.passage_spans[0]
        ids.append(layout.input_ids[s:e].cpu())
        scores.append(gains.clamp(min=0.0))
        spans.append((pos, pos + (e - s)))
        pos += e - s
        answer_ids = layout.answer_ids
        diag.loglik.append(ll)
        diag.baseline_loglik.append(base_ll)
        diag.gain_sums.append(float(gains.sum()))
        diag.raw_gains.append(gains)
    token_scores = torch.cat(scores) if scores else torch.zeros(0)
    result = AttentionResult(
        passage_scores=torch.stack([sc.sum() for sc in scores]) if scores else torch.zeros(0),
        token_scores=token_scores,
        input_ids=torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long),
        passage_spans=spans,
        answer_span=(0, 0 if answer_ids is None else int(answer_ids.numel())),
        answer_ids=answer_ids if answer_ids is not None else torch.zeros(0, dtype=torch.long),
    )
    return result, diag

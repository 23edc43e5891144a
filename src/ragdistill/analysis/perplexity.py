"""Per-token scores for the perplexity signal: the per-token answer log-likelihood gains.

The perplexity signal scores a passage by how well the reader predicts the answer when it
reads that passage alone, S_i = mean_a log p(A_a | Q, n_i, A_<a) (DESIGN §3). The attention
analysis needs a per-token quantity; the study's appendix looks at "the distribution of
per-token answer log-likelihood gains". We define the gain of token t of passage n_i by
**integrated gradients** on the reader's input embeddings (Sundararajan et al., 2017):

    g_t = (x_t − x'_t) · Σ_{k=1..m} ω_k ∂S_i/∂x_t |_{x' + α_k (x − x')}

with x the input embeddings of the single-passage input (prompt + answer), and the baseline
x' equal to x except that each of passage i's token embeddings is replaced by the baseline row:
by default (``baseline="mean"``) the mean row of the reader's input-embedding matrix, "an
average token" ("the passage is absent, its length kept"); ``baseline="zero"`` uses the zero
vector. (α_k, ω_k) is an m-point quadrature rule on [0, 1] (``quadrature_nodes``): by default
the midpoint rule α_k = (k − ½)/m, ω_k = 1/m with m = DEFAULT_STEPS = 32 (the previous default
was m = 4); Gauss–Legendre and the trapezoid rule are options.
By IG's completeness, Σ_{t ∈ n_i} g_t = S_i(x) − S_i(x'), the gain in the answer's mean
log-likelihood that passage i brings, up to the quadrature error (exact as m → ∞; m = 1 is
gradient × input at the midpoint). That error is not small for few nodes: along the path the
answer's log-likelihood is rough and changes abruptly (with SmolLM2 on a demo question, it
wiggles by ±0.2 for α in [0.25, 0.5], then rises by 6 nats between α = 0.5 and 0.7), so the
4-step midpoint rule got the sign of the gain wrong on a tiny model, and Gauss–Legendre, whose
nodes are sparse in the middle, does worse than the midpoint rule at equal m (DEFAULT_STEPS).
Every analysis records it per instance (``completeness_error``; instances.jsonl
``ig_completeness_error``), so an accuracy problem is visible instead of silent.
The token scores analysed are the positive parts w_t = max(g_t, 0) (the tokens that raise the
answer's likelihood) — â needs non-negative scores; the raw gains are kept in the diagnostics.

Cost: forward+backward passes over m copies per passage (K × m sequences, in batches of
PATH_BATCH), plus one
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

    def passage_completeness_errors(self) -> list[float | None]:
        """|Σ_t g_t − ΔS_i| / |ΔS_i| per passage (None where the passage changes nothing, ΔS_i = 0)."""
        out: list[float | None] = []
        for ll, base, total in zip(self.loglik, self.baseline_loglik, self.gain_sums):
            delta = ll - base
            out.append(abs(total - delta) / abs(delta) if delta != 0 else None)
        return out

    def completeness_error(self) -> float | None:
        """The instance's IG completeness error: Σ_i |Σ_t g_t − ΔS_i| / Σ_i |ΔS_i| over its passages.

        0 is exact; None when no passage changes the log-likelihood at all.
        """
        num = sum(abs(total - (ll - base)) for ll, base, total in zip(self.loglik, self.baseline_loglik, self.gain_sums))
        den = sum(abs(ll - base) for ll, base in zip(self.loglik, self.baseline_loglik))
        return num / den if den > 0 else None


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
QUADRATURES = ("gauss-legendre", "midpoint", "trapezoid")

#: defaults of the analysis (``ragdistill analyze --ig-steps``): the 32-point midpoint rule. Measured with
#: SmolLM2 on demo question demo-dev-0001 (gold passage + one other), completeness error Σ_i|Σg − ΔS_i| / Σ_i|ΔS_i|:
#: midpoint 4 (the previous default) 27 %, Gauss–Legendre 4 / 8 / 16 / 32: 369 / 63 / 67 / 16 %, midpoint 32: 13 %.
#: The path is rough (wiggles, then a steep rise of width ~0.1), so the equally spaced rule beats Gauss–Legendre
#: at equal cost; 5 % needs more points than 32 there (not measured yet): the error is recorded per instance.
DEFAULT_STEPS = 32 (the previous default
was m = 4); Gauss–Legendre and the trapezoid rule are options.
By IG's completeness, Σ_{t ∈ n_i} g_t = S_i(x) − S_i(x'), the gain in the answer's mean
log-likelihood that passage i brings, up to the quadrature error (exact as m → ∞; m = 1 is
gradient × input at the midpoint). That error is not small for few nodes: along the path the
answer's log-likelihood is rough and changes abruptly (with SmolLM2 on a demo question, it
wiggles by ±0.2 for α in [0.25, 0.5], then rises by 6 nats between α = 0.5 and 0.7), so the
4-step midpoint rule got the sign of the gain wrong on a tiny model, and Gauss–Legendre, whose
nodes are sparse in the middle, does worse than the midpoint rule at equal m (DEFAULT_STEPS).
Every analysis records it per instance (``completeness_error``; instances.jsonl
``ig_completeness_error``), so an accuracy problem is visible instead of silent.
The token scores analysed are the positive parts w_t = max(g_t, 0) (the tokens that raise the
answer's likelihood) — â needs non-negative scores; the raw gains are kept in the diagnostics.

Cost: forward+backward passes over m copies per passage (K × m sequences, in batches of
PATH_BATCH), plus one
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

    def passage_completeness_errors(self) -> list[float | None]:
        """|Σ_t g_t − ΔS_i| / |ΔS_i| per passage (None where the passage changes nothing, ΔS_i = 0)."""
        out: list[float | None] = []
        for ll, base, total in zip(self.loglik, self.baseline_loglik, self.gain_sums):
            delta = ll - base
            out.append(abs(total - delta) / abs(delta) if delta != 0 else None)
        return out

    def completeness_error(self) -> float | None:
        """The instance's IG completeness error: Σ_i |Σ_t g_t − ΔS_i| / Σ_i |ΔS_i| over its passages.

        0 is exact; None when no passage changes the log-likelihood at all.
        """
        num = sum(abs(total - (ll - base)) for ll, base, total in zip(self.loglik, self.baseline_loglik, self.gain_sums))
        den = sum(abs(ll - base) for ll, base in zip(self.loglik, self.baseline_loglik))
        return num / den if den > 0 else None


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
QUADRATURES = ("gauss-legendre", "midpoint", "trapezoid")

#: defaults of the analysis (``ragdistill analyze --ig-steps``): the 32-point midpoint rule. Measured on the
#: demo world with SmolLM2 (module docstring), the answer log-likelihood along the path is rough (wiggles, then a
#: steep rise of width ~0.1), so the equally spaced rule beats Gauss–Legendre at equal cost there: completeness
#: error 27 % (midpoint, 4: the previous default), 67 % (Gauss–Legendre, 16), 16 % (Gauss–Legendre, 32),
#: ~0.1 % (midpoint, 32, from the 41-point profile of the same path).
DEFAULT_STEPS = 32
DEFAULT_QUADRATURE = "midpoint"
#: path points per forward+backward (the m copies of the input are processed in chunks of this size)
PATH_BATCH = 8


def quadrature_nodes(steps: int, quadrature: str = DEFAULT_QUADRATURE) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_k, ω_k), k = 1..m: nodes in [0, 1] and weights summing to 1, for ∫_0^1 f(α) dα ≈ Σ_k ω_k f(α_k).

    'gauss-legendre' is exact for polynomials of degree ≤ 2m − 1 (nodes inside (0, 1)); 'midpoint' puts
    the m nodes at (k − ½)/m with equal weights; 'trapezoid' puts them at k/(m − 1) (m ≥ 2; both ends,
    i.e. the baseline and the input, included) with half weights at the ends. m = 1 is the midpoint
    α = ½ for every rule (gradient × input at the midpoint).
    """
    import numpy as np

    if steps < 1:
        raise ValueError("steps must be at least 1")
    if quadrature not in QUADRATURES:
        raise ValueError(f"quadrature must be one of {QUADRATURES}")
    if steps == 1 or quadrature == "midpoint":
        nodes = (np.arange(steps) + 0.5) / steps
        weights = np.full(steps, 1.0 / steps)
    elif quadrature == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        nodes, weights = (x + 1.0) / 2.0, w / 2.0
    else:
        nodes = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[0] = weights[-1] = 0.5 / (steps - 1)
    return torch.tensor(nodes, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)


def _baseline_row(emb_layer: torch.nn.Module, baseline: str) -> torch.Tensor:
    if baseline == "zero":
        return torch.zeros_like(emb_layer.weight[0])
    return emb_layer.weight.detach().mean(0)


def passage_token_gains(reader: Any, question: str, passage: Passage, answer: str, steps: int = DEFAULT_STEPS,
                        baseline: str = "mean", quadrature: str = DEFAULT_QUADRATURE
                        ) -> tuple[AttentionResult, torch.Tensor, float, float]:
    """(single-passage layout, g_t over the passage's tokens, S_i(x), S_i(x')) for one passage."""
    alphas, weights = quadrature_nodes(steps, quadrature)
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
        alphas, weights = alphas.to(device, x.dtype), weights.to(device, x.dtype)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        avg_grad = torch.zeros_like(x)                      # Σ_k ω_k ∂S/∂x at α_k
        try:
            for c in range(0, len(alphas), PATH_BATCH):     # bounded memory for many nodes
                a, w = alphas[c:c + PATH_BATCH], weights[c:c + PATH_BATCH]
                path = (base.unsqueeze(0) + a.view(-1, 1, 1) * (x - base).unsqueeze(0)).requires_grad_(True)
                ll = _answer_loglik(reader, kind, path, layout)
                (grad,) = torch.autograd.grad(ll.sum(), path)
                avg_grad += (w.view(-1, 1, 1) * grad).sum(0)
        finally:
            for p in params:
                p.requires_grad_(True)
        gains = ((x - base) * avg_grad).sum(-1)[start:end].detach().float().cpu()
    finally:
        model.train(was_training)
    return layout, gains, float(ends[0]), float(ends[1])


def perplexity_token_scores(reader: Any, question: str, passages: Sequence[Passage], answer: str,
                            steps: int = DEFAULT_STEPS, baseline: str = "mean", quadrature: str = DEFAULT_QUADRATURE
                            ) -> tuple[AttentionResult, PerplexityTokenDiagnostics]:
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
        layout, gains, ll, base_ll = passage_token_gains(reader, question, passage, answer, steps, baseline, quadrature)
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

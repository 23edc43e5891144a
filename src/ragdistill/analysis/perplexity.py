"""Per-token scores for the perplexity signal: the per-token answer log-likelihood gains.

The perplexity signal scores a passage by how well the reader predicts the answer when it
reads that passage alone, S_i = mean_a log p(A_a | Q, n_i, A_<a) (METHOD §3.4). The attention
analysis (METHOD §3.7) needs a per-token quantity, "the per-token answer log-likelihood gains".
We define the gain of token t of passage n_i by **integrated gradients** on the reader's input
embeddings (Sundararajan et al., 2017) along the straight path γ(α) = x' + α (x − x'):

    g_t = (x_t − x'_t) · ∫_0^1 ∂S_i/∂x_t |_{γ(α)} dα  ≈  (x_t − x'_t) · Σ_k ω_k ∂S_i/∂x_t |_{γ(α_k)}

with x the input embeddings of the single-passage input (prompt + answer), and the baseline
x' equal to x except that each of passage i's token embeddings is replaced by the baseline row:
by default (``baseline="mean"``) the mean row of the reader's input-embedding matrix, "an
average token" ("the passage is absent, its length kept"); ``baseline="zero"`` uses the zero
vector. By completeness, Σ_{t ∈ n_i} g_t = S_i(x) − S_i(x') = ΔS_i exactly for the integral; the
quadrature (α_k, ω_k) makes an error, recorded per instance as the **completeness error**
Σ_i |Σ_t g_t − ΔS_i| / Σ_i |ΔS_i| (``completeness_error``; instances.jsonl ``ig_completeness_error``).

**Default rule: adaptive trapezoid** (``steps=None``). The nodes include both ends, so S_i(x') and
S_i(x) come with the gradients, and on every interval [a, b] of the grid the exact integral of
dS/dα is known, S(b) − S(a), so the trapezoid rule's error there is known exactly:
e_j = |(b − a)(S'(a) + S'(b))/2 − (S(b) − S(a))|, with S'(α) = ∇S·(x − x') = Σ_t of the per-node
token terms. Start from 4 equal intervals (5 nodes); while Σ_{i,j} e_ij > tolerance · Σ_i |ΔS_i|
(the instance's error bound against its budget), bisect the intervals with the largest e (up to
PATH_BATCH new nodes per passage and round, pooled over the instance's passages); stop when the
bound is within the budget or a passage has ``max_steps`` nodes. Earlier nodes are kept (a
bisection adds one gradient evaluation), and the weights of the final, non-uniform grid are the
trapezoid weights ω_k = (α_{k+1} − α_{k−1})/2 (half an interval at the ends), so Σ_t g_t is exactly
the trapezoid sum whose error was bounded: completeness error ≤ Σ e / Σ |ΔS| < tolerance whenever
``tolerance_reached``. The bound sums the intervals' errors in absolute value, so no cancellation
between intervals counts as accuracy. Nodes gather where the log-likelihood changes: along the
path it is rough (with SmolLM2 on demo-dev-0001 it wiggles by ±0.2 for α in [0.25, 0.5], then rises
by 6 nats between α = 0.5 and 0.7; the fixed 4- and 32-point midpoint rules left 27 % and 13 % there,
and Gauss–Legendre, sparse in the middle, did worse at equal cost).

**Fixed rules** (``steps=m``): an m-point rule of ``quadrature_nodes`` — the midpoint rule
α_k = (k − ½)/m, ω_k = 1/m by default, Gauss–Legendre and the trapezoid rule as options — plus two
gradient-free forwards for S_i(x) and S_i(x'); its error is recorded, not controlled
(``tolerance_reached`` still says whether it came under the tolerance).

The token scores analysed are the positive parts w_t = max(g_t, 0) (the tokens that raise the
answer's likelihood) — â needs non-negative scores; the raw gains are kept in the diagnostics.

Cost: one forward+backward per node and passage (at least 5 and at most ``max_steps`` nodes per passage with
the adaptive rule; the nodes of all K passages are batched together, right-padded, ROW_TOKENS tokens a pass),
plus one call of the reader's ``attention_scores`` on the single passage to get its exact prompt layout (the
same template its ``perplexity_scores`` uses: passage i alone).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ragdistill.data.types import Passage
from ragdistill.readers.base import AttentionResult
from ragdistill.utils.ig_rule import (
    DEFAULT_MAX_STEPS,
    DEFAULT_STEPS,
    DEFAULT_TOLERANCE,
    INITIAL_INTERVALS,
)

BASELINES = ("mean", "zero")
QUADRATURES = ("gauss-legendre", "midpoint", "trapezoid")

# defaults (utils.ig_rule, shared with the CLI): DEFAULT_STEPS = None, the adaptive trapezoid rule, run until the
# instance's completeness-error bound is under DEFAULT_TOLERANCE (0.05) or a passage has DEFAULT_MAX_STEPS (128) nodes.
__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_STEPS",
    "DEFAULT_TOLERANCE",
    "INITIAL_INTERVALS",
    "PerplexityTokenDiagnostics",
    "passage_token_gains",
    "perplexity_token_scores",
    "quadrature_nodes",
    "trapezoid_weights",
]
#: the quadrature of a fixed rule (``steps=m``)
DEFAULT_QUADRATURE = "midpoint"
#: at most this many new nodes per passage and refinement round (the adaptive rule's step size)
PATH_BATCH = 8
#: tokens per forward+backward: the K passages' path points are batched together, right-padded, up to this many
ROW_TOKENS = 1024
#: decoder-only readers: compute the keys and values of the input before the passage once an instance (_Prefix)
PREFIX_CACHE = True
#: batch the K passages' path points together; False is the one-passage-at-a-time schedule (PATH_BATCH rows a
#: forward), kept as bench/bench_ig.py's reference
POOL_PASSAGES = True
#: decoder-only readers: project only the positions that predict an answer token onto the vocabulary
ANSWER_LOGITS = True
#: intervals narrower than this are not bisected further (float32 log-likelihood differences)
MIN_INTERVAL = 2.0**-14
#: absolute floor (nats) of the error budget, for instances where no passage changes the log-likelihood
ABS_TOLERANCE = 1e-6


@dataclass
class PerplexityTokenDiagnostics:
    """What the gains were computed from, per passage (for checks and the report)."""

    loglik: list[float]  # S_i(x): mean answer log-likelihood with passage i
    baseline_loglik: list[float]  # S_i(x'): the same with passage i's embeddings at the baseline row
    gain_sums: list[float]  # Σ_t g_t (≈ loglik − baseline_loglik by completeness)
    raw_gains: list[torch.Tensor]  # g_t of each passage's tokens, signed
    nodes: list[int] = field(default_factory=list)  # gradient evaluations (path points) per passage
    error_bounds: list[float] = field(default_factory=list)  # adaptive rule: Σ_j e_j per passage (nats); fixed: None
    alphas: list[torch.Tensor] = field(default_factory=list)  # the nodes evaluated, per passage, in evaluation order
    rule: str = "adaptive-trapezoid"
    tolerance: float = DEFAULT_TOLERANCE

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
        num = sum(
            abs(total - (ll - base)) for ll, base, total in zip(self.loglik, self.baseline_loglik, self.gain_sums)
        )
        den = sum(abs(ll - base) for ll, base in zip(self.loglik, self.baseline_loglik))
        return num / den if den > 0 else None

    def error_bound(self) -> float | None:
        """Adaptive rule: Σ_i Σ_j e_ij / Σ_i |ΔS_i| (≥ completeness_error); None for a fixed rule or ΔS = 0."""
        if not self.error_bounds or any(b is None for b in self.error_bounds):
            return None
        den = sum(abs(ll - base) for ll, base in zip(self.loglik, self.baseline_loglik))
        return sum(self.error_bounds) / den if den > 0 else None

    def tolerance_reached(self) -> bool:
        """Whether the completeness error is under the tolerance (True when nothing changes: ΔS = 0 is exact)."""
        err = self.completeness_error()
        if err is None:
            return all(abs(t) <= ABS_TOLERANCE for t in self.gain_sums)
        return err < self.tolerance


def _answer_loglik(
    reader: Any,
    kind: str,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    layouts: Sequence[AttentionResult],
    prefix: _Prefix | None = None,
) -> torch.Tensor:
    """Mean log-likelihood of the answer for a batch of input-embedding sequences [B, T, D] -> [B].

    Row b is the single-passage input of ``layouts[b]``, right-padded to T (``mask`` 0 on the padding): the
    decoder-only reader is causal and the FiD encoder masks the padded keys, so a row's value is the one it has
    alone, up to the batched matmuls' rounding. With a decoder ``prefix``, ``embeds`` starts after it (its
    keys and values come from the cache) and ``mask`` covers prefix and rows.
    """
    model = reader.model
    dev = embeds.device
    if kind == "fid":
        # teacher forcing as the FiD reader does it: decoder input = [start] + A_1..A_{|A|-1}, targets A (no EOS);
        # answers of different lengths are right-padded (the decoder is causal, so the padding changes nothing)
        start = getattr(reader, "start_id", None)
        if start is None:
            start = model.config.decoder_start_token_id
        answers = [lay.answer_ids.to(dev) for lay in layouts]
        width = max(int(a.numel()) for a in answers)
        targets = torch.zeros(len(answers), width, dtype=torch.long, device=dev)
        keep = torch.zeros(len(answers), width, dtype=torch.bool, device=dev)
        for b, a in enumerate(answers):
            targets[b, : a.numel()], keep[b, : a.numel()] = a, True
        dec_in = torch.cat([torch.full((len(answers), 1), int(start), device=dev), targets[:, :-1]], dim=1)
        logits = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=dec_in, use_cache=False).logits
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (logp * keep).sum(-1) / keep.sum(-1)
    kwargs: dict[str, Any] = {"use_cache": False}
    skip = 0
    if prefix is not None:
        kwargs.update(cache=prefix.cache(embeds.shape[0]), use_cache=True)
        skip = prefix.length
    # logits only where an answer token is predicted (the union over the rows; ``logits_to_keep`` as the decoder
    # reader's own forward uses it): the vocabulary-wide logits of every position were most of a batch's memory
    # traffic (SmolLM2: 49k entries a position)
    spans = [(lay.answer_span[0] - 1 - skip, lay.answer_span[1] - 1 - skip) for lay in layouts]
    keep = sorted({t for s, e in spans for t in range(s, e)})
    if ANSWER_LOGITS:
        kwargs["logits_to_keep"] = torch.tensor(keep, device=dev)
        where = {t: j for j, t in enumerate(keep)}
    else:
        where = {t: t for t in keep}
    logits = model(inputs_embeds=embeds, attention_mask=mask, **kwargs).logits
    out = []
    for b, (lay, (s, e)) in enumerate(zip(layouts, spans)):
        rows = torch.tensor([where[t] for t in range(s, e)], device=dev)
        logp = torch.log_softmax(logits[b, rows].float(), dim=-1)
        out.append(logp.gather(-1, lay.input_ids[s + 1 + skip : e + 1 + skip].to(dev).view(-1, 1)).squeeze(-1).mean())
    return torch.stack(out)


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


def trapezoid_weights(alphas: torch.Tensor) -> torch.Tensor:
    """Weights of the trapezoid rule on the sorted grid 0 = α_0 < … < α_n = 1: (α_{k+1} − α_{k−1}) / 2, ends half."""
    h = alphas[1:] - alphas[:-1]
    w = torch.zeros_like(alphas)
    w[:-1] += h / 2
    w[1:] += h / 2
    return w


@contextmanager
def _frozen_eval(model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode and no parameter gradients (only the inputs' gradients are needed); restored after."""
    was_training = model.training
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


class _Path:
    """The straight path from passage i's baseline to its input, evaluated at any α (gradients kept per node)."""

    def __init__(self, reader: Any, question: str, passage: Passage, answer: str, baseline: str):
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}")
        layout = reader.attention_scores(question, [passage], answer, span="content")
        # readers may build these under torch.inference_mode(); autograd needs ordinary tensors
        layout.input_ids, layout.answer_ids = layout.input_ids.clone(), layout.answer_ids.clone()
        self.reader, self.layout = reader, layout
        self.kind = getattr(reader, "kind", "decoder")
        emb_layer = reader.model.get_input_embeddings()
        device = emb_layer.weight.device
        self.start, self.end = layout.passage_spans[0]
        with torch.no_grad():
            self.x = emb_layer(layout.input_ids.to(device)).detach()  # [T, D]
            self.base = self.x.clone()
            self.base[self.start : self.end] = _baseline_row(emb_layer, baseline)
        self.diff = self.x - self.base  # zero outside the passage
        self.alphas: list[float] = []  # evaluated nodes, in evaluation order
        self.loglik: list[float] = []  # S(α_k)
        self.terms: list[torch.Tensor] = []  # (x_t − x'_t)·∂S/∂x_t at α_k over the passage's tokens, float64

    def point(self, alpha: float) -> torch.Tensor:
        """The path's input embeddings at α, [T, D]."""
        return self.base + alpha * self.diff

    def record(self, alpha: float, loglik: float, grad: torch.Tensor, offset: int = 0) -> None:
        """Keep node α: S(α) and the token terms (x_t − x'_t)·∂S/∂x_t from the gradient of S there (the
        gradient's row 0 is input position ``offset``)."""
        g = grad[self.start - offset : self.end - offset]
        terms = (self.diff[self.start : self.end] * g).sum(-1)
        self.alphas.append(float(alpha))
        self.loglik.append(float(loglik))
        self.terms.append(terms.detach().double().cpu())

    def grid(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sorted α, S at them, token terms at them [n, L])."""
        order = sorted(range(len(self.alphas)), key=self.alphas.__getitem__)
        a = torch.tensor([self.alphas[i] for i in order], dtype=torch.float64)
        s = torch.tensor([self.loglik[i] for i in order], dtype=torch.float64)
        return a, s, torch.stack([self.terms[i] for i in order])

    def interval_errors(self) -> torch.Tensor:
        """e_j = |trapezoid − (S(α_{j+1}) − S(α_j))| on each interval of the sorted grid."""
        a, s, t = self.grid()
        d = t.sum(-1)  # dS/dα at the nodes
        trap = (a[1:] - a[:-1]) * (d[1:] + d[:-1]) / 2
        return (trap - (s[1:] - s[:-1])).abs()


class _Prefix:
    """Keys and values of a decoder-only input's tokens before the passage, shared by the instance's K paths.

    Those tokens (chat template, instruction, question) are the same in every single-passage input, do not move
    along the path (x − x' is zero there), and a causal reader's later tokens cannot change them: computed once
    an instance, they let every path point run from the passage on. Same values as the whole input up to
    rounding, fewer tokens (SmolLM2's chat template alone is ~70 of a demo prompt's tokens).
    """

    def __init__(self, model: torch.nn.Module, embeds: torch.Tensor):
        with torch.no_grad():
            out = model(inputs_embeds=embeds.unsqueeze(0), use_cache=True)
        layers = list(getattr(out, "cache", None) or [])
        if not layers or any(len(t) > 2 and t[2] is not None for t in layers):  # sliding windows: not replicated
            raise ValueError("the reader returned no plain key/value cache")
        self.kv = [(t[0].detach(), t[1].detach()) for t in layers]
        self.length = int(embeds.shape[0])

    def cache(self, rows: int) -> Any:
        """A fresh cache holding the prefix for a batch of ``rows`` (the forward appends to it)."""
        from transformers import DynamicCache

        return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.kv])


def _shared_prefix(paths: Sequence[_Path]) -> _Prefix | None:
    """The decoder-only paths' common prefix (the input before the earliest passage start), if there is one."""
    if not PREFIX_CACHE or not paths or paths[0].kind == "fid":
        return None
    n = min(p.start for p in paths)
    head = paths[0].layout.input_ids[:n]
    if n < 1 or any(not torch.equal(p.layout.input_ids[:n], head) for p in paths):
        return None
    try:
        return _Prefix(paths[0].reader.model, paths[0].x[:n])
    except (TypeError, ValueError, AttributeError):  # a model without a key/value cache: run whole inputs
        return None


class _Instance:
    """An instance's K paths, evaluated together: the passages' path points share each right-padded batch.

    Pooling the passages' nodes into one batch (not one forward per passage) and, for a decoder-only reader,
    running only the tokens from the passage on (``_Prefix``) is what makes the analysis affordable on a CPU.
    """

    def __init__(self, paths: Sequence[_Path]):
        self.paths = list(paths)
        self.prefix = _shared_prefix(self.paths)
        self.skip = self.prefix.length if self.prefix is not None else 0

    def _batches(self, rows: list[tuple[int, float]]) -> Iterator[list[tuple[int, float]]]:
        """Consecutive runs of (path, α) rows whose padded batch stays within ROW_TOKENS tokens (≥ 1 row)."""
        batch: list[tuple[int, float]] = []
        width = 0
        for row in rows:
            n = self.paths[row[0]].x.shape[0] - self.skip
            if batch:
                apart = not POOL_PASSAGES and (row[0] != batch[-1][0] or len(batch) >= PATH_BATCH)
                if apart or max(width, n) * (len(batch) + 1) > ROW_TOKENS:
                    yield batch
                    batch, width = [], 0
            batch.append(row)
            width = max(width, n)
        if batch:
            yield batch

    def _loglik(self, batch: list[tuple[int, float]], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(S at the batch's path points [B], their input embeddings from the prefix on, right-padded [B, T, D])."""
        x0 = self.paths[0].x
        width = max(self.paths[i].x.shape[0] for i, _ in batch) - self.skip
        embeds = torch.zeros(len(batch), width, x0.shape[1], dtype=x0.dtype, device=x0.device)
        mask = torch.zeros(len(batch), self.skip + width, dtype=torch.long, device=x0.device)
        for b, (i, a) in enumerate(batch):
            n = self.paths[i].x.shape[0]
            embeds[b, : n - self.skip], mask[b, :n] = self.paths[i].point(a)[self.skip :], 1
        embeds.requires_grad_(grad)
        layouts = [self.paths[i].layout for i, _ in batch]
        p0 = self.paths[0]
        return _answer_loglik(p0.reader, p0.kind, embeds, mask, layouts, prefix=self.prefix), embeds

    def evaluate(self, new: dict[int, Sequence[float]]) -> None:
        """Forward+backward at the new nodes of every path; appends S and the token terms to each path."""
        rows = [(i, float(a)) for i in sorted(new) for a in new[i]]
        for batch in self._batches(rows):
            ll, embeds = self._loglik(batch, grad=True)
            (grad,) = torch.autograd.grad(ll.sum(), embeds)
            for b, (i, a) in enumerate(batch):
                self.paths[i].record(a, float(ll[b].detach()), grad[b], offset=self.skip)

    def loglik_at(self, alphas: Sequence[float]) -> list[list[float]]:
        """S(α) of every path at the given α, without gradients (the fixed rules' ends): [path][α]."""
        rows = [(i, float(a)) for i in range(len(self.paths)) for a in alphas]
        values: dict[tuple[int, float], float] = {}
        with torch.no_grad():
            for batch in self._batches(rows):
                ll, _ = self._loglik(batch, grad=False)
                values.update({row: float(v) for row, v in zip(batch, ll)})
        return [[values[(i, float(a))] for a in alphas] for i in range(len(self.paths))]


def _adaptive(inst: _Instance, tolerance: float, max_steps: int) -> list[float]:
    """Refine the paths' grids (pooled over the instance) until Σ e ≤ tolerance · Σ |ΔS|; the paths' bounds Σ_j e_j."""
    paths = inst.paths
    init = [j / INITIAL_INTERVALS for j in range(INITIAL_INTERVALS + 1)]
    inst.evaluate(dict.fromkeys(range(len(paths)), init))
    while True:
        errors = [p.interval_errors() for p in paths]
        bounds = [float(e.sum()) for e in errors]
        grids = [p.grid() for p in paths]
        budget = tolerance * sum(abs(float(s[-1] - s[0])) for _, s, _ in grids) + ABS_TOLERANCE
        total = sum(bounds)
        if total <= budget:
            return bounds
        # candidates: (error, passage, left node) of every interval that may still be bisected, largest first
        cands = []
        for i, (p, e) in enumerate(zip(paths, errors)):
            if len(p.alphas) >= max_steps:
                continue
            a = grids[i][0]
            for j in range(len(e)):
                if float(a[j + 1] - a[j]) > MIN_INTERVAL:
                    cands.append((float(e[j]), i, float(a[j]), float(a[j + 1])))
        cands.sort(key=lambda c: -c[0])
        new: dict[int, list[float]] = {}
        remaining = total
        for err, i, lo, hi in cands:
            if remaining <= budget / 2:
                break
            room = min(PATH_BATCH, max_steps - len(paths[i].alphas))
            if len(new.get(i, [])) >= room:
                continue
            new.setdefault(i, []).append((lo + hi) / 2)
            remaining -= err
        if not new:
            return bounds
        inst.evaluate(new)


def _gains(path: _Path, alphas: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """g_t = Σ_k ω_k terms_k: trapezoid weights of the path's own grid, or the given rule's weights."""
    if weights is None:
        a, _, t = path.grid()
        return (trapezoid_weights(a).unsqueeze(-1) * t).sum(0).float()
    t = torch.stack(path.terms)
    return (weights.to(t.dtype).unsqueeze(-1) * t).sum(0).float()


def _integrate(
    reader: Any,
    question: str,
    passages: Sequence[Passage],
    answer: str,
    steps: int | None,
    baseline: str,
    quadrature: str,
    tolerance: float,
    max_steps: int,
) -> tuple[list[_Path], PerplexityTokenDiagnostics]:
    if steps is not None and steps < 1:
        raise ValueError("steps must be at least 1 (or None: the adaptive rule)")
    if steps is None and max_steps < INITIAL_INTERVALS + 1:
        raise ValueError(f"max_steps must be at least {INITIAL_INTERVALS + 1} (the adaptive rule's first grid)")
    if not tolerance > 0:
        raise ValueError("tolerance must be positive")
    rule = "adaptive-trapezoid" if steps is None else f"{'midpoint' if steps == 1 else quadrature}-{steps}"
    if steps is not None:
        alphas, weights = quadrature_nodes(steps, quadrature)  # validates the quadrature too
    elif baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}")
    diag = PerplexityTokenDiagnostics([], [], [], [], rule=rule, tolerance=tolerance)
    paths = [_Path(reader, question, p, answer, baseline) for p in passages]
    with _frozen_eval(reader.model):
        if steps is None:
            bounds = _adaptive(_Instance(paths), tolerance, max_steps) if paths else []
            for p, b in zip(paths, bounds):
                _, s, _ = p.grid()
                gains = _gains(p)
                diag.loglik.append(float(s[-1]))
                diag.baseline_loglik.append(float(s[0]))
                diag.error_bounds.append(b)
                diag.raw_gains.append(gains)
        else:
            inst = _Instance(paths)
            inst.evaluate(dict.fromkeys(range(len(paths)), alphas.tolist()))
            for p, ends in zip(paths, inst.loglik_at([1.0, 0.0])):
                diag.loglik.append(ends[0])
                diag.baseline_loglik.append(ends[1])
                diag.error_bounds.append(None)
                diag.raw_gains.append(_gains(p, weights=weights))
    for p, g in zip(paths, diag.raw_gains):
        diag.gain_sums.append(float(g.sum()))
        diag.nodes.append(len(p.alphas))
        diag.alphas.append(torch.tensor(p.alphas, dtype=torch.float64))
    return paths, diag


def passage_token_gains(
    reader: Any,
    question: str,
    passage: Passage,
    answer: str,
    steps: int | None = DEFAULT_STEPS,
    baseline: str = "mean",
    quadrature: str = DEFAULT_QUADRATURE,
    tolerance: float = DEFAULT_TOLERANCE,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> tuple[AttentionResult, torch.Tensor, float, float]:
    """(single-passage layout, g_t over the passage's tokens, S_i(x), S_i(x')) for one passage."""
    paths, diag = _integrate(reader, question, [passage], answer, steps, baseline, quadrature, tolerance, max_steps)
    return paths[0].layout, diag.raw_gains[0], diag.loglik[0], diag.baseline_loglik[0]


def perplexity_token_scores(
    reader: Any,
    question: str,
    passages: Sequence[Passage],
    answer: str,
    steps: int | None = DEFAULT_STEPS,
    baseline: str = "mean",
    quadrature: str = DEFAULT_QUADRATURE,
    tolerance: float = DEFAULT_TOLERANCE,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> tuple[AttentionResult, PerplexityTokenDiagnostics]:
    """An AttentionResult whose token scores are the positive per-token gains over the K passages.

    ``steps=None`` (the default) is the adaptive trapezoid rule, refined until the instance's
    completeness-error bound is under ``tolerance`` or a passage has ``max_steps`` nodes;
    ``steps=m`` a fixed m-point ``quadrature`` (module docstring). ``input_ids`` is the
    concatenation of the K passages' own tokens (as the reader tokenises them in its
    single-passage inputs), ``passage_spans`` their spans, ``token_scores`` the positive parts of
    the gains and ``passage_scores`` their sums (so Σ_{t∈n_i} w_t = S_i of this result, as for
    every AttentionResult).
    """
    paths, diag = _integrate(reader, question, passages, answer, steps, baseline, quadrature, tolerance, max_steps)
    ids, scores, spans = [], [], []
    answer_ids = None
    pos = 0
    for p, gains in zip(paths, diag.raw_gains):
        s, e = p.layout.passage_spans[0]
        ids.append(p.layout.input_ids[s:e].cpu())
        scores.append(gains.clamp(min=0.0))
        spans.append((pos, pos + (e - s)))
        pos += e - s
        answer_ids = p.layout.answer_ids
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

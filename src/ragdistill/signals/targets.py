"""Target distributions: p_gold from the reader's passage scores, p_RETR from the retriever's.

METHOD.md §3: p_gold(n_i) = softmax_i(S_i / τ_gold) (ATLAS convention), or, as an option,
S_i / Σ_j S_j; p_RETR(n_i | Q) = softmax_i(s_i / θ). Scores are [..., K] tensors; the
last dimension runs over the K passages of one question.

τ_gold and ATLAS's ``temperature_gold`` (the convention of this project). ATLAS's attention
targets (``gold_score_mode`` "evalnormssum", src/fid.py ``aggregate_value``) store, per decoder
layer, mean_h α·‖v‖ (``.mean(dim=1)`` over heads), sum it over layers, label positions and the
passage row's tokens, and divide by 256 · n_layers · n_labels before softmax(· / temperature_gold).
Our S_i (sum aggregation, METHOD.md §3) is mean_l mean_h mean_a Σ_{t∈n_i} α·‖v‖, the same quantity
without the constant 1/256, so

    softmax(S_ATLAS / temperature_gold) = softmax(S / τ_gold)  with  τ_gold = 256 · temperature_gold.

τ_gold always divides *our* S as it is; `tau_from_atlas` converts an ATLAS temperature (the paper
configs use it: ATLAS's 0.01 is τ_gold = 2.56). Not covered by the factor: ATLAS's labels include
the EOS position and its row sum includes the ``question:`` prefix and ``</s>``, while our readers
average the positions predicting A_1..A_|A| and sum passage tokens only (readers/fid.py). ATLAS's
perplexity target ("ppmean", −mean NLL) is not rescaled: there τ_gold = temperature_gold.
"""

from __future__ import annotations

import math

import torch

from ragdistill.errors import ConfigError

MODES = ("softmax", "normalize")


#: ATLAS divides its summed cross-attention "norms" scores by this constant (× layers × labels).
ATLAS_NORMS_SCALE = 256.0


def tau_from_atlas(temperature_gold: float, signal: str = "attention") -> float:
    """τ_gold that gives ATLAS's target for ATLAS's `temperature_gold`: 256 × it for attention scores.

    Attention: our S is ATLAS's "norms" sum without its 1/256 (module docstring). Perplexity:
    ATLAS's "ppmean" score is our S itself, so the temperature carries over unchanged.
    """
    t = check_temperature(temperature_gold, "temperature_gold")
    if signal == "perplexity":
        return t
    if signal != "attention":
        raise ConfigError("signal", f"must be 'attention' or 'perplexity', got {signal!r}")
    return ATLAS_NORMS_SCALE * t


def check_temperature(value: float, key: str) -> float:
    """A positive, finite temperature, or ConfigError naming `key`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(key, f"must be a positive finite number, got {value!r}")
    return v


#: temperatures below this act as this one. The softmax is already one-hot there for any score gap a
#: retriever or reader produces, and 1/T must stay far inside float32 so gradients, (q - p)/T, stay finite.
MIN_TEMPERATURE = 1e-6


def scaled_logits(scores: torch.Tensor, temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(s - max s) / T in float32 (float64 stays), clamped so that even tiny temperatures stay finite.

    Shifting by the max first makes the division safe (all values ≤ 0); the clamp keeps
    log-probabilities finite (a floor of -1e30 instead of -inf), so 0·log q never turns into NaN.
    T is floored at MIN_TEMPERATURE (higher for float16 scores) so the gradient stays finite in the
    scores' dtype. Masked entries (mask False) are -inf.
    """
    floor = MIN_TEMPERATURE
    if scores.is_floating_point():  # float16 scores: the gradient 1/T must also fit float16 (max 65504)
        floor = max(floor, 4.0 / torch.finfo(scores.dtype).max)
    temperature = max(float(temperature), floor)
    s = scores if scores.dtype == torch.float64 else scores.float()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    top = s.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    z = ((s - top) / temperature).clamp(min=-1e30)
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    return z


def target(
    S: torch.Tensor, tau_gold: float = 1.0, mode: str = "softmax", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """p_gold over the last dimension (detached): softmax(S/τ_gold), or S/ΣS with mode='normalize'.

    'normalize' needs non-negative scores (attention scores are); a row summing to zero becomes
    uniform. τ_gold is not used by 'normalize'. `mask` [..., K] leaves padded passages out (p = 0).
    """
    if mode not in MODES:
        raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    tau = check_temperature(tau_gold, "tau_gold")
    S = torch.as_tensor(S).detach()
    if S.dim() == 0:
        raise ValueError("S must have a passage dimension, got a scalar")
    if mask is not None:
        mask = mask.to(device=S.device, dtype=torch.bool)
    if mode == "softmax":
        return torch.softmax(scaled_logits(S, tau, mask), dim=-1)
    s = S if S.dtype == torch.float64 else S.float()
    if bool((s < 0).any()):
        raise ConfigError(
            "mode",
            "'normalize' needs non-negative scores (S/ΣS); use mode='softmax' for signals "
            "that can be negative, such as perplexity",
        )
    if mask is not None:
        s = s.masked_fill(~mask, 0.0)
    total = s.sum(dim=-1, keepdim=True)
    n = mask.sum(dim=-1, keepdim=True).to(s.dtype) if mask is not None else torch.full_like(total, s.shape[-1])
    uniform = (mask.to(s.dtype) if mask is not None else torch.ones_like(s)) / n.clamp(min=1)
    return torch.where(total > 0, s / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def p_retr(scores: torch.Tensor, theta: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """p_RETR = softmax(s/θ) over the last dimension (differentiable)."""
    theta = check_temperature(theta, "theta")
    return torch.softmax(scaled_logits(scores, theta, mask), dim=-1)

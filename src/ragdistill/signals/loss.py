"""The distillation loss: KL(p_gold ‖ p_RETR), reduction 'batchmean', p_gold detached (METHOD.md §3)."""

from __future__ import annotations

import torch

from ragdistill.signals.targets import check_temperature, scaled_logits, target


def distillation_loss(
    retriever_scores: torch.Tensor,
    S: torch.Tensor,
    theta: float,
    tau_gold: float = 1.0,
    mode: str = "softmax",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(p_gold ‖ p_RETR) summed over passages, averaged over questions; gradients reach the retriever only.

    retriever_scores [B, K] (or [K]): s(n_i, Q); S [B, K]: the reader's passage scores.
    The log-probabilities come from a shifted, clamped log-softmax, so the loss and its
    gradient stay finite for equal or all-zero scores, K = 1 and tiny temperatures.
    `mask` [B, K] (True = real passage) drops padded slots from both distributions.
    """
    theta = check_temperature(theta, "theta")
    s = torch.as_tensor(retriever_scores)
    S = torch.as_tensor(S, device=s.device)
    if s.dim() == 1:
        s, S = s[None], S[None]
        mask = mask[None] if mask is not None else None
    if s.shape != S.shape or s.dim() != 2:
        raise ValueError(f"retriever scores {tuple(s.shape)} and reader scores {tuple(S.shape)} must both be [B, K]")
    if mask is not None:
        mask = mask.to(device=s.device, dtype=torch.bool)
    p_gold = target(S, tau_gold, mode, mask).to(s.device)
    log_q = torch.log_softmax(scaled_logits(s, theta, mask), dim=-1)
    if mask is not None:
        log_q = log_q.masked_fill(~mask, 0.0)  # p_gold is 0 there
    log_p = torch.log(p_gold.clamp(min=torch.finfo(p_gold.dtype).tiny))
    kl = torch.where(
        p_gold == 0, torch.zeros_like(log_q), p_gold * (log_p - log_q)
    )  # a NaN target stays NaN: the loop skips the step
    return kl.sum() / s.shape[0]

"""What every reader returns when asked where its attention went."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionResult:
    """Passage scores S_i of DESIGN §3 plus everything needed to check or analyse them.

    Decoder-only reader: `input_ids` is the scored sequence (prompt + answer tokens),
    `token_scores[t]` is w_t for every prompt position t (0 for answer positions),
    `passage_spans[i] = (start, end)` are the half-open positions of passage i's own
    tokens (not the "Document i:" template), `answer_span` the positions of A's tokens.

    FiD reader: `input_ids` is the concatenation of the K encoder inputs (each
    "question: Q title: T context: C", padded rows removed), `token_scores` is w_t
    over those encoder positions, `passage_spans[i]` the positions of passage i's
    title+context tokens inside that concatenation, `answer_span = (0, len(answer_ids))`.
    """

    passage_scores: torch.Tensor          # [K] S_i, detached, float32
    token_scores: torch.Tensor            # [T] w_t, detached, float32
    input_ids: torch.Tensor               # [T] token ids the scores refer to
    passage_spans: list[tuple[int, int]]  # K half-open spans into input_ids
    answer_span: tuple[int, int]          # decoder: span into input_ids; FiD: (0, |A|)
    answer_ids: torch.Tensor              # [|A|] the answer's token ids
    question_span: tuple[int, int] | None = None  # where the question's tokens are (first one for FiD)

    def passage_token_mask(self) -> torch.Tensor:
        """Boolean [T] mask of positions that belong to some passage."""
        mask = torch.zeros(self.input_ids.shape[0], dtype=torch.bool)
        for start, end in self.passage_spans:
            mask[start:end] = True
        return mask

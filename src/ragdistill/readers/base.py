"""What every reader returns when asked where its attention went."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ragdistill.errors import ConfigError

# What a passage score S_i sums over (the readers' `span` option); see AttentionResult.
SPANS = ("block", "content")


def check_span(span: str) -> str:
    """ConfigError unless `span` is 'block' (the training signal) or 'content' (the analysis)."""
    if span not in SPANS:
        raise ConfigError("span", f"must be one of {', '.join(SPANS)}, got {span!r}")
    return span


@dataclass
class AttentionResult:
    """Passage scores S_i of METHOD.md §3 plus everything needed to check or analyse them.

    Decoder-only reader: `input_ids` is the scored sequence (prompt + answer tokens),
    `token_scores[t]` is w_t for every prompt position t (0 for answer positions),
    `passage_spans[i] = (start, end)` are the half-open positions of passage i's own
    tokens (not the "Document i:" template), `answer_span` the positions of A's tokens.

    FiD reader: `input_ids` is the concatenation of the K encoder inputs (each
    "question: Q title: T context: C" with the tokenizer's special tokens, padding
    removed), `token_scores` is w_t over those encoder positions, and
    `answer_span = (0, len(answer_ids))`. What belongs to passage i depends on the
    readers' `span` option (METHOD §3.3):

    * ``span="block"`` (default; the training signal, as ATLAS sums): passage i's whole
      encoder input, i.e. `passage_spans[i]` is its row (question prefix, the "title:" /
      "context:" labels, title, text and special tokens);
    * ``span="content"`` (the attention-quality analysis): the title's and the text's own
      tokens, without the labels. They are not contiguous (the "context:" label sits between
      them), so `passage_token_spans[i]` lists them and `passage_spans[i]` is their hull.

    For every reader and mode, passage i's tokens are the positions of
    `passage_pieces(i)` and `passage_scores[i]` aggregates (sum or mean) w_t over them;
    `passage_token_mask()` marks them. `passage_token_spans` is None when each passage's
    tokens are exactly `passage_spans[i]` (the decoder reader, FiD's "block").
    """

    passage_scores: torch.Tensor  # [K] S_i, detached, float32
    token_scores: torch.Tensor  # [T] w_t, detached, float32
    input_ids: torch.Tensor  # [T] token ids the scores refer to
    passage_spans: list[tuple[int, int]]  # K half-open spans into input_ids
    answer_span: tuple[int, int]  # decoder: span into input_ids; FiD: (0, |A|)
    answer_ids: torch.Tensor  # [|A|] the answer's token ids
    question_span: tuple[int, int] | None = None  # where the question's tokens are (first one for FiD)
    passage_token_spans: list[list[tuple[int, int]]] | None = (
        None  # per passage, the spans its tokens are (None: passage_spans)
    )

    def passage_pieces(self, i: int) -> list[tuple[int, int]]:
        """The half-open spans whose union is passage i's tokens (sorted, inside `passage_spans[i]`)."""
        if self.passage_token_spans is None:
            return [self.passage_spans[i]]
        return list(self.passage_token_spans[i])

    def passage_token_mask(self) -> torch.Tensor:
        """Boolean [T] mask of positions that belong to some passage."""
        mask = torch.zeros(self.input_ids.shape[0], dtype=torch.bool)
        for i in range(len(self.passage_spans)):
            for start, end in self.passage_pieces(i):
                mask[start:end] = True
        return mask

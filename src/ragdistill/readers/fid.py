"""Fusion-in-Decoder reader: any Hugging Face encoder-decoder reading K passages at once.

Each passage is encoded together with the question as ``question: Q title: T context: C``
(``title:`` is left out when a passage has no title), every encoder input is truncated to
`max_passage_tokens` (the passage is cut, the question never), the K encoder outputs are
concatenated along the sequence ([B, K·L, D], with the attention mask concatenated likewise)
and the decoder cross-attends to all of them (Izacard & Grave, 2021).

Architectures: T5 family first (`T5ForConditionalGeneration`: T5, T5 v1.1, Flan-T5, mT5, ...),
any `AutoModelForSeq2SeqLM` (BART, mBART, Pegasus, ...), and `EncoderDecoderModel`.
Offline default ``minilm-bert2bert``: a BERT-to-BERT `EncoderDecoderModel` warm-started from
the bundled MiniLM-L6 (both encoder and decoder; the decoder's cross-attention and LM-head
bias are freshly initialised with a fixed seed). It runs everywhere but must be fine-tuned
before its answers or its attention mean anything.

Attention scores (METHOD.md §3, ATLAS's "norms"): the decoder is teacher-forced with the gold
answer; the decoder positions are those that *predict* answer tokens, i.e. decoder inputs
``shift_right(A) = [start, A_1 .. A_{|A|-1}]`` (the position that predicts the final EOS is
not one of them, unlike ATLAS which averages over all label positions including EOS). Eq. 1
(`ragdistill.readers.eq1`) runs over the decoder cross-attention layers, from those rows to the
encoder positions. What S_i sums is the `span` option (METHOD §3.3): ``"block"`` (default, the
training signal) sums over passage i's whole encoder input as ATLAS does (``question: Q title: T
context: C`` with the special tokens; padding excluded), ``"content"`` (the attention-quality
analysis) over the title's and the text's own tokens only, without the ``title:``/``context:``
labels. See `ragdistill.readers.fid_attention`
for how α is read without eager attention. Weights load in `ragdistill.models` (`load_seq2seq_lm`,
`build_minilm_bert2bert`); this class wraps what they return.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.models import BERT2BERT, base_model_id, build_minilm_bert2bert, configure_bert2bert, load_seq2seq_lm
from ragdistill.readers.base import AttentionResult, check_span
from ragdistill.readers.card import write_model_card
from ragdistill.readers.eq1 import aggregate_passages, check_aggregation
from ragdistill.readers.fid_attention import capture_cross_attention, cross_attention_modules
from ragdistill.utils.io import atomic_dir
from ragdistill.utils.seed import default_device

BUNDLED_FID_READERS = {
    BERT2BERT: "BERT2BERT EncoderDecoderModel warm-started from the bundled MiniLM-L6 (needs fine-tuning)"
}
READER_FILE = "ragdistill_reader.json"
_OPTION_KEYS = ("max_passage_tokens", "max_answer_tokens", "max_new_tokens", "batch_size")


def is_fid_name(name: str) -> bool:
    """True for the bundled FiD names (so a reader factory can pick this class without loading anything)."""
    return isinstance(name, str) and name.strip().lower() in BUNDLED_FID_READERS


@dataclass
class _Row:
    """One encoder input: special prefix + question + passage + special suffix."""

    ids: list[int]
    question_span: tuple[int, int]  # the question's own tokens (not the "question:" label)
    passage_span: tuple[int, int]  # "title: T context: C" tokens; empty for a question-only row
    has_passage: bool = True
    content_spans: list[tuple[int, int]] | None = None  # title's and text's own tokens (no labels), kept ones only


@dataclass
class _EncoderBatch:
    input_ids: torch.Tensor  # [B*K, L]
    attention_mask: torch.Tensor  # [B*K, L]
    cross_mask: torch.Tensor  # [B, K*L]: real rows' real tokens
    rows: list[list[_Row]]  # per question, its real rows
    K: int
    L: int


def _as_passage(p) -> Passage:
    if isinstance(p, Passage):
        return p
    if isinstance(p, str):
        return Passage(id="", title="", text=p)
    if isinstance(p, dict) and "text" in p:
        return Passage(id=str(p.get("id", "")), title=str(p.get("title", "") or ""), text=str(p["text"]))
    raise InputError(f"a passage must be a Passage, a string or a dict with 'text', not {type(p).__name__}")


def _first_id(value) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


class FiDReader:
    """Fusion-in-Decoder reader over a Hugging Face encoder-decoder (see the module docstring)."""

    kind = "fid"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str | None = None,
        max_passage_tokens: int = 200,
        max_answer_tokens: int = 64,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        question_prefix: str = "question:",
        title_prefix: str = "title:",
        context_prefix: str = "context:",
        base_model: str | None = None,
    ):
        config = getattr(model, "config", None)
        if not getattr(config, "is_encoder_decoder", False):
            raise ModelError(
                f"{name or type(model).__name__} is not an encoder-decoder model ({type(model).__name__}): "
                "the FiD reader needs one (T5, BART, EncoderDecoderModel, ...); use the decoder-only reader "
                "(get_reader(name, kind='decoder')) for causal language models"
            )
        for key, value in (
            ("max_passage_tokens", max_passage_tokens),
            ("max_answer_tokens", max_answer_tokens),
            ("max_new_tokens", max_new_tokens),
            ("batch_size", batch_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(key, f"must be a positive integer, got {value!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(config, "_name_or_path", None) or type(model).__name__
        self.base_model = str(base_model or base_model_id(self.name))  # what the model card names
        self.max_passage_tokens = max_passage_tokens
        self.max_answer_tokens = max_answer_tokens
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.question_prefix = question_prefix
        self.title_prefix = title_prefix
        self.context_prefix = context_prefix
        self._check_lengths()
        self.pad_id, self.eos_id, self.start_id = self._special_ids()
        self._prefix_ids, self._suffix_ids = self._special_wrapping()
        self._fast = bool(getattr(tokenizer, "is_fast", False))
        self.n_cross_layers = len(cross_attention_modules(model))
        self.num_score_layers: int | None = (
            self.n_cross_layers
        )  # the attention signal averages over cross-attention layers

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str = BERT2BERT,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        attn_implementation: str | None = "sdpa",
        trust_remote_code: bool = False,
        **options,
    ) -> FiDReader:
        """Load a reader: a bundled name (``minilm-bert2bert``), a Hugging Face id, or a directory.

        A directory written by `save_pretrained` also restores the reader options it was saved
        with; keyword `options` (max_passage_tokens, max_answer_tokens, max_new_tokens,
        batch_size, question/title/context prefixes) override them. `max_prompt_tokens` (the
        decoder-only reader's option, passed by the training loop for every reader) is accepted
        as the same per-encoder-input budget as `max_passage_tokens`.
        """
        if isinstance(dtype, str):
            resolved = getattr(torch, dtype.replace("torch.", ""), None)
            if not isinstance(resolved, torch.dtype):
                raise ConfigError("dtype", f"unknown torch dtype {dtype!r} (float32, bfloat16, float16)")
            dtype = resolved
        if options.get("max_prompt_tokens") is not None:  # the decoder reader's budget name: here, per encoder input
            budget = options.pop("max_prompt_tokens")
            if options.get("max_passage_tokens") not in (None, budget):
                raise ConfigError(
                    "max_prompt_tokens",
                    f"conflicts with max_passage_tokens={options['max_passage_tokens']}: pass one of them",
                )
            options["max_passage_tokens"] = budget
        options.pop("max_prompt_tokens", None)
        base_model = None
        if is_fid_name(name_or_dir):
            model, tok = build_minilm_bert2bert(dtype=dtype, attn_implementation=attn_implementation)
            name = BERT2BERT
        else:
            model, tok = load_seq2seq_lm(name_or_dir, dtype, attn_implementation, trust_remote_code)
            name = name_or_dir
            saved = Path(name_or_dir).expanduser() / READER_FILE
            if saved.is_file():
                try:
                    stored = json.loads(saved.read_text())
                except (OSError, ValueError) as exc:
                    raise InputError(f"unreadable reader settings ({exc})", saved) from exc
                options = {**{k: v for k, v in stored.get("options", {}).items()}, **options}
                base_model = stored.get("base_model") or stored.get("source")
        unknown = set(options) - set(_OPTION_KEYS) - {"question_prefix", "title_prefix", "context_prefix"}
        if unknown:
            raise ConfigError(
                sorted(unknown)[0],
                f"not an option of the FiD reader (options: {', '.join(_OPTION_KEYS)}, question_prefix, title_prefix, context_prefix)",
            )
        model.to(default_device(str(device) if device is not None else None))
        model.eval()
        return cls(model, tok, name=name, base_model=base_model, **options)

    def generation_config(self):
        """The model's generation config set to what `generate` does: greedy, its start/stop/pad ids, answer length."""
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample, gen.num_beams = False, 1
        gen.temperature = gen.top_p = gen.top_k = None
        gen.max_new_tokens = self.max_new_tokens
        gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id = self.start_id, self.eos_id, self.pad_id
        return gen

    def save_pretrained(self, out_dir: str | Path, *, card: dict | None = None) -> None:
        """Write model, tokenizer, generation config, reader options and model card to `out_dir` atomically.

        The directory is a plain Hugging Face model (`AutoModelForSeq2SeqLM` / `AutoTokenizer` load
        it, an `EncoderDecoderModel` included); `from_pretrained` reloads it as a reader. `card`:
        keyword arguments of `readers.card.write_model_card` (setting, data, steps, metrics,
        indicators, extra); the base model is the reader's own.
        """
        with atomic_dir(out_dir) as tmp:
            self.model.save_pretrained(tmp)
            self.generation_config().save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            options = {
                k: getattr(self, k) for k in (*_OPTION_KEYS, "question_prefix", "title_prefix", "context_prefix")
            }
            meta = {"kind": self.kind, "source": str(self.name), "base_model": self.base_model, "options": options}
            (tmp / READER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            card = dict(card or {})
            write_model_card(
                tmp,
                base_model=card.pop("base_model", self.base_model),
                setting=card.pop("setting", None),
                data=card.pop("data", None),
                steps=card.pop("steps", None),
                **card,
            )

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def input_embedding_matrix(self) -> torch.Tensor:
        """The encoder's (for T5: the shared) input embedding rows, [V, D], detached."""
        return self.model.get_input_embeddings().weight.detach()

    # ------------------------------------------------------------------ public API

    def generate(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> list[str]:
        """Greedy answers (at most `max_new_tokens`), batched over questions in chunks of `batch_size`."""
        from transformers.modeling_outputs import BaseModelOutput

        questions, passages = self._check_batch(questions, passages)
        answers: list[str] = []
        with self._eval(), torch.inference_mode():
            for lo in range(0, len(questions), self.batch_size):
                qs, ps = questions[lo : lo + self.batch_size], passages[lo : lo + self.batch_size]
                batch = self._encoder_batch(qs, ps)
                hidden = self._encode(batch)
                out = self.model.generate(
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                    attention_mask=batch.cross_mask,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    decoder_start_token_id=self.start_id,
                    eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                )
                texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
                answers.extend(" ".join(t.split()) for t in texts)
        return answers

    def attention_scores(
        self,
        question: str,
        passages: Sequence[Passage],
        answer: str,
        layers: Sequence[int] | None = None,
        value_norm: bool = True,
        aggregation: str = "sum",
        span: str = "block",
    ) -> AttentionResult:
        """Cross-attention passage scores S_1..S_K of METHOD §3.3 for one question (no grad).

        span: "block" (the training signal: passage i's whole encoder input, as ATLAS) or
        "content" (the analysis: its title and text tokens, without labels); see `AttentionResult`.
        """
        with self._eval(), torch.inference_mode():
            _, results = self._forward(
                [question],
                [list(passages)],
                [answer],
                attention=dict(layers=layers, value_norm=value_norm, aggregation=aggregation, span=span),
            )
        return results[0]

    def perplexity_scores(self, question: str, passages: Sequence[Passage], answer: str) -> torch.Tensor:
        """S_i = −mean NLL of the answer tokens given the question and passage i alone, [K] float32."""
        passages = list(passages)
        if not passages:
            return torch.zeros(0)
        out = []
        with self._eval(), torch.inference_mode():
            for lo in range(0, len(passages), self.batch_size):
                chunk = passages[lo : lo + self.batch_size]
                logits, labels, n_answer = self._forward(
                    [question] * len(chunk), [[p] for p in chunk], [answer] * len(chunk)
                )[0]
                nll = self._token_nll(logits, labels)  # [B, Q]
                mask = torch.arange(nll.shape[1], device=nll.device)[None, :] < n_answer[:, None]
                out.append(-(nll * mask).sum(1) / mask.sum(1))
        return torch.cat(out).float().cpu()

    def lm_loss(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], answers: Sequence[str]
    ) -> torch.Tensor:
        """Differentiable token-mean cross-entropy of the answers (+ EOS) given the question and its passages."""
        (logits, labels, _), _ = self._forward(questions, passages, answers)
        return self._mean_loss(logits, labels)

    def lm_loss_and_attention(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        answers: Sequence[str],
        layers: Sequence[int] | None = None,
        value_norm: bool = True,
        aggregation: str = "sum",
        span: str = "block",
    ) -> tuple[torch.Tensor, list[AttentionResult]]:
        """One forward pass: the differentiable LM loss and the (detached) attention results per question.

        Runs in the model's current mode (training: dropout on); the scores use the attention
        probabilities before attention dropout and carry no gradient (the distillation target).
        `span` as in `attention_scores` (default "block", the training signal).
        """
        (logits, labels, _), results = self._forward(
            questions,
            passages,
            answers,
            attention=dict(layers=layers, value_norm=value_norm, aggregation=aggregation, span=span),
        )
        return self._mean_loss(logits, labels), results

    # ------------------------------------------------------------------ internals: setup

    def _check_lengths(self) -> None:
        enc_cfg, dec_cfg = self._sub_configs()
        for key, cfg, wanted in (
            ("max_passage_tokens", enc_cfg, self.max_passage_tokens),
            ("max_answer_tokens", dec_cfg, self.max_answer_tokens + 1),
        ):
            limit = getattr(cfg, "max_position_embeddings", None)
            if limit and wanted > limit:
                raise ConfigError(key, f"{wanted} tokens exceed the model's {limit} positions")

    def _sub_configs(self):
        cfg = self.model.config
        return getattr(cfg, "encoder", cfg), getattr(cfg, "decoder", cfg)

    def _special_ids(self) -> tuple[int, int, int]:
        tok, cfg = self.tokenizer, self.model.config
        gen = getattr(self.model, "generation_config", None)
        pad = _first_id(tok.pad_token_id if tok.pad_token_id is not None else getattr(cfg, "pad_token_id", None))
        eos = _first_id(getattr(gen, "eos_token_id", None) if gen is not None else None)
        if eos is None:
            eos = _first_id(getattr(cfg, "eos_token_id", None))
        if eos is None:
            eos = _first_id(tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id)
        start = _first_id(getattr(gen, "decoder_start_token_id", None) if gen is not None else None)
        if start is None:
            start = _first_id(getattr(cfg, "decoder_start_token_id", None))
        missing = [n for n, v in (("pad", pad), ("eos", eos), ("decoder_start", start)) if v is None]
        if missing:
            raise ModelError(
                f"{self.name}: the tokenizer/model define no {', '.join(missing)} token id. Set them before wrapping, e.g. "
                "tokenizer.pad_token = ..., model.config.eos_token_id = ..., model.config.decoder_start_token_id = "
                "(the id the decoder starts from: <pad> for T5, [CLS] for BERT2BERT)"
            )
        return pad, eos, start

    def _special_wrapping(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a single sequence (e.g. [CLS] .. [SEP], .. </s>)."""
        probe = "question"
        bare = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(bare) + 1):
            if full[i : i + len(bare)] == bare:
                return list(full[:i]), list(full[i + len(bare) :])
        return [], []

    # ------------------------------------------------------------------ internals: inputs

    def _check_batch(self, questions, passages):
        if isinstance(questions, str):
            raise InputError("questions must be a list of strings (one per question), not a single string")
        questions = list(questions)
        passages = [[_as_passage(p) for p in ps] for ps in passages]
        if len(questions) != len(passages):
            raise InputError(f"{len(questions)} questions but {len(passages)} passage lists")
        for q in questions:
            if not isinstance(q, str) or not q.strip():
                raise InputError("empty question")
        return questions, passages

    def _passage_text(self, p: Passage) -> str:
        title = f"{self.title_prefix} {p.title} " if p.title else ""
        return f"{title}{self.context_prefix} {p.text}"

    def _content_ranges(self, p: Passage) -> list[tuple[int, int]]:
        """Character ranges of the title's and the text's own characters inside `_passage_text(p)`."""
        ranges, pos = [], 0
        if p.title:
            pos = len(self.title_prefix) + 1
            ranges.append((pos, pos + len(p.title)))
            pos += len(p.title) + 1
        pos += len(self.context_prefix) + 1
        ranges.append((pos, pos + len(p.text)))
        return [(a, b) for a, b in ranges if b > a]

    def _encode_row(self, question: str, passage: Passage | None) -> _Row:
        tok = self.tokenizer
        q_text = f"{self.question_prefix} {question}"
        label_end = len(self.question_prefix)
        if passage is None:
            text = q_text
        else:
            text = f"{q_text} {self._passage_text(passage)}"
        content: list[tuple[int, int]] = []  # token ranges of title / text inside p_ids
        if self._fast:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
            n_q = sum(1 for s, _ in offsets if s < len(q_text))
            n_label = sum(1 for _, e in offsets[:n_q] if e <= label_end)
            q_ids, p_ids = ids[:n_q], ids[n_q:]
            if passage is not None:
                base = len(q_text) + 1
                for a, b in self._content_ranges(passage):  # a token is content if it covers one of its characters
                    inside = [i for i, (s, e) in enumerate(offsets[n_q:]) if s < base + b and e > base + a]
                    if inside:
                        content.append((inside[0], inside[-1] + 1))
        else:
            label_ids = tok(self.question_prefix, add_special_tokens=False)["input_ids"]
            q_ids = label_ids + tok(question, add_special_tokens=False)["input_ids"]
            n_label = len(label_ids)
            p_ids = (
                tok(self._passage_text(passage), add_special_tokens=False)["input_ids"] if passage is not None else []
            )
            if passage is not None:
                full = self._passage_text(passage)

                def n_tokens(upto: int) -> int:  # tokens before character `upto` (a word boundary)
                    head = full[:upto].rstrip()
                    return len(tok(head, add_special_tokens=False)["input_ids"]) if head else 0

                for a, b in self._content_ranges(passage):
                    content.append((n_tokens(a), len(p_ids) if b == len(full) else n_tokens(b)))
        budget = self.max_passage_tokens - len(self._prefix_ids) - len(self._suffix_ids) - len(q_ids)
        p_ids = p_ids[: max(budget, 0)]
        start = len(self._prefix_ids)
        ids = self._prefix_ids + q_ids + p_ids + self._suffix_ids
        q_end = start + len(q_ids)
        kept = [(q_end + a, q_end + min(b, len(p_ids))) for a, b in content if a < len(p_ids) and b > a]
        return _Row(
            ids=ids,
            question_span=(start + n_label, q_end),
            passage_span=(q_end, q_end + len(p_ids)),
            has_passage=passage is not None,
            content_spans=kept,
        )

    def _encoder_batch(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> _EncoderBatch:
        rows = [
            [self._encode_row(q, p) for p in ps] or [self._encode_row(q, None)] for q, ps in zip(questions, passages)
        ]
        K = max(len(r) for r in rows)
        fillers = [self._encode_row(q, None) if len(r) < K else None for q, r in zip(questions, rows)]
        L = max(len(row.ids) for rs in rows for row in rs)
        B = len(rows)
        input_ids = torch.full((B * K, L), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B * K, L), dtype=torch.long)
        cross = torch.zeros((B, K * L), dtype=torch.long)
        for b, rs in enumerate(rows):
            for k in range(K):
                row = rs[k] if k < len(rs) else fillers[b]
                n = len(row.ids)
                input_ids[b * K + k, :n] = torch.tensor(row.ids)
                attn[b * K + k, :n] = 1  # filler rows are encoded normally ...
                if k < len(rs):
                    cross[b, k * L : k * L + n] = 1  # ... but hidden from the decoder
        dev = self.device
        return _EncoderBatch(input_ids.to(dev), attn.to(dev), cross.to(dev), rows, K, L)

    def _encode(self, batch: _EncoderBatch) -> torch.Tensor:
        encoder = self.model.get_encoder()
        hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        B = batch.cross_mask.shape[0]
        return hidden.reshape(B, batch.K * batch.L, hidden.shape[-1])

    def _answer_ids(self, answer: str) -> list[int]:
        if not isinstance(answer, str) or not answer.strip():
            raise InputError("empty answer: attention, perplexity and LM loss need a non-empty answer string")
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"][: self.max_answer_tokens]
        if not ids:
            raise InputError(f"the answer {answer!r} has no tokens for this tokenizer")
        return list(ids)

    # ------------------------------------------------------------------ internals: forward

    def _forward(self, questions, passages, answers, attention: dict | None = None):
        """Teacher-forced forward over a batch; returns ((logits, labels, |A| per row), results or None)."""
        from transformers.modeling_outputs import BaseModelOutput

        questions, passages = self._check_batch(questions, passages)
        answers = list(answers)
        if len(answers) != len(questions):
            raise InputError(f"{len(questions)} questions but {len(answers)} answers")
        answer_ids = [self._answer_ids(a) for a in answers]
        batch = self._encoder_batch(questions, passages)
        hidden = self._encode(batch)
        B, Q = len(answer_ids), max(len(a) for a in answer_ids) + 1
        dec_in = torch.full((B, Q), self.pad_id, dtype=torch.long)
        dec_mask = torch.zeros((B, Q), dtype=torch.long)
        labels = torch.full((B, Q), -100, dtype=torch.long)
        answer_rows = torch.zeros((B, Q), dtype=torch.bool)
        for b, a in enumerate(answer_ids):
            n = len(a)
            dec_in[b, : n + 1] = torch.tensor([self.start_id] + a)
            dec_mask[b, : n + 1] = 1
            labels[b, : n + 1] = torch.tensor(a + [self.eos_id])
            answer_rows[b, :n] = True  # positions predicting A_1..A_|A| (not the final EOS)
        dev = self.device
        dec_in, dec_mask, labels = dec_in.to(dev), dec_mask.to(dev), labels.to(dev)
        n_answer = torch.tensor([len(a) for a in answer_ids], device=dev)
        kwargs = dict(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=batch.cross_mask,
            decoder_input_ids=dec_in,
            decoder_attention_mask=dec_mask,
            use_cache=False,
        )
        if attention is None:
            logits = self.model(**kwargs).logits
            return (logits, labels, n_answer), None
        aggregation = attention.get("aggregation", "sum")
        check_aggregation(aggregation)
        span = check_span(attention.get("span", "block"))
        rows = torch.arange(Q, device=dev).expand(B, Q)
        with capture_cross_attention(
            self.model,
            rows,
            answer_rows.to(dev),
            layers=attention.get("layers"),
            value_norm=attention.get("value_norm", True),
        ) as cap:
            logits = self.model(**kwargs).logits
        w = cap.token_scores().detach().float()  # [B, K*L]
        results = [self._result(w[b], batch, b, answer_ids[b], aggregation, span) for b in range(B)]
        return (logits, labels, n_answer), results

    def _result(
        self,
        w: torch.Tensor,
        batch: _EncoderBatch,
        b: int,
        answer_ids: list[int],
        aggregation: str,
        span: str = "block",
    ) -> AttentionResult:
        positions, ids, spans, pieces = [], [], [], []
        question_span = None
        offset = 0
        for k, row in enumerate(batch.rows[b]):
            n = len(row.ids)
            positions.append(torch.arange(k * batch.L, k * batch.L + n))
            ids.extend(row.ids)
            if span == "block":  # the whole encoder input of passage i (no padding: rows are cut to their length)
                spans.append((offset, offset + n))
            else:  # its title and text tokens, without the labels
                own = [(offset + s, offset + e) for s, e in row.content_spans or []]
                end = offset + row.passage_span[1]
                spans.append((own[0][0], own[-1][1]) if own else (end, end))
                pieces.append(own)
            if question_span is None:
                question_span = (offset + row.question_span[0], offset + row.question_span[1])
            offset += n
        token_scores = w.cpu()[torch.cat(positions)]
        if not batch.rows[b][0].has_passage:  # no passages: the question-only row holds no passage
            spans, pieces = [], []
        if span == "block":
            scores = aggregate_passages(token_scores, spans, aggregation)
        else:
            scores = torch.zeros(len(pieces), dtype=torch.float32)
            for i, own in enumerate(pieces):
                seg = torch.cat([token_scores[s:e] for s, e in own]).float() if own else token_scores[:0]
                if seg.numel():
                    scores[i] = seg.sum() if aggregation == "sum" else seg.mean()
        return AttentionResult(
            passage_scores=scores,
            token_scores=token_scores,
            input_ids=torch.tensor(ids, dtype=torch.long),
            passage_spans=spans,
            answer_span=(0, len(answer_ids)),
            answer_ids=torch.tensor(answer_ids, dtype=torch.long),
            question_span=question_span,
            passage_token_spans=pieces if span == "content" else None,
        )

    @staticmethod
    def _token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels.clamp_min(0), reduction="none")
        return nll * (labels != -100)

    @staticmethod
    def _mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )

    @contextlib.contextmanager
    def _eval(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            if was_training:
                self.model.train()


__all__ = [
    "FiDReader",
    "BERT2BERT",
    "BUNDLED_FID_READERS",
    "is_fid_name",
    "build_minilm_bert2bert",
    "configure_bert2bert",
]

"""Decoder-only reader: generation, attention and perplexity passage scores, LM loss.

Wraps any Hugging Face causal LM (default: the bundled ``smollm2-135m``, loaded by
``ragdistill.models.load_causal_lm``). Attention scores are eq. 1 (:mod:`ragdistill.readers.eq1`),
fed by :mod:`ragdistill.readers.attention` (answer rows only, next to the SDPA kernel); the architectures covered are those of ``attention.SUPPORTED_TEXT``: Llama-family
models using transformers' AttentionInterface (Llama, SmolLM2, Mistral, Qwen2/3) and Falcon.
Generation, perplexity and the LM loss work for any causal LM.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, ModelError
from ragdistill.models import base_model_id, load_causal_lm
from ragdistill.readers.attention import capture_attention
from ragdistill.readers.base import AttentionResult, check_span
from ragdistill.readers.card import write_model_card
from ragdistill.readers.eq1 import aggregate_passages, check_aggregation
from ragdistill.readers.prompt import PromptBuilder, PromptTemplate
from ragdistill.utils.io import atomic_dir

READER_CONFIG = "ragdistill_reader.json"
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>", "<end_of_turn>")


@dataclass
class _Item:
    """One tokenised (question, passages, answer) sequence."""

    prompt_ids: list[int]
    answer_ids: list[int]
    passage_spans: list[tuple[int, int]]
    question_span: tuple[int, int]
    eos: bool = False

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids

    @property
    def rows(self) -> list[int]:
        """Positions that predict the answer tokens: last prompt position, then A_1..A_{|A|-1}."""
        p = len(self.prompt_ids)
        return list(range(p - 1, p - 1 + len(self.answer_ids)))


class DecoderReader:
    """A causal LM reading a question and K passages in one prompt."""

    kind = "decoder"

    def __init__(
        self,
        name_or_model: str | torch.nn.Module = "smollm2-135m",
        tokenizer=None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        template: PromptTemplate | dict | None = None,
        max_prompt_tokens: int | None = None,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        train_eos: bool = True,
        trust_remote_code: bool = False,
    ):
        saved: dict = {}
        if isinstance(name_or_model, (str, Path)):
            self.name = str(name_or_model)
            cfg_path = Path(self.name) / READER_CONFIG
            if cfg_path.is_file():
                saved = json.loads(cfg_path.read_text())
            model, tok = load_causal_lm(self.name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
            tokenizer = tokenizer or tok
        else:
            model = name_or_model
            self.name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            if tokenizer is None:
                raise ModelError("pass the tokenizer together with an already loaded model")
            if device is not None:
                model.to(device)
        if getattr(model.config, "is_encoder_decoder", False):
            raise ModelError(f"'{self.name}' is an encoder-decoder model: use kind='fid' (FiDReader)")
        self.model = model
        self.tokenizer = tokenizer
        self.base_model = str(saved.get("base_model") or base_model_id(self.name))  # what the model card names
        # the layers attention_scores(layers=None) averages over: every decoder layer (None if the config won't say)
        n_layers = getattr(model.config, "num_hidden_layers", None)
        self.num_score_layers: int | None = None if n_layers is None else int(n_layers)
        if template is None and "template" in saved:
            template = saved["template"]
        if isinstance(template, dict):
            template = PromptTemplate(**template)
        if max_prompt_tokens is None:
            max_prompt_tokens = saved.get("max_prompt_tokens")
        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise ConfigError("max_new_tokens", f"must be a positive integer, got {max_new_tokens!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError("batch_size", f"must be a positive integer, got {batch_size!r}")
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.train_eos = train_eos
        self.context_window = getattr(model.config, "max_position_embeddings", None)
        self.prompt = PromptBuilder(tokenizer, template, max_prompt_tokens, self.context_window)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = 0 if pad is None else int(pad)
        self.stop_token_ids = self._stop_ids()

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_prompt_tokens(self) -> int | None:
        return self.prompt.max_prompt_tokens

    def _stop_ids(self) -> list[int]:
        ids = set()
        for src in (
            self.tokenizer.eos_token_id,
            getattr(getattr(self.model, "generation_config", None), "eos_token_id", None),
        ):
            if isinstance(src, int):
                ids.add(src)
            elif isinstance(src, (list, tuple)):
                ids.update(int(i) for i in src)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
        return sorted(ids)

    def input_embedding_matrix(self) -> torch.Tensor:
        """The reader's input embedding rows [V, D] (detached), used by the attention-quality analysis."""
        return self.model.get_input_embeddings().weight.detach()

    def generation_config(self):
        """The model's generation config set to what `generate` does: greedy, its stop ids, pad id and answer length."""
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample, gen.num_beams = False, 1
        gen.temperature = gen.top_p = gen.top_k = None
        gen.max_new_tokens = self.max_new_tokens
        gen.eos_token_id = list(self.stop_token_ids) or gen.eos_token_id
        gen.pad_token_id = self.pad_token_id
        return gen

    def save_pretrained(self, out_dir: str | Path, *, card: dict | None = None) -> None:
        """Write model, tokenizer, generation config, prompt settings and model card atomically.

        The directory is a plain Hugging Face model (`AutoModelForCausalLM` / `AutoTokenizer` load
        it); `DecoderReader(out_dir)` reloads it as a reader. `card`: keyword arguments of
        `readers.card.write_model_card` (setting, data, steps, metrics, indicators, extra);
        the base model is the reader's own.
        """
        with atomic_dir(out_dir) as tmp:
            self.model.save_pretrained(tmp)
            self.generation_config().save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            cfg = {
                "kind": self.kind,
                "base_model": self.base_model,
                "template": asdict(self.prompt.template),
                "max_prompt_tokens": self.prompt.max_prompt_tokens,
            }
            (tmp / READER_CONFIG).write_text(json.dumps(cfg, indent=2))
            card = dict(card or {})
            write_model_card(
                tmp,
                base_model=card.pop("base_model", self.base_model),
                setting=card.pop("setting", None),
                data=card.pop("data", None),
                steps=card.pop("steps", None),
                **card,
            )

    # ------------------------------------------------------------------ tokenisation
    def _item(self, question: str, passages: Sequence[Passage], answer: str | None, eos: bool = False) -> _Item:
        built = self.prompt.build(question, passages)
        ans = self.prompt.answer_ids(answer, len(passages)) if answer is not None else []
        if eos and ans:
            eos_id = self.stop_token_ids[0] if self.tokenizer.eos_token_id is None else self.tokenizer.eos_token_id
            ans = ans + [int(eos_id)]
        if self.context_window is not None and len(built.input_ids) + len(ans) > self.context_window:
            raise ConfigError(
                "max_prompt_tokens",
                f"prompt ({len(built.input_ids)} tokens) plus answer ({len(ans)}) exceed the model's "
                f"context window of {self.context_window}: set max_prompt_tokens lower",
            )
        return _Item(built.input_ids, ans, built.passage_spans, built.question_span, eos=eos and bool(ans))

    def _pad(self, seqs: list[list[int]], side: str = "right") -> tuple[torch.Tensor, torch.Tensor | None]:
        """(input_ids, attention_mask) on the model's device; mask None when nothing is padded (keeps SDPA causal)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
            ids[i, sl] = torch.tensor(s, dtype=torch.long)
            mask[i, sl] = 1
        dev = self.device
        return ids.to(dev), (None if bool(mask.all()) else mask.to(dev))

    @staticmethod
    def _check_batch(questions, passages, answers=None) -> None:
        if len(questions) != len(passages) or (answers is not None and len(answers) != len(questions)):
            raise ConfigError(
                "batch",
                f"got {len(questions)} questions, {len(passages)} passage lists"
                + ("" if answers is None else f" and {len(answers)} answers")
                + ": they must match",
            )

    # ------------------------------------------------------------------ core forward
    def _forward(
        self, items: list[_Item], capture: dict | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One right-padded forward; (log-probs of the answer tokens [B, A'], their mask, w_t [B, T] or None).

        Only the rows that predict answer tokens go through the LM head (``logits_to_keep``).
        """
        ids, mask = self._pad([it.ids for it in items], "right")
        n_rows = max(len(it.rows) for it in items)
        rows = torch.zeros((len(items), n_rows), dtype=torch.long)
        row_mask = torch.zeros((len(items), n_rows), dtype=torch.bool)
        targets = torch.full((len(items), n_rows), self.pad_token_id, dtype=torch.long)
        for i, it in enumerate(items):
            r = it.rows
            rows[i, : len(r)] = torch.tensor(r)
            row_mask[i, : len(r)] = True
            targets[i, : len(r)] = torch.tensor(it.answer_ids)
        keep = torch.unique(rows[row_mask])
        where = torch.searchsorted(keep, rows.clamp(min=int(keep.min())))  # column of each row in the kept logits
        dev = self.device
        kwargs = dict(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep.to(dev))
        w = None
        if capture is not None:
            # the eos row (training only) is not an answer query
            cap_mask = row_mask.clone()
            for i, it in enumerate(items):
                if it.eos:
                    cap_mask[i, len(it.rows) - 1] = False
            with capture_attention(self.model, rows.to(dev), cap_mask.to(dev), **capture) as state:
                logits = self.model(**kwargs).logits
            w = state.token_scores()
        else:
            logits = self.model(**kwargs).logits
        logits = torch.gather(logits, 1, where.to(dev)[:, :, None].expand(-1, -1, logits.shape[-1]))
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok_logp = torch.gather(logp, 2, targets.to(dev)[:, :, None]).squeeze(-1)
        return tok_logp, row_mask.to(dev), w

    def _results(self, items: list[_Item], w: torch.Tensor, aggregation: str) -> list[AttentionResult]:
        out = []
        for i, it in enumerate(items):
            n_prompt = len(it.prompt_ids)
            n_ans = len(it.answer_ids) - (1 if it.eos else 0)
            tok = torch.zeros(n_prompt + n_ans, dtype=torch.float32)
            tok[:n_prompt] = w[i, :n_prompt].detach().float().cpu()
            out.append(
                AttentionResult(
                    passage_scores=aggregate_passages(tok, it.passage_spans, aggregation),
                    token_scores=tok,
                    input_ids=torch.tensor(it.ids[: n_prompt + n_ans], dtype=torch.long),
                    passage_spans=list(it.passage_spans),
                    answer_span=(n_prompt, n_prompt + n_ans),
                    answer_ids=torch.tensor(it.answer_ids[:n_ans], dtype=torch.long),
                    question_span=it.question_span,
                )
            )
        return out

    # ------------------------------------------------------------------ public API
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
        """Passage scores S_1..S_K of METHOD §3.2 (no grad), with w_t, input_ids and spans to check them.

        `span` ("block" | "content") is accepted for every reader; here both are passage i's own
        tokens ("title. text"): the prompt template ("Document i:", the question) belongs to no passage.
        """
        return self.attention_scores_batch([question], [passages], [answer], layers, value_norm, aggregation, span)[0]

    def attention_scores_batch(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        answers: Sequence[str],
        layers: Sequence[int] | None = None,
        value_norm: bool = True,
        aggregation: str = "sum",
        span: str = "block",
    ) -> list[AttentionResult]:
        """`attention_scores` for several questions, right-padded in batches of `batch_size`."""
        self._check_batch(questions, passages, answers)
        check_aggregation(aggregation)
        check_span(span)
        items = [self._item(q, p, a) for q, p, a in zip(questions, passages, answers)]
        out: list[AttentionResult] = []
        capture = dict(layers=layers, value_norm=value_norm)
        with torch.no_grad():
            for s in range(0, len(items), self.batch_size):
                chunk = items[s : s + self.batch_size]
                _, _, w = self._forward(chunk, capture)
                out.extend(self._results(chunk, w, aggregation))
        return out

    def perplexity_scores(self, question: str, passages: Sequence[Passage], answer: str) -> torch.Tensor:
        """S_i = −mean NLL of the answer given the question and passage i alone: Tensor[K] (no grad)."""
        items = [self._item(question, [p], answer) for p in passages]
        scores = []
        with torch.no_grad():
            for s in range(0, len(items), self.batch_size):
                logp, mask, _ = self._forward(items[s : s + self.batch_size], None)
                m = mask.float()
                scores.append(((logp * m).sum(1) / m.sum(1)).float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def lm_loss(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], answers: Sequence[str]
    ) -> torch.Tensor:
        """Differentiable LM loss: mean NLL over the batch's answer tokens (plus end-of-turn when train_eos)."""
        self._check_batch(questions, passages, answers)
        items = [self._item(q, p, a, eos=self.train_eos) for q, p, a in zip(questions, passages, answers)]
        logp, mask, _ = self._forward(items, None)
        return -(logp * mask).sum() / mask.sum()

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
        """One forward: the differentiable LM loss and the (detached) attention results, for joint training."""
        self._check_batch(questions, passages, answers)
        check_span(span)
        items = [self._item(q, p, a, eos=self.train_eos) for q, p, a in zip(questions, passages, answers)]
        logp, mask, w = self._forward(items, dict(layers=layers, value_norm=value_norm))
        loss = -(logp * mask).sum() / mask.sum()
        return loss, self._results(items, w, aggregation)

    def generate(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]], max_new_tokens: int | None = None
    ) -> list[str]:
        """Batched greedy answers (left padding, KV cache), cut at the first newline / end of turn.

        Two things make it cheaper than `model.generate` over the questions in their given order, without
        changing an answer: prompts are batched by length (longest first, so a batch pads little; answers
        come back in the caller's order), and a row stops as soon as its answer line is complete (a newline
        after some text: `clean` keeps the first line only, so the tokens after it could not change it).
        """
        from transformers import StoppingCriteriaList

        self._check_batch(questions, passages)
        n_new = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        prompts = [self._item(q, p, None).prompt_ids for q, p in zip(questions, passages)]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        answers: list[str] = [""] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for s in range(0, len(order), self.batch_size):
                    rows = order[s : s + self.batch_size]
                    ids, mask = self._pad([prompts[i] for i in rows], "left")
                    if mask is None:
                        mask = torch.ones_like(ids)
                    out = self.model.generate(
                        input_ids=ids,
                        attention_mask=mask,
                        max_new_tokens=n_new,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        num_beams=1,
                        pad_token_id=self.pad_token_id,
                        eos_token_id=self.stop_token_ids or None,
                        stopping_criteria=StoppingCriteriaList([_AnswerLineDone(self, ids.shape[1])]),
                    )
                    for i, row in zip(rows, out[:, ids.shape[1] :].tolist()):
                        answers[i] = self.clean(row)
        finally:
            self.model.train(was_training)
        return answers

    def clean(self, token_ids: Sequence[int]) -> str:
        """Decode generated ids: stop at an end-of-turn id, drop special tokens, keep the first line."""
        ids = list(token_ids)
        for i, t in enumerate(ids):
            if t in self.stop_token_ids:
                ids = ids[:i]
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text = text.strip()
        return text.split("\n", 1)[0].strip()


class _AnswerLineDone:
    """Stopping criterion: a row is done once the text it generated has a newline after non-blank text.

    `DecoderReader.clean` keeps the first non-blank line of the answer, so nothing generated after that
    newline can change it. Checked on the decoded text (a byte-level BPE token may hold "\n" inside).
    """

    def __init__(self, reader: DecoderReader, prompt_len: int) -> None:
        self.reader = reader
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = []
        stops = set(self.reader.stop_token_ids)
        for row in input_ids[:, self.prompt_len :].tolist():
            new = []
            for t in row:
                if t in stops:
                    break
                new.append(t)
            text = self.reader.tokenizer.decode(new, skip_special_tokens=True).lstrip()
            done.append("\n" in text)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

"""The decoder-only reader's prompt: template, token budget, exact token spans.

The prompt is built from pieces tokenised separately and concatenated — template
text, the question, each passage — so the span of every passage's own tokens is
known exactly (no offset mapping, no guessing where a tokenizer merged across a
boundary). The template is rendered once per number of passages with sentinels in
place of the question and passages (through the model's chat template when it has
one), then cut at the sentinels.

A prompt budget (`max_prompt_tokens`) is shared by the passages: the template and
the question are never cut; what remains is divided among the passages, a passage
shorter than its share giving the rest to the others (water filling).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError

_Q = "@@RAGDISTILL_QUESTION@@"
_P = "@@RAGDISTILL_PASSAGE_{}@@"
_SENTINEL = re.compile(r"@@RAGDISTILL_(QUESTION|PASSAGE_(\d+))@@")

DEFAULT_USER = (
    "Answer the question using the documents below. Reply with a short answer only.\n\n"
    "{documents}\n\nQuestion: {question}"
)


@dataclass(frozen=True)
class PromptTemplate:
    """How the question and passages are laid out.

    user:     the user message; must hold ``{documents}`` and ``{question}``.
    document: one passage; must hold ``{passage}`` ("title. text"), may hold ``{i}`` (1-based).
    separator: between documents.
    chat:     True: wrap `user` in the tokenizer's chat template (with the generation prompt);
              False: plain text followed by `answer_prefix`; None: chat when the tokenizer has one.
    system:   optional system message (chat mode).
    answer_prefix: what follows the user text in plain mode (the answer comes after it).
    """

    user: str = DEFAULT_USER
    document: str = "Document {i}: {passage}"
    separator: str = "\n"
    chat: bool | None = None
    system: str | None = None
    answer_prefix: str = "\nAnswer:"

    def __post_init__(self) -> None:
        for key in ("{documents}", "{question}"):
            if key not in self.user:
                raise ConfigError("prompt.user", f"the template must contain {key}")
        if "{passage}" not in self.document:
            raise ConfigError("prompt.document", "the document template must contain {passage}")

    def user_text(self, n_passages: int) -> str:
        try:
            docs = self.separator.join(self.document.format(i=i + 1, passage=_P.format(i)) for i in range(n_passages))
            return self.user.format(documents=docs, question=_Q)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                "prompt",
                f"bad placeholder in the template ({exc}); only {{documents}}, {{question}}, "
                "{passage} and {i} are filled (double other braces)",
            ) from exc


@dataclass
class BuiltPrompt:
    """Token ids of one prompt and where the question and each passage sit in them."""

    input_ids: list[int]
    passage_spans: list[tuple[int, int]]
    question_span: tuple[int, int]
    truncated: list[bool] = field(default_factory=list)  # passage i lost tokens to the budget


class PromptBuilder:
    """Builds prompts for one tokenizer, template and budget; caches the template pieces per K."""

    def __init__(
        self,
        tokenizer,
        template: PromptTemplate | None = None,
        max_prompt_tokens: int | None = None,
        context_window: int | None = None,
    ):
        if max_prompt_tokens is not None and (not isinstance(max_prompt_tokens, int) or max_prompt_tokens <= 0):
            raise ConfigError("max_prompt_tokens", f"must be a positive integer or None, got {max_prompt_tokens!r}")
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate()
        self.max_prompt_tokens = max_prompt_tokens
        self.context_window = context_window
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if self.template.chat and not has_chat:
            raise ConfigError("prompt.chat", "the tokenizer has no chat template: set chat=False (plain prompt)")
        self.chat = has_chat if self.template.chat is None else self.template.chat
        self._pieces: dict[int, tuple[list[list[int] | str], bool]] = {}

    # -- tokenisation helpers
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _render(self, n_passages: int) -> str:
        user = self.template.user_text(n_passages)
        if self.chat:
            messages = [{"role": "system", "content": self.template.system}] if self.template.system else []
            messages.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = self.tokenizer.bos_token if self._adds_bos() else ""
        return (bos or "") + user + self.template.answer_prefix

    def _adds_bos(self) -> bool:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is None:
            return False
        ids = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return len(ids) > 0 and ids[0] == bos

    def pieces(self, n_passages: int) -> tuple[list[list[int] | str], bool]:
        """Template token pieces interleaved with slot names ('Q', 'P0', ...); and whether answers need a space."""
        if n_passages not in self._pieces:
            rendered = self._render(n_passages)
            out: list[list[int] | str] = []
            pos = 0
            seen: list[str] = []
            for m in _SENTINEL.finditer(rendered):
                literal = rendered[pos : m.start()]
                slot = "Q" if m.group(1) == "QUESTION" else f"P{m.group(2)}"
                space = literal.endswith(" ")
                if space:
                    literal = literal[:-1]
                out.append(self.encode(literal))
                out.append(slot + (" " if space else ""))
                seen.append(slot)
                pos = m.end()
            tail = rendered[pos:]
            out.append(self.encode(tail))
            expected = ["Q"] + [f"P{i}" for i in range(n_passages)]
            if sorted(seen) != sorted(expected):
                raise ConfigError(
                    "prompt",
                    "the rendered template must show the question and every passage exactly once "
                    "(does the chat template drop the user message?)",
                )
            needs_space = not (rendered[-1:].isspace()) if rendered else False
            self._pieces[n_passages] = (out, needs_space)
        return self._pieces[n_passages]

    def answer_needs_space(self, n_passages: int) -> bool:
        return self.pieces(n_passages)[1]

    def fixed_tokens(self, question: str, n_passages: int) -> int:
        """Tokens of the template and question: what the budget can never cut."""
        pieces, _ = self.pieces(n_passages)
        n = sum(len(p) for p in pieces if isinstance(p, list))
        q_space = next(p for p in pieces if isinstance(p, str) and p.startswith("Q")).endswith(" ")
        return n + len(self.encode((" " if q_space else "") + question))

    # -- budget
    @staticmethod
    def allocate(lengths: Sequence[int], budget: int) -> list[int]:
        """Water filling: each passage gets min(its length, an equal share of what is left)."""
        alloc = [0] * len(lengths)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        left, remaining = budget, len(lengths)
        for i in order:
            share = left // remaining
            alloc[i] = min(lengths[i], share)
            left -= alloc[i]
            remaining -= 1
        return alloc

    def build(self, question: str, passages: Sequence[Passage]) -> BuiltPrompt:
        """Token ids and spans for `question` with `passages` (question and template never cut)."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("question", "the question is empty")
        k = len(passages)
        pieces, _ = self.pieces(k)
        slot_ids: dict[str, list[int]] = {}
        for p in pieces:
            if isinstance(p, str):
                name, space = p.strip(), p.endswith(" ")
                text = question if name == "Q" else passages[int(name[1:])].as_text()
                slot_ids[name] = self.encode((" " if space else "") + text)
        fixed = sum(len(p) for p in pieces if isinstance(p, list)) + len(slot_ids["Q"])
        lengths = [len(slot_ids[f"P{i}"]) for i in range(k)]
        truncated = [False] * k
        if self.max_prompt_tokens is not None:
            remaining = self.max_prompt_tokens - fixed
            if remaining < k:
                raise ConfigError(
                    "max_prompt_tokens",
                    f"the template and question alone take {fixed} tokens, leaving {max(remaining, 0)} of the "
                    f"{self.max_prompt_tokens}-token budget for {k} passages (at least one token each): raise "
                    "max_prompt_tokens, shorten the template, or pass fewer passages",
                )
            alloc = self.allocate(lengths, remaining)
            for i in range(k):
                if alloc[i] < lengths[i]:
                    slot_ids[f"P{i}"] = slot_ids[f"P{i}"][: alloc[i]]
                    truncated[i] = True
        ids: list[int] = []
        spans: dict[str, tuple[int, int]] = {}
        for p in pieces:
            if isinstance(p, list):
                ids.extend(p)
            else:
                name = p.strip()
                spans[name] = (len(ids), len(ids) + len(slot_ids[name]))
                ids.extend(slot_ids[name])
        if self.context_window is not None and len(ids) >= self.context_window:
            raise ConfigError(
                "max_prompt_tokens",
                f"the prompt has {len(ids)} tokens but the model reads at most {self.context_window}: "
                "set max_prompt_tokens (e.g. 128 or 512) so the passages are truncated to fit",
            )
        return BuiltPrompt(ids, [spans[f"P{i}"] for i in range(k)], spans["Q"], truncated)

    def answer_ids(self, answer: str, n_passages: int) -> list[int]:
        """The answer's token ids as they follow the prompt (a leading space after plain 'Answer:')."""
        if not isinstance(answer, str) or not answer.strip():
            raise ConfigError("answer", "the answer is empty: pass the gold answer (or the reader's generated one)")
        text = answer.strip()
        return self.encode((" " if self.answer_needs_space(n_passages) else "") + text)

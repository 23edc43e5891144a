"""The two record types every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """One knowledge-base passage. `id` is a string, unique within a corpus."""

    id: str
    title: str
    text: str

    def as_text(self) -> str:
        """Title and text as the retriever and readers see them."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass(frozen=True)
class Question:
    """One question with its gold answers (first one is the training target)."""

    id: str
    question: str
    answers: list[str] = field(default_factory=list)

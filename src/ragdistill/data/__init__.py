"""Question sets and corpora in the common public formats, and the bundled demo world.

from ragdistill.data import load_questions, iter_passages
questions = load_questions("NQ-open.dev.jsonl")          # format detected from content
for batch in iter_passage_batches("psgs_w100.tsv", 10_000):  # streamed
    ...
"""

from ragdistill.data.corpus import (
    DEFAULT_CHUNK_WORDS,
    chunk_passage,
    count_passages,
    iter_passage_batches,
    iter_passages,
    load_passages,
)
from ragdistill.data.formats import FORMATS, detect_format, get_format
from ragdistill.data.questions import iter_questions, load_questions
from ragdistill.data.types import Passage, Question

__all__ = [
    "DEFAULT_CHUNK_WORDS",
    "FORMATS",
    "Passage",
    "Question",
    "chunk_passage",
    "count_passages",
    "detect_format",
    "get_format",
    "iter_passage_batches",
    "iter_passages",
    "iter_questions",
    "load_passages",
    "load_questions",
]

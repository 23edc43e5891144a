"""Tiny randomly initialised bi-encoders and synthetic corpora for fast retrieval tests."""

from __future__ import annotations

import random
import string

import torch

from ragdistill.data.types import Passage

WORDS = [
    "river",
    "mountain",
    "castle",
    "engine",
    "violin",
    "planet",
    "harbor",
    "forest",
    "comet",
    "glacier",
    "library",
    "falcon",
    "tiger",
    "canyon",
    "orchid",
    "bridge",
    "lantern",
    "meadow",
    "copper",
    "saturn",
    "pepper",
    "island",
    "museum",
    "thunder",
    "marble",
    "velvet",
    "anchor",
    "crystal",
    "desert",
    "pilot",
]


def tiny_tokenizer():
    """A character-level WordPiece tokenizer (no download): letters, digits, punctuation."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase) + list(string.digits)
    vocab += list(string.punctuation) + ["##" + c for c in string.ascii_lowercase + string.digits]
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def tiny_encoder(seed: int = 0, hidden: int = 32, vocab_size: int = 109):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    model = BertModel(cfg)
    model.eval()
    return model


def make_tiny_retriever(seed: int = 0, **kwargs):
    """A BiEncoderRetriever over a 2-layer, 32-dim random BERT (CPU, milliseconds per batch)."""
    from ragdistill.retrieval.retriever import BiEncoderRetriever

    tok = tiny_tokenizer()
    kwargs.setdefault("max_length", 64)
    return BiEncoderRetriever(tiny_encoder(seed, vocab_size=len(tok)), tok, name=kwargs.pop("name", "tiny"), **kwargs)


def synthetic_passages(n: int, seed: int = 0, min_words: int = 3, max_words: int = 20) -> list[Passage]:
    rng = random.Random(seed)
    return [
        Passage(f"p{i}", f"Doc {i % 7}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))))
        for i in range(n)
    ]


def synthetic_questions(passages: list[Passage], n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(passages).text.split()
        out.append("what about " + " ".join(words[:3]) + "?")
    return out

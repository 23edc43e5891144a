"""Tiny randomly initialised encoder-decoders (T5 and BERT2BERT) with their tokenizers, for tests and smoke runs.

No encoder-decoder weights (and no T5 SentencePiece model) are available offline, so tests,
benchmarks and CI smoke runs build these in a second: a T5-like byte-fallback-free BPE tokenizer
trained with the `tokenizers` library on a few sentences (Metaspace pre-tokenizer like
SentencePiece, ``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``</s>`` appended to every sequence) and a
small `T5ForConditionalGeneration` / `EncoderDecoderModel` over it. `write_tiny_t5(dir)` saves
a directory that `FiDReader.from_pretrained(dir)` (and `get_reader(dir)`) load like any
checkpoint. Their answers are random: they exist to exercise the code paths, not to read.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from ragdistill.utils.io import atomic_dir

TINY_CORPUS = [
    "question: who wrote the novel? title: Moby Dick context: Herman Melville wrote Moby Dick in 1851.",
    "question: where is the tower? title: Eiffel Tower context: The Eiffel Tower is in Paris, France.",
    "question: what is the capital of Italy? title: Rome context: Rome is the capital city of Italy.",
    "The river flows through the valley and the old bridge crosses it near the village.",
    "Marie Curie won the Nobel Prize in physics and chemistry; she was born in Warsaw.",
    "The answer is forty two, said the computer after seven and a half million years.",
    "Mount Everest is the highest mountain on Earth, on the border of Nepal and China.",
]


def tiny_tokenizer(vocab_size: int = 400, extra_corpus: list[str] | None = None):
    """A T5-like `PreTrainedTokenizerFast` (BPE, Metaspace, pad/eos/unk, EOS appended)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation) + ["▁"],
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS + list(extra_corpus or []), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(
    tokenizer,
    seed: int = 0,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    attn_implementation: str = "sdpa",
):
    """A small random `T5ForConditionalGeneration` whose vocabulary matches `tokenizer`."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    return model.eval()


def tiny_bert2bert(
    tokenizer,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    attn_implementation: str = "sdpa",
):
    """A small random BERT-to-BERT `EncoderDecoderModel` (decoder with cross-attention) over `tokenizer`.

    With the T5-like tiny tokenizer the decoder starts from </s> and stops at </s>.
    """
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    enc = BertConfig(**common)
    dec = BertConfig(**common, is_decoder=True, add_cross_attention=True)
    enc._attn_implementation = attn_implementation
    dec._attn_implementation = attn_implementation
    config = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    config.decoder_start_token_id = start
    config.eos_token_id = eos
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EncoderDecoderModel(config=config)
    model.config.encoder._attn_implementation = attn_implementation
    model.config.decoder._attn_implementation = attn_implementation
    for cfg in (model.generation_config,):
        cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id = start, eos, tokenizer.pad_token_id
    return model.eval()


def write_tiny_t5(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random T5 + tokenizer to `out_dir` (atomically) and return the path."""
    tok = tiny_tokenizer()
    model = tiny_t5(tok, seed=seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return Path(out_dir)


def write_tiny_bert2bert(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BERT2BERT + the tiny tokenizer to `out_dir` (atomically) and return the path."""
    tok = tiny_tokenizer()
    model = tiny_bert2bert(tok, seed=seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return Path(out_dir)

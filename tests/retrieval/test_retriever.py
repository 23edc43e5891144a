"""BiEncoderRetriever on a tiny random BERT: pooling, batching, gradients, untied/frozen sides, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, ModelError
from ragdistill.retrieval.retriever import BiEncoderRetriever, _model_dir_normalizes, check_compatible
from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages

TEXTS = ["a", "river castle", "the violin on the mountain at night", "comet glacier tiger canyon orchid bridge " * 3]


def manual_embedding(r: BiEncoderRetriever, text: str, encoder=None) -> torch.Tensor:
    """Reference: one unpadded text through the encoder, pooled by hand."""
    enc = r.tokenizer([text], return_tensors="pt", truncation=True, max_length=r.max_length)
    with torch.no_grad():
        h = (encoder or r.query_encoder)(**enc).last_hidden_state[0]
    v = h[0] if r.pooling == "cls" else h.mean(0)
    return torch.nn.functional.normalize(v, dim=-1) if r.normalize else v


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("normalize", [False, True])
def test_batched_encoding_equals_single_unpadded_texts(pooling, normalize):
    r = make_tiny_retriever(pooling=pooling, normalize=normalize)
    want = torch.stack([manual_embedding(r, t) for t in TEXTS]).numpy()
    # batch of 2 with length sorting: rows come back in input order, padding changes nothing
    got = r.encode_queries(TEXTS, batch_size=2)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), r.dim)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(r.embed_queries(TEXTS).detach().numpy(), want, atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_passages_are_embedded_as_title_dot_text():
    r = make_tiny_retriever()
    p = Passage("1", "Castle", "a river runs by")
    np.testing.assert_allclose(
        r.encode_passages([p])[0], manual_embedding(r, "Castle. a river runs by").numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        r.encode_passages([Passage("2", "", "x")])[0], manual_embedding(r, "x").numpy(), atol=1e-5
    )


def test_empty_inputs_and_bad_batch_size():
    r = make_tiny_retriever()
    assert r.encode_queries([]).shape == (0, r.dim)
    with pytest.raises(ConfigError, match="batch_size"):
        r.encode_queries(["x"], batch_size=0)


def test_score_is_inner_product_and_differentiable():
    r = make_tiny_retriever()
    ps = synthetic_passages(6)
    qs = ["river castle?", "violin?"]
    s = r.score(qs, [ps[:3], ps[3:]])
    assert s.shape == (2, 3) and s.requires_grad
    q = r.encode_queries(qs)
    d = r.encode_passages(ps).reshape(2, 3, -1)
    np.testing.assert_allclose(s.detach().numpy(), np.einsum("bd,bkd->bk", q, d), atol=1e-4)
    # p_RETR-style loss backpropagates into the (shared) encoder
    torch.log_softmax(s / 0.1, dim=-1)[:, 0].sum().backward()
    assert r.query_encoder.embeddings.word_embeddings.weight.grad is not None
    with pytest.raises(ConfigError):
        r.score(qs, [ps[:3], ps[3:5]])


def test_untied_encoders_are_independent_copies():
    r = make_tiny_retriever(shared=False)
    assert r.passage_encoder is not r.query_encoder
    np.testing.assert_allclose(r.encode_passages([Passage("1", "", "river")]), r.encode_queries(["river"]), atol=1e-6)
    with torch.no_grad():
        w = r.query_encoder.embeddings.word_embeddings.weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    assert not np.allclose(r.encode_passages([Passage("1", "", "river")]), r.encode_queries(["river"]), atol=1e-3)


def test_query_only_freezes_the_passage_side():
    r = make_tiny_retriever(query_only=True)
    assert not r.shared and r.query_only
    assert all(not p.requires_grad for p in r.passage_encoder.parameters())
    assert all(p.requires_grad for p in r.query_encoder.parameters())
    r.train()
    assert r.query_encoder.training and not r.passage_encoder.training  # no dropout on the frozen side
    before = r.fingerprint()["passage_encoder_sha256"]
    s = r.score(["river?"], [synthetic_passages(3)])
    s.sum().backward()
    assert r.query_encoder.embeddings.word_embeddings.weight.grad is not None
    assert all(p.grad is None for p in r.passage_encoder.parameters())
    assert r.fingerprint()["passage_encoder_sha256"] == before


def test_fingerprint_tracks_passage_weights():
    r = make_tiny_retriever()
    fp = r.fingerprint()
    assert {"model", "pooling", "normalize", "dim", "max_length", "passage_encoder_sha256"} <= fp.keys()
    assert r.fingerprint() == fp  # cached, stable
    with torch.no_grad():
        next(r.passage_encoder.parameters()).mul_(1.01)
    assert r.fingerprint()["passage_encoder_sha256"] != fp["passage_encoder_sha256"]


def test_check_compatible_refuses_other_retrievers():
    a, b = make_tiny_retriever(seed=0), make_tiny_retriever(seed=1)
    check_compatible(a.fingerprint(), make_tiny_retriever(seed=0))
    with pytest.raises(ModelError, match="weights differ"):
        check_compatible(a.fingerprint(), b)
    with pytest.raises(ModelError, match="pooling"):
        check_compatible(a.fingerprint(), make_tiny_retriever(seed=0, pooling="cls"))


@pytest.mark.parametrize("shared, query_only", [(True, False), (False, False), (True, True)])
def test_save_load_round_trip(tmp_path, shared, query_only):
    r = make_tiny_retriever(shared=shared, query_only=query_only, normalize=True, pooling="cls")
    if not r.shared:
        with torch.no_grad():
            w = r.query_encoder.embeddings.word_embeddings.weight  # make the two sides differ
            w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    r.save_pretrained(tmp_path / "ret")
    cfg = json.loads((tmp_path / "ret" / "retriever_config.json").read_text())
    assert cfg["pooling"] == "cls" and cfg["normalize"] is True and cfg["shared"] == r.shared
    assert (tmp_path / "ret" / ("model.safetensors" if r.shared else "query_0_Transformer/model.safetensors")).is_file()
    r2 = BiEncoderRetriever.from_pretrained(str(tmp_path / "ret"), device="cpu")
    assert (r2.pooling, r2.normalize, r2.shared, r2.query_only, r2.max_length) == (
        r.pooling,
        r.normalize,
        r.shared,
        r.query_only,
        r.max_length,
    )
    np.testing.assert_allclose(r2.encode_queries(TEXTS), r.encode_queries(TEXTS), atol=1e-6)
    ps = synthetic_passages(5)
    np.testing.assert_allclose(r2.encode_passages(ps), r.encode_passages(ps), atol=1e-6)
    assert r2.fingerprint()["passage_encoder_sha256"] == r.fingerprint()["passage_encoder_sha256"]
    with pytest.raises(ConfigError, match="pooling"):
        BiEncoderRetriever.from_pretrained(str(tmp_path / "ret"), pooling="mean", device="cpu")


def test_normalize_default_follows_modules_json(tmp_path):
    assert not _model_dir_normalizes(tmp_path)
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    assert _model_dir_normalizes(tmp_path)


def test_bf16_on_cpu_is_close_to_fp32():
    r = make_tiny_retriever(normalize=True)
    ps = synthetic_passages(10)
    full = r.encode_passages(ps)
    r.precision = "bf16"
    half = r.encode_passages(ps)
    assert half.dtype == np.float32
    assert np.min(np.sum(full * half, axis=1)) > 0.99  # cosine of unit vectors
    r.precision = "fp16"  # CUDA only: float32 on CPU
    np.testing.assert_allclose(r.encode_passages(ps), full, atol=1e-6)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="pooling"):
        make_tiny_retriever(pooling="max")
    with pytest.raises(ConfigError, match="precision"):
        make_tiny_retriever(precision="int8")


@pytest.mark.slow
def test_bundled_minilm_matches_sentence_transformers():
    """minilm-l6 defaults (mean pooling, normalised as its modules.json says) equal sentence-transformers."""
    st = pytest.importorskip("sentence_transformers")
    from ragdistill.models import resolve

    r = BiEncoderRetriever.from_pretrained("minilm-l6", device="cpu")
    assert r.normalize and r.pooling == "mean" and r.max_length == 256
    model = st.SentenceTransformer(resolve("minilm-l6").path, device="cpu")
    ps = synthetic_passages(6, min_words=150, max_words=300)  # some longer than 256 tokens: truncation agrees too
    np.testing.assert_allclose(
        r.encode_passages(ps, batch_size=8), model.encode([p.as_text() for p in ps], batch_size=8), atol=1e-5
    )

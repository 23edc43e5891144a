"""PassageIndex: exact search, save/load, atomic builds, refusals, FAISS factory types, refresh."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.retrieval.index import MANIFEST_NAME, PassageIndex, Retrieved, shard_bounds
from tests.retrieval.tiny import make_tiny_retriever, synthetic_passages, synthetic_questions


def brute_force(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ d.T
    rows = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, rows, axis=1), rows


@pytest.fixture
def built(tmp_path, tiny_retriever, passages):
    index = PassageIndex.build(passages, tiny_retriever, tmp_path / "idx", batch_size=16, chunk_size=50, progress=False)
    return index, tiny_retriever


def test_build_search_equals_brute_force(built, passages):
    index, r = built
    assert len(index) == len(passages) == index.manifest["passages"]
    q = r.encode_queries(synthetic_questions(passages, 10))
    scores, rows = index.search(q, 5)
    want_s, want_rows = brute_force(q, r.encode_passages(passages), 5)
    np.testing.assert_allclose(scores, want_s, atol=1e-4)
    assert (rows == want_rows).mean() > 0.95  # ties may swap
    assert index.get(rows[0]) == [passages[i] for i in rows[0]]


def test_manifest_records_what_the_issue_asks(built, passages):
    index, r = built
    m = json.loads((index.path / MANIFEST_NAME).read_text())
    assert m["model"] == "tiny" and m["pooling"] == "mean" and m["dim"] == r.dim and m["passages"] == len(passages)
    assert m["faiss_type"] == "Flat" and m["faiss_class"] == "IndexFlatIP" and m["normalize"] is False
    assert len(m["passages_sha256"]) == 64 and set(m["files"]) == {"index.faiss", "passages.sqlite"}
    assert m["file_sizes"] == {name: (index.path / name).stat().st_size for name in m["files"]}
    assert m["retriever"]["passage_encoder_sha256"] == r.fingerprint()["passage_encoder_sha256"]


def test_retrieve_returns_ranked_passages(built, passages):
    index, r = built
    qs = synthetic_questions(passages, 3)
    res = index.retrieve(r, qs, k=4)
    scores, rows = index.search(r.encode_queries(qs), 4)
    assert [[x.rank for x in hits] for hits in res] == [[1, 2, 3, 4]] * 3
    for hits, srow, rrow in zip(res, scores, rows):
        assert all(isinstance(x, Retrieved) for x in hits)
        assert [x.passage for x in hits] == [passages[i] for i in rrow]
        np.testing.assert_allclose([x.score for x in hits], srow, rtol=1e-6)


def test_save_load_round_trip_identical(built, passages, tmp_path):
    index, r = built
    q = r.encode_queries(synthetic_questions(passages, 8))
    before = index.search(q, 7)
    loaded = PassageIndex.load(index.path, retriever=r)
    after = loaded.search(q, 7)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.get(after[1][0]) == index.get(before[1][0])
    # save to another directory and load again
    loaded.save(tmp_path / "copy")
    again = PassageIndex.load(tmp_path / "copy", retriever=r)
    np.testing.assert_array_equal(again.search(q, 7)[1], before[1])


class Boom(RuntimeError):
    pass


def exploding(passages, after):
    for i, p in enumerate(passages):
        if i == after:
            raise Boom("killed mid-build")
        yield p


def test_killed_build_leaves_no_loadable_index(tmp_path, tiny_retriever, passages):
    out = tmp_path / "idx"
    with pytest.raises(Boom):
        PassageIndex.build(exploding(passages, 70), tiny_retriever, out, chunk_size=20, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary leftovers either
    with pytest.raises(InputError):
        PassageIndex.load(out)


def test_killed_rebuild_keeps_previous_index(built, passages):
    index, r = built
    q = r.encode_queries(synthetic_questions(passages, 4))
    before = index.search(q, 5)
    with pytest.raises(Boom):
        PassageIndex.build(exploding(synthetic_passages(80, seed=9), 60), r, index.path, chunk_size=20, progress=False)
    old = PassageIndex.load(index.path, retriever=r)
    assert len(old) == len(passages)
    np.testing.assert_array_equal(old.search(q, 5)[1], before[1])


def test_half_written_directory_without_manifest_is_refused(built):
    index, _ = built
    (index.path / MANIFEST_NAME).unlink()
    with pytest.raises(InputError, match="manifest"):
        PassageIndex.load(index.path)


def test_mismatched_retriever_is_refused(built):
    index, r = built
    with pytest.raises(ModelError, match="rebuild"):
        PassageIndex.load(index.path, retriever=make_tiny_retriever(seed=1))  # other weights
    with pytest.raises(ModelError, match="pooling"):
        PassageIndex.load(index.path, retriever=make_tiny_retriever(seed=0, pooling="cls"))
    with pytest.raises(ModelError, match="normalize"):
        PassageIndex.load(index.path, retriever=make_tiny_retriever(seed=0, normalize=True))
    PassageIndex.load(index.path, retriever=make_tiny_retriever(seed=0))  # same weights and options: fine
    # a query-only trained retriever keeps the passage side, so the old index stays valid
    q_only = make_tiny_retriever(seed=0, query_only=True)
    with torch.no_grad():
        for p in q_only.query_encoder.parameters():
            p.mul_(1.1)
    PassageIndex.load(index.path, retriever=q_only)


@pytest.mark.parametrize("name", ["index.faiss", "passages.sqlite"])
def test_corrupted_or_truncated_files_are_refused(built, name):
    index, _ = built
    path = index.path / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for verify in (True, False):  # a size check, free: also without the hashing
        with pytest.raises(InputError, match="truncated") as err:
            PassageIndex.load(index.path, verify=verify)
        assert name in str(err.value)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="corrupted"):
        PassageIndex.load(index.path)


def test_k_larger_than_corpus_warns_and_returns_all(tmp_path, tiny_retriever):
    ps = synthetic_passages(7)
    index = PassageIndex.build(ps, tiny_retriever, tmp_path / "small", progress=False)
    q = tiny_retriever.encode_queries(["river?", "castle?"])
    with pytest.warns(UserWarning, match="k=50"):
        scores, rows = index.search(q, 50)
    assert rows.shape == (2, 7) and sorted(rows[0].tolist()) == list(range(7))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(index.retrieve(tiny_retriever, ["x"], 50)[0]) == 7
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="k"):
            index.search(q, bad)
    with pytest.raises(ModelError, match="dimension"):
        index.search(np.zeros((1, tiny_retriever.dim + 1), np.float32), 3)


def test_bad_inputs(tmp_path, tiny_retriever):
    with pytest.raises(InputError, match="empty"):
        PassageIndex.build([], tiny_retriever, tmp_path / "e", progress=False)
    dup = [Passage("a", "", "river"), Passage("a", "", "castle")]
    with pytest.raises(InputError, match="'a'"):
        PassageIndex.build(dup, tiny_retriever, tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a ragdistill index"):
        PassageIndex.build(synthetic_passages(3), tiny_retriever, tmp_path / "notes", progress=False)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="faiss_type"):
        PassageIndex.build(
            synthetic_passages(3), tiny_retriever, tmp_path / "f", faiss_type="NoSuchIndex", progress=False
        )


def test_ivf_and_hnsw_factory_strings(tmp_path, tiny_retriever):
    ps = synthetic_passages(400, seed=3)
    r = tiny_retriever
    q = r.encode_queries(synthetic_questions(ps, 20))
    _, exact = brute_force(q, r.encode_passages(ps), 1)
    ivf = PassageIndex.build(ps, r, tmp_path / "ivf", faiss_type="IVF8,Flat", progress=False, chunk_size=64)
    assert ivf.manifest["faiss_class"] == "IndexIVFFlat" and len(ivf) == 400
    ivf.set_search_params("nprobe=8")  # all lists: exact
    assert (ivf.search(q, 1)[1] == exact).all()
    hnsw = PassageIndex.build(ps, r, tmp_path / "hnsw", faiss_type="HNSW16", progress=False)
    assert hnsw.manifest["faiss_class"] == "IndexHNSWFlat"
    assert (hnsw.search(q, 1)[1] == exact).mean() >= 0.9
    loaded = PassageIndex.load(tmp_path / "ivf", retriever=r)
    loaded.set_search_params("nprobe=8")
    assert (loaded.search(q, 1)[1] == exact).all()
    with pytest.raises(ConfigError, match="search_params"):
        loaded.set_search_params("nosuchparam=3")


def test_too_many_ivf_lists_suggests_a_smaller_value(tmp_path, tiny_retriever):
    ps = synthetic_passages(100)
    with pytest.raises(ConfigError, match=r"IVF2\b") as err:
        PassageIndex.build(ps, tiny_retriever, tmp_path / "x", faiss_type="IVF256,Flat", progress=False)
    assert "100 passages" in str(err.value)
    # the same check when the corpus is a stream (its length known only at the end)
    with pytest.raises(ConfigError, match="IVF2,Flat"):
        PassageIndex.build(iter(ps), tiny_retriever, tmp_path / "x", faiss_type="IVF256,Flat", progress=False)
    assert not (tmp_path / "x").exists()


def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_refresh_follows_new_weights(built, passages, tmp_path):
    index, r = built
    qs = synthetic_questions(passages, 15)
    old_rows = index.search(r.encode_queries(qs), 5)[1]
    perturb(r.query_encoder)  # shared encoder: both sides change
    stale = index.search(r.encode_queries(qs), 5)[1]
    stats = index.refresh(r, batch_size=16)
    assert stats["passages"] == len(passages) and stats["passages_per_s"] > 0 and stats["seconds"] > 0
    assert index.dirty
    q = r.encode_queries(qs)
    _, want = brute_force(q, r.encode_passages(passages), 5)
    fresh = index.search(q, 5)[1]
    assert (fresh == want).mean() > 0.95
    assert not np.array_equal(fresh, old_rows) and not np.array_equal(fresh, stale)
    # the saved copy carries the new fingerprint: the new retriever loads it, the old one is refused
    index.save(tmp_path / "refreshed")
    PassageIndex.load(tmp_path / "refreshed", retriever=r)
    with pytest.raises(ModelError):
        PassageIndex.load(tmp_path / "refreshed", retriever=make_tiny_retriever(seed=0))


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_refresh_equals_full_refresh(tmp_path, tiny_retriever, world):
    ps = synthetic_passages(101, seed=5)  # not divisible by 2 or 3
    r = tiny_retriever
    full = PassageIndex.build(ps, r, tmp_path / "full", progress=False)
    perturb(r.query_encoder, seed=1)
    full.refresh(r)
    blocks = [full.embed_shard(r, (rank, world)) for rank in range(world)]
    assert sum(len(b) for b in blocks) == len(ps)
    q = r.encode_queries(synthetic_questions(ps, 10))
    want = full.search(q, 10)
    for rank in range(world):
        part = PassageIndex.load(tmp_path / "full")  # stale copy on this "process"
        seen = {}

        def gather(local, rank=rank, seen=seen):
            seen["local"] = local
            return blocks  # what every rank receives: all blocks in rank order

        stats = part.refresh(r, shard=(rank, world), gather=gather)
        start, stop = shard_bounds(len(ps), rank, world)
        assert stats["local_passages"] == stop - start
        np.testing.assert_allclose(seen["local"], blocks[rank], atol=1e-6)
        got = part.search(q, 10)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_sharding_api_errors(built):
    index, r = built
    with pytest.raises(ConfigError, match="gather"):
        index.refresh(r, shard=(0, 2))
    with pytest.raises(ConfigError, match="shard"):
        index.refresh(r, shard=(2, 2), gather=lambda x: [x, x])
    with pytest.raises(ConfigError, match="gather"):
        index.refresh(r, shard=(0, 2), gather=lambda x: [x])
    assert [shard_bounds(10, i, 3) for i in range(3)] == [(0, 4), (4, 7), (7, 10)]


def test_refresh_keeps_ivf_training_or_retrains(tmp_path, tiny_retriever):
    ps = synthetic_passages(300, seed=2)
    r = tiny_retriever
    index = PassageIndex.build(ps, r, tmp_path / "ivf", faiss_type="IVF4,Flat", progress=False)
    perturb(r.query_encoder, seed=3)
    q = r.encode_queries(synthetic_questions(ps, 10))
    _, exact = brute_force(q, r.encode_passages(ps), 1)
    for retrain in (False, True):
        index.refresh(r, retrain=retrain)
        index.set_search_params("nprobe=4")
        assert len(index) == 300 and (index.search(q, 1)[1] == exact).all()


@pytest.mark.parametrize("spec", ["IVF4,PQ8", "PQ8", "OPQ8,IVF4,PQ8"])
def test_pq_indexes_skip_polysemous_training(spec):
    """FAISS trains polysemous codes for PQ by default: most of train()'s time, never used by search here."""
    import faiss

    from ragdistill.retrieval.index import make_faiss_index

    index = make_faiss_index(32, spec)
    inner = [faiss.downcast_index(index)]
    try:
        inner.append(faiss.downcast_index(faiss.extract_index_ivf(index)))
    except RuntimeError:
        pass
    flags = [x.do_polysemous_training for x in inner if hasattr(x, "do_polysemous_training")]
    assert flags and not any(flags)


@pytest.mark.parametrize("nq", [1, 3, 15, 16, 64, 300])
def test_flat_search_equals_faiss_indexflatip_at_every_batch_size(nq):
    """PassageIndex.search picks FAISS's BLAS or per-query kernel by batch size: the same top k as IndexFlatIP."""
    import faiss

    from ragdistill.retrieval.index import PassageIndex

    rng = np.random.default_rng(nq)
    x = rng.standard_normal((3000, 24), dtype=np.float32)
    q = rng.standard_normal((nq, 24), dtype=np.float32)
    flat = faiss.IndexFlatIP(24)
    flat.add(x)
    ref = faiss.IndexFlatIP(24)
    ref.add(x)
    before = faiss.cvar.distance_compute_blas_threshold
    scores, rows = PassageIndex(flat, None, {"model": "synthetic"}).search(q, 10)
    assert faiss.cvar.distance_compute_blas_threshold == before  # the process-wide setting is restored
    want_s, want_r = ref.search(q, 10)
    np.testing.assert_array_equal(rows, want_r)
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    exact = q.astype(np.float64) @ x.T.astype(np.float64)
    np.testing.assert_array_equal(rows, np.argsort(-exact, axis=1)[:, :10])

"""Dense passage index: FAISS over retriever embeddings, passages in an on-disk store.

A saved index is a directory::

    index.faiss       the FAISS index (row i = passage row i)
    passages.sqlite   the passages (see store.py), so the corpus text stays on disk
    manifest.json     retriever fingerprint (model, pooling, normalize, dim, weights),
                      passage count, corpus checksum, FAISS type, sha256 and size of both files

It is written through `atomic_dir`: until the very end of a build nothing exists at the
target path (or the previous index stays whole), so an interrupted build never leaves
an index that loads. `load` treats both data files alike, before anything is searched:
their sizes are always compared with the manifest (free: catches truncated or grown
files even with ``verify=False``), and with ``verify=True`` (the default) their sha256
too (bit flips), both files hashed in parallel. ``verify=False`` (``ragdistill retrieve
--no-verify``) skips only the hashing, for indexes too large to read on every load; a
passage store damaged inside is then reported when a damaged page is read. Given a
retriever, `load` also checks that it produces the embeddings the index was built with.
After `refresh` the passage store is unchanged; `save` copies it while hashing it and
refuses to write a manifest for a store that no longer matches its recorded sha256.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragdistill.data.types import Passage
from ragdistill.errors import ConfigError, InputError, ModelError
from ragdistill.retrieval.store import STORE_NAME, DuplicatePassageId, PassageStore
from ragdistill.utils.faults import maybe_fault
from ragdistill.utils.io import atomic_dir, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from ragdistill.retrieval.retriever import BiEncoderRetriever

log = logging.getLogger(__name__)

INDEX_NAME = "index.faiss"
MANIFEST_NAME = "manifest.json"
FORMAT = "ragdistill-index"
FORMAT_VERSION = 1
DEFAULT_CHUNK = 10_000
# Flat indexes: from this many queries per call, FAISS's BLAS path (one GEMM per block + heaps) is used; below it
# FAISS's per-query scan. faiss-cpu 1.15 ships distance_compute_blas_threshold = 128000, so without this a batch of
# 64 queries took the per-query scan and lost to numpy brute force (BENCHMARKS.md, issue 19).
FLAT_BLAS_MIN_QUERIES = 16


@dataclass(frozen=True)
class Retrieved:
    """One retrieved passage: its score s(n, Q) and rank (1 = best); `row` is its FAISS row."""

    passage: Passage
    score: float
    rank: int
    row: int = -1


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [start, stop) of shard `rank` when n rows are split into `world_size` contiguous parts."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError("shard", f"shard (rank={rank}, world_size={world_size}) needs 0 <= rank < world_size")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _ivf_nlist(index: Any) -> int | None:
    import faiss

    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError, TypeError):
        return None


def _smaller_nlist(n: int) -> int:
    """Largest power of two with about 39 training points per list (faiss's lower bound)."""
    target = max(1, n // 39)
    return 1 << (target.bit_length() - 1)


def make_faiss_index(dim: int, faiss_type: str = "Flat") -> Any:
    """An empty inner-product FAISS index: IndexFlatIP for "Flat", else `faiss.index_factory`."""
    import faiss

    spec = (faiss_type or "Flat").strip()
    if spec == "Flat":
        return faiss.IndexFlatIP(dim)
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        detail = next((line for line in reversed(msg) if line.strip()), "") if msg else ""
        raise ConfigError(
            "faiss_type",
            f"FAISS cannot build '{spec}' for dimension {dim} ({detail}). "
            "Use 'Flat' (exact), or an index_factory string such as 'HNSW32', 'IVF256,Flat', 'IVF4096,PQ64'.",
        ) from None
    _no_polysemous_training(index)
    return index


def _no_polysemous_training(index: Any) -> None:
    """IVF-PQ: skip FAISS's polysemous-code training (most of train() time; search never uses it here)."""
    import faiss

    candidates = [faiss.downcast_index(index)]
    try:
        candidates.append(faiss.downcast_index(faiss.extract_index_ivf(index)))
    except RuntimeError:
        pass  # not an IVF index
    for inner in candidates:
        if hasattr(inner, "do_polysemous_training"):
            inner.do_polysemous_training = False


def _located_duplicate(exc: DuplicatePassageId, passages: Any) -> InputError:
    """The duplicate-id error with the file and line of both passages when they came from a corpus file."""
    locate = getattr(passages, "locate", None)
    if locate is None:
        return exc
    first, second = locate(exc.first), locate(exc.second)
    if second is None:
        return exc
    return second.error(passages.path, f"duplicate passage id '{exc.passage_id}' (first at {first}): {exc.HINT}")


def _check_trainable(index: Any, n: int, spec: str) -> None:
    nlist = _ivf_nlist(index)
    if nlist is not None and n < nlist:
        smaller = _smaller_nlist(n)
        raise ConfigError(
            "faiss_type",
            f"'{spec}' asks for {nlist} IVF lists but the corpus has only {n} passages to train them "
            f"(at least one point per list is needed, faiss recommends 39): use IVF{smaller} "
            f"(e.g. '{spec.replace(f'IVF{nlist}', f'IVF{smaller}', 1)}') or 'Flat'.",
        )


def _train(index: Any, emb: np.ndarray, spec: str, train_size: int | None, seed: int) -> None:
    """Train `index` on a seeded random sample of the rows of `emb` (may be a memmap)."""
    n = emb.shape[0]
    _check_trainable(index, n, spec)
    nlist = _ivf_nlist(index) or 1
    m = min(n, train_size or max(65_536, 256 * nlist))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    sample = np.ascontiguousarray(emb[rows], dtype=np.float32)
    log.info("training FAISS '%s' on %d of %d embeddings", spec, m, n)
    try:
        index.train(sample)
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(
            "faiss_type",
            f"FAISS could not train '{spec}' on {m} passages ({lines[-1] if lines else exc}). "
            "A smaller index (fewer IVF lists, fewer PQ bits) or 'Flat' suits a small corpus.",
        ) from None


def _add(index: Any, emb: np.ndarray, chunk: int = 65_536) -> None:
    for i in range(0, emb.shape[0], chunk):
        index.add(np.ascontiguousarray(emb[i : i + chunk], dtype=np.float32))


DATA_FILES = (INDEX_NAME, STORE_NAME)


def _sha256_files(paths: Sequence[Path]) -> list[str]:
    """sha256 of several files at once (hashlib releases the GIL: the files are read and hashed in parallel)."""
    if len(paths) < 2:
        return [sha256_file(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        return list(pool.map(lambda p: sha256_file(p, chunk=1 << 23), paths))


def _copy_with_sha256(src: Path, dst: Path, chunk: int = 1 << 23) -> str:
    """Copy `src` to `dst` and return the sha256 of the bytes copied (one read of the file)."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(chunk):
            h.update(block)
            fout.write(block)
    return h.hexdigest()


def _file_entries(directory: Path, known: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """The manifest's "files" (sha256) and "file_sizes" (bytes) of the data files in `directory`."""
    known = known or {}
    todo = [name for name in DATA_FILES if name not in known]
    shas = dict(known, **dict(zip(todo, _sha256_files([directory / name for name in todo]))))
    return {name: shas[name] for name in DATA_FILES}, {name: (directory / name).stat().st_size for name in DATA_FILES}


def _verify_files(path: Path, manifest: dict[str, Any], mpath: Path, verify: bool) -> None:
    """Refuse a missing, resized or (with `verify`) altered data file, naming it; nothing is read before this."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise InputError('index manifest lists no file checksums ("files"); rebuild the index', mpath)
    sizes = manifest.get("file_sizes") or {}  # absent in manifests written before sizes were recorded
    for name in files:
        fpath = path / name
        if not fpath.is_file():
            raise InputError("file listed in manifest.json is missing: the index is incomplete; rebuild it", fpath)
        want = sizes.get(name) if isinstance(sizes, dict) else None
        if not isinstance(want, int) and want is not None:
            raise InputError(f"index manifest records a size of {want!r} for {name}; rebuild the index", mpath)
        if want is not None and fpath.stat().st_size != want:
            raise InputError(
                f"file has {fpath.stat().st_size} bytes but manifest.json records {want} (truncated or corrupted): "
                "rebuild the index",
                fpath,
            )
    if verify:
        names = list(files)
        for name, got in zip(names, _sha256_files([path / name for name in names])):
            if got != files[name]:
                raise InputError(
                    "file does not match its sha256 in manifest.json (corrupted or truncated): rebuild the index",
                    path / name,
                )


def _is_flat(index: Any) -> bool:
    import faiss

    return isinstance(faiss.downcast_index(index), faiss.IndexFlat)


def _flat_search(index: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact search of a flat index with the faster FAISS kernel for the batch size (same results either way).

    `faiss.cvar.distance_compute_blas_threshold` is process-wide: it is set for this call and restored.
    """
    import faiss

    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1 if q.shape[0] >= FLAT_BLAS_MIN_QUERIES else max(old, q.shape[0] + 1)
    try:
        return index.search(q, k)
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


def _passage_digest_update(h: hashlib._Hash, chunk: Sequence[Passage]) -> None:
    for p in chunk:
        h.update(f"{p.id}\t{p.title}\t{p.text}\n".encode())


def built_with(index_dir: str | Path) -> tuple[str | None, dict[str, Any]]:
    """(retriever name, its settings) recorded in an index's manifest: what to embed queries with to match it.

    The settings are those `BiEncoderRetriever.from_pretrained` takes (pooling, max_length, normalize, shared,
    query_only); (None, {}) when the manifest is missing or does not say (`PassageIndex.load` reports why)."""
    try:
        rec = json.loads((Path(index_dir) / MANIFEST_NAME).read_text())["retriever"]
        keys = ("pooling", "max_length", "normalize", "shared", "query_only")
        return rec["source"], {k: rec[k] for k in keys if rec.get(k) is not None}
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}


class PassageIndex:
    """A FAISS index plus its passage store and manifest; build with `build`, open with `load`."""

    def __init__(self, index: Any, store: PassageStore, manifest: dict[str, Any], path: Path | None = None):
        self.index = index
        self.store = store
        self.manifest = manifest
        self.path = path
        self.dirty = False  # True after a refresh that has not been saved

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        passages: Iterable[Passage],
        retriever: BiEncoderRetriever,
        out_dir: str | Path,
        faiss_type: str = "Flat",
        batch_size: int = 64,
        chunk_size: int = DEFAULT_CHUNK,
        train_size: int | None = None,
        seed: int = 0,
        progress: bool = True,
        corpus_path: str | Path | None = None,
    ) -> PassageIndex:
        """Stream `passages` in chunks: store, embed and add them; write the directory atomically.

        Index types that need training (IVF, PQ) get their embeddings spooled to a
        temporary file first, then train on a seeded sample of `train_size` rows.
        `corpus_path` (optional) records the source file and its sha256 in the manifest.
        """
        import faiss
        from tqdm.auto import tqdm

        out_dir = Path(out_dir)
        if out_dir.exists() and (
            not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).exists())
        ):
            raise ConfigError(
                "out",
                f"{out_dir} exists and is not a ragdistill index: choose a new directory (it would be replaced whole)",
            )
        if chunk_size <= 0 or batch_size <= 0:
            raise ConfigError("batch_size", "batch and chunk sizes must be positive")
        spec = (faiss_type or "Flat").strip()
        dim = retriever.dim
        index = make_faiss_index(dim, spec)
        needs_training = not index.is_trained
        if needs_training and hasattr(passages, "__len__"):
            _check_trainable(index, len(passages), spec)  # fail before spending time on embeddings
        corpus_sha = sha256_file(corpus_path) if corpus_path is not None else None
        fingerprint = retriever.fingerprint()
        t0 = time.perf_counter()
        digest = hashlib.sha256()
        n = 0
        with atomic_dir(out_dir) as tmp:
            store = PassageStore.create(tmp / STORE_NAME)
            spool_path = tmp / "embeddings.spool"
            try:
                spool = open(spool_path, "wb") if needs_training else None
                bar = tqdm(desc=f"indexing {out_dir.name}", unit="passage", disable=not progress)
                try:
                    for chunk in _batched(passages, chunk_size):
                        store.add(chunk, n)
                        _passage_digest_update(digest, chunk)
                        emb = retriever.encode_passages(chunk, batch_size=batch_size)
                        if spool is not None:
                            spool.write(emb.tobytes())
                        else:
                            index.add(emb)
                        n += len(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
                    if spool is not None:
                        spool.close()
                if n == 0:
                    raise InputError("no passages to index: the corpus is empty", corpus_path)
                if needs_training:
                    emb = np.memmap(spool_path, dtype=np.float32, mode="r", shape=(n, dim))
                    _train(index, emb, spec, train_size, seed)
                    _add(index, emb)
                    del emb
                    spool_path.unlink()
                store.finish()
            except DuplicatePassageId as exc:
                store.close()
                raise _located_duplicate(exc, passages) from None
            except BaseException:
                store.close()
                raise
            faiss.write_index(index, str(tmp / INDEX_NAME))
            seconds = time.perf_counter() - t0
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "model": fingerprint["model"],
                "pooling": fingerprint["pooling"],
                "normalize": fingerprint["normalize"],
                "dim": dim,
                "passages": n,
                "corpus": {"path": str(corpus_path) if corpus_path is not None else None, "sha256": corpus_sha},
                "passages_sha256": digest.hexdigest(),
                "faiss_type": spec,
                "faiss_class": type(index).__name__,
                "metric": "inner_product",
                "retriever": fingerprint,
                "build": {
                    "seconds": round(seconds, 3),
                    "passages_per_s": round(n / seconds, 2) if seconds > 0 else None,
                    "batch_size": batch_size,
                    "seed": seed,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            }
            manifest["files"], manifest["file_sizes"] = _file_entries(tmp)
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        log.info("indexed %d passages into %s in %.1fs (%.1f passages/s)", n, out_dir, seconds, n / max(seconds, 1e-9))
        return cls(index, PassageStore.open(out_dir / STORE_NAME), manifest, out_dir)

    # ------------------------------------------------------------------ load / save
    @classmethod
    def load(cls, path: str | Path, retriever: BiEncoderRetriever | None = None, verify: bool = True) -> PassageIndex:
        """Open a saved index; refuse corrupted files and (given `retriever`) a mismatched retriever.

        Both data files (index.faiss, passages.sqlite) are checked alike before anything is read:
        their sizes always, their sha256 with `verify` (the default). `verify=False` skips the
        hashing (minutes for a Wikipedia-size index; a bit flip then goes unnoticed).
        """
        import faiss

        from ragdistill.retrieval.retriever import check_compatible

        path = Path(path)
        mpath = path / MANIFEST_NAME
        if not path.is_dir():
            raise InputError("no index directory here: build one with `ragdistill index`", path)
        if not mpath.is_file():
            raise InputError(
                "not a complete ragdistill index (manifest.json is missing; an interrupted build leaves none): rebuild it",
                path,
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable index manifest ({exc}); rebuild the index", mpath) from None
        if manifest.get("format") != FORMAT:
            raise InputError(f"not a ragdistill index manifest (format {manifest.get('format')!r})", mpath)
        _verify_files(path, manifest, mpath, verify)
        try:
            index = faiss.read_index(str(path / INDEX_NAME))
        except RuntimeError as exc:
            raise InputError(
                f"FAISS cannot read the index ({str(exc).strip().splitlines()[-1]}); rebuild it", path / INDEX_NAME
            ) from None
        store = PassageStore.open(path / STORE_NAME)
        n = int(manifest.get("passages", -1))
        if index.ntotal != n or len(store) != n:
            store.close()
            raise InputError(
                f"index holds {index.ntotal} vectors and {len(store)} passages but the manifest says {n}: rebuild it",
                path,
            )
        if index.d != int(manifest.get("dim", index.d)):
            store.close()
            raise InputError(f"index dimension {index.d} differs from the manifest's {manifest.get('dim')}", path)
        if retriever is not None:
            try:
                check_compatible(manifest.get("retriever", {}), retriever, where=f"index {path}")
            except ModelError:
                store.close()
                raise
        return cls(index, store, manifest, path)

    def save(self, out_dir: str | Path) -> Path:
        """Write the current index (e.g. after a refresh) to `out_dir`, atomically.

        The passage store is copied and hashed in one read; a store that no longer matches the
        sha256 recorded when it was built is refused (the new manifest would vouch for damage).
        """
        import faiss

        out_dir = Path(out_dir)
        if out_dir.exists() and (
            not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).exists())
        ):
            raise ConfigError("out", f"{out_dir} exists and is not a ragdistill index: choose a new directory")
        with atomic_dir(out_dir) as tmp:
            store_sha = _copy_with_sha256(self.store.path, tmp / STORE_NAME)
            recorded = (self.manifest.get("files") or {}).get(STORE_NAME)
            if recorded is not None and store_sha != recorded:
                raise InputError(
                    "passage store does not match its sha256 in manifest.json (changed or corrupted since the index was "
                    "built): not saving an index over it; rebuild the index",
                    self.store.path,
                )
            faiss.write_index(self.index, str(tmp / INDEX_NAME))
            manifest = dict(self.manifest)
            manifest["files"], manifest["file_sizes"] = _file_entries(tmp, known={STORE_NAME: store_sha})
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        self.store.close()
        self.store = PassageStore.open(out_dir / STORE_NAME)
        self.path = out_dir
        self.dirty = False
        return out_dir

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def get(self, rows: Iterable[int]) -> list[Passage]:
        """Passages of FAISS rows, in order."""
        return self.store.get(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows).ravel().tolist())

    def set_search_params(self, params: str) -> None:
        """FAISS search-time parameters, e.g. 'nprobe=32' (IVF) or 'efSearch=128' (HNSW)."""
        import faiss

        try:
            faiss.ParameterSpace().set_index_parameters(self.index, params)
        except RuntimeError as exc:
            raise ConfigError(
                "search_params",
                f"FAISS rejects '{params}' for {type(self.index).__name__}: {str(exc).strip().splitlines()[-1]}",
            ) from None

    # ------------------------------------------------------------------ search
    def search(self, query_emb: np.ndarray, k: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: (scores float32 [B,k], rows int64 [B,k]), best first.

        k larger than the index returns every passage, with a warning. Rows are -1
        where an approximate index finds fewer than k neighbours. Flat indexes use FAISS's
        BLAS kernel for batches of `FLAT_BLAS_MIN_QUERIES` or more queries and its per-query
        scan for smaller ones (the faster of the two for each; the same top k).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ConfigError("k", f"k must be a positive number of passages, got {k!r}")
        q = np.asarray(query_emb, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ModelError(
                f"query embeddings of shape {tuple(q.shape)} do not fit the index (dimension {self.dim}, "
                f"model {self.manifest.get('model')}): encode queries with the retriever the index was built with"
            )
        n = len(self)
        if k > n:
            warnings.warn(f"k={k} is larger than the index ({n} passages): returning all {n} passages", stacklevel=2)
            k = n
        q = np.ascontiguousarray(q)
        scores = np.empty((q.shape[0], k), dtype=np.float32)
        rows = np.empty((q.shape[0], k), dtype=np.int64)
        search = _flat_search if _is_flat(self.index) else (lambda index, x, kk: index.search(x, kk))
        for i in range(0, q.shape[0], batch_size):
            s, r = search(self.index, q[i : i + batch_size], k)
            scores[i : i + batch_size] = s
            rows[i : i + batch_size] = r
        return scores, rows

    def retrieve(
        self,
        retriever: BiEncoderRetriever,
        questions: Sequence[str],
        k: int,
        batch_size: int = 64,
        progress: bool = False,
    ) -> list[list[Retrieved]]:
        """Encode `questions` with the retriever's query side and return their top-k passages."""
        q = retriever.encode_queries(list(questions), batch_size=batch_size, progress=progress)
        scores, rows = self.search(q, k)
        valid = rows[rows >= 0]
        uniq = np.unique(valid)
        by_row = dict(zip(uniq.tolist(), self.store.get(uniq.tolist())))
        out: list[list[Retrieved]] = []
        for srow, rrow in zip(scores, rows):
            hits = [
                Retrieved(by_row[int(r)], float(s), rank, int(r))
                for rank, (s, r) in enumerate(((s, r) for s, r in zip(srow, rrow) if r >= 0), start=1)
            ]
            out.append(hits)
        return out

    # ------------------------------------------------------------------ refresh
    def embed_shard(
        self,
        retriever: BiEncoderRetriever,
        shard: tuple[int, int] = (0, 1),
        batch_size: int = 64,
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings of this shard's rows (a contiguous block, see `shard_bounds`) with the current weights."""
        from tqdm.auto import tqdm

        rank, world = shard
        start, stop = shard_bounds(len(self), rank, world)
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        pos = 0
        with tqdm(
            total=stop - start, desc=f"re-embedding (shard {rank}/{world})", unit="passage", disable=not progress
        ) as bar:
            for chunk in self.store.iter_range(start, stop, chunk_size):
                out[pos : pos + len(chunk)] = retriever.encode_passages(chunk, batch_size=batch_size)
                pos += len(chunk)
                bar.update(len(chunk))
        return out

    def refresh(
        self,
        retriever: BiEncoderRetriever,
        batch_size: int = 64,
        shard: tuple[int, int] | None = None,
        gather: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None,
        retrain: bool = False,
        seed: int = 0,
        progress: bool = False,
        save_to: str | Path | None = None,
    ) -> dict[str, Any]:
        """Re-embed every passage with the retriever's current weights and rebuild the FAISS index in memory.

        Distributed: each process passes ``shard=(rank, world_size)`` and embeds only its
        contiguous block of rows; ``gather(local) -> [block_0, ..., block_{world-1}]``
        (in rank order; e.g. ``lambda x: accelerate.utils.gather_object([x])``) combines
        them, and every process ends with the same full index. IVF/PQ indexes keep their
        trained quantiser unless ``retrain=True``. Returns seconds and passages/s.
        """
        import faiss

        rank, world = shard if shard is not None else (0, 1)
        n = len(self)
        if world > 1 and gather is None:
            raise ConfigError(
                "gather", "a sharded refresh needs a gather function that returns every rank's block in rank order"
            )
        if retriever.dim != self.dim:
            raise ModelError(f"retriever dimension {retriever.dim} differs from the index's {self.dim}")
        t0 = time.perf_counter()
        local = self.embed_shard(retriever, (rank, world), batch_size=batch_size, progress=progress)
        t_embed = time.perf_counter() - t0
        if world > 1:
            parts = list(gather(local))
            if len(parts) != world:
                raise ConfigError("gather", f"gather returned {len(parts)} blocks for world size {world}")
            for r, part in enumerate(parts):
                s, e = shard_bounds(n, r, world)
                if np.shape(part) != (e - s, self.dim):
                    raise ConfigError(
                        "gather", f"block {r} has shape {np.shape(part)}, expected {(e - s, self.dim)} (rank order?)"
                    )
            emb = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
        else:
            emb = local
        spec = self.manifest.get("faiss_type", "Flat")
        fresh = make_faiss_index(self.dim, spec)
        if not fresh.is_trained:
            if retrain:
                _train(fresh, emb, spec, None, seed)
            else:
                fresh = faiss.clone_index(self.index)
                fresh.reset()
        _add(fresh, emb)
        maybe_fault("index_refresh")
        self.index = fresh
        fp = retriever.fingerprint()
        self.manifest = dict(
            self.manifest, retriever=fp, model=fp["model"], pooling=fp["pooling"], normalize=fp["normalize"]
        )
        self.dirty = True
        seconds = time.perf_counter() - t0
        stats = {
            "seconds": seconds,
            "passages": n,
            "passages_per_s": n / seconds if seconds > 0 else float("inf"),
            "embed_seconds": t_embed,
            "local_passages": int(local.shape[0]),
            "rank": rank,
            "world_size": world,
        }
        log.info(
            "refreshed %d passages in %.1fs (%.1f passages/s, rank %d/%d)",
            n,
            seconds,
            stats["passages_per_s"],
            rank,
            world,
        )
        if save_to is not None:
            self.save(save_to)
        return stats


def directory_size(path: str | Path) -> int:
    """Bytes on disk of an index directory (for reports)."""
    return sum(os.path.getsize(p) for p in Path(path).rglob("*") if p.is_file())

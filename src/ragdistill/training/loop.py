"""The training loop: one explicit loop, ATLAS's shape, for every regime.

Each optimiser step::

    refresh the index if due (retriever-training regimes, RefreshSchedule)
    -> retrieve top-K from the (possibly stale) index
    -> reader forward  (LM loss; in `joint` with the attention signal, the same forward)
    -> signal S        (attention or perplexity, no grad)
    -> losses          reader LM loss and/or KL(p_gold || p_RETR) on retriever.score (with grad)
    -> backward        (gradient accumulation; a non-finite loss skips the step, counted)
    -> all-reduce grads, clip, optimiser + scheduler step
    -> log (metrics.jsonl, TensorBoard, tqdm) -> evaluate (held-out HR@k) -> monitor -> save

Regimes (DESIGN §4): ``joint`` trains reader and retriever together (separate learning
rates), ``reader`` fine-tunes the reader with the retriever fixed, ``retriever`` trains the
retriever against a frozen reader's signal.

Repeatability: the questions of step s are a function of (seed, s) (a fresh seeded
permutation per epoch), and the global RNGs are re-seeded from (seed, s, rank) at the start
of every step, so a run resumed from any checkpoint replays exactly the steps an unbroken
run would have taken. A checkpoint also stores the retriever weights the current index was
built with, so the stale index is rebuilt bit for bit on resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import resource
import signal as _signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ragdistill.data.types import Passage, Question
from ragdistill.errors import ConfigError, InputError, RagdistillError
from ragdistill.training import checkpoint as ckpt
from ragdistill.training.config import Config
from ragdistill.utils.faults import maybe_fault
from ragdistill.utils.io import atomic_file, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

PHASES = ("refresh", "retrieve", "reader", "signal", "retriever", "backward", "optim", "eval", "save")
COMPLETED = "completed.json"
# Config keys that may change between a run and its resumption (they do not change the computation).
RESUMABLE_CHANGES = ("train.log_every", "train.save_every", "train.keep_last", "eval.", "monitor.", "runtime.threads",
                     "description", "reader.max_new_tokens")


# --------------------------------------------------------------------------- data


@dataclass
class RunData:
    """Questions of each split and where the corpus is (passages are streamed into the index)."""

    corpus: str
    corpus_format: str | None
    chunk_words: int | None
    train: list[Question]
    dev: list[Question]
    test: list[Question]
    paths: dict[str, str] = field(default_factory=dict)


def resolve_data_paths(cfg: Config, out_dir: Path) -> dict[str, str]:
    """Data paths with ``demo`` replaced by files of the generated demo world (written once)."""
    paths = {k: getattr(cfg.data, k) for k in ("corpus", "train", "dev", "test")}
    if any(v == "demo" for v in paths.values()):
        from ragdistill.data.demo import write_demo_world

        demo_dir = out_dir / "demo_world"
        written = write_demo_world(demo_dir, seed=cfg.data.demo_seed)
        for k, v in paths.items():
            if v == "demo":
                if k not in written:
                    raise ConfigError(f"data.{k}", f"the demo world has no '{k}' file (it has {', '.join(written)})")
                paths[k] = str(written[k])
    return paths


def load_run_data(cfg: Config, out_dir: Path, dist=None) -> RunData:
    from ragdistill.data.questions import load_questions

    if dist is None or dist.is_main:
        paths = resolve_data_paths(cfg, out_dir)
    if dist is not None and dist.distributed:
        dist.barrier()
        if not dist.is_main:
            paths = resolve_data_paths(cfg, out_dir)  # files exist now: only resolves the names

    def take(split: str, limit: int) -> list[Question]:
        qs = load_questions(paths[split], format=cfg.data.questions_format)
        if split == "train":
            qs = [q for q in qs if q.answers and q.answers[0].strip()]
            if not qs:
                raise InputError("no training question has an answer to train on", paths[split])
        return qs[:limit] if limit else qs

    return RunData(
        corpus=paths["corpus"], corpus_format=cfg.data.corpus_format, chunk_words=cfg.data.chunk_words,
        train=take("train", cfg.data.max_train), dev=take("dev", cfg.data.max_dev), test=take("test", cfg.data.max_test),
        paths=paths,
    )


def batch_indices(step: int, micro: int, accum: int, per_process: int, world: int, rank: int, n: int, seed: int,
                  _cache: dict | None = None) -> list[int]:
    """Indices of the questions this process trains on at (step, micro-batch).

    Global example g = ((step * accum + micro) * world + rank) * per_process + j walks through
    a seeded random permutation of the n questions per epoch (epoch = g // n), so any step's
    batch is known without replaying the ones before it. With `world` processes of batch b,
    the union of their batches equals a single process's batch of world * b.
    """
    out = []
    base = ((step * accum + micro) * world + rank) * per_process
    for j in range(per_process):
        g = base + j
        epoch, pos = divmod(g, n)
        perm = None if _cache is None else _cache.get(epoch)
        if perm is None:
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen).tolist()
            if _cache is not None:
                _cache.clear()
                _cache[epoch] = perm
        out.append(perm[pos])
    return out


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1)[0])


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) for one step: dropout is then a function of (seed, step, rank)."""
    s = step_seed(seed, step, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state_json() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(objects: dict[str, Any] | None, js: dict[str, Any] | None) -> None:
    if objects:
        torch.set_rng_state(objects["torch"])
        if "cuda" in objects and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(objects["cuda"])
    if js:
        n = js["numpy"]
        np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
        p = js["python"]
        random.setstate((p[0], tuple(p[1]), p[2]))


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory of this process: CUDA max_memory_allocated on GPU, max RSS otherwise."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --------------------------------------------------------------------------- components


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_reader(cfg: Config, device: torch.device | None):
    from ragdistill.readers import get_reader

    opts: dict[str, Any] = dict(device=device, dtype=_dtype(cfg.reader.dtype), max_new_tokens=cfg.reader.max_new_tokens,
                                batch_size=cfg.eval.batch_size, trust_remote_code=cfg.reader.trust_remote_code)
    opts["max_prompt_tokens"] = cfg.reader.max_prompt_tokens
    return get_reader(cfg.reader.name, kind=cfg.reader.kind, **opts)


def build_retriever(cfg: Config, device: torch.device | None):
    from ragdistill.retrieval.retriever import CONFIG_NAME, BiEncoderRetriever

    r = cfg.retriever
    if (Path(r.name).expanduser() / CONFIG_NAME).is_file():  # a saved retriever keeps its own settings
        return BiEncoderRetriever.from_pretrained(r.name, query_only=r.query_only, device=device)
    return BiEncoderRetriever.from_pretrained(r.name, pooling=r.pooling, shared=r.shared, query_only=r.query_only,
                                              max_length=r.max_length, device=device)


def _set_trainable(module: torch.nn.Module, trainable: bool) -> list[torch.nn.Parameter]:
    module.requires_grad_(trainable)
    module.train(trainable)
    return [p for p in module.parameters() if p.requires_grad] if trainable else []


def _unique(params: Sequence[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


@dataclass
class RunState:
    """Everything about progress that a checkpoint must carry (JSON)."""

    step: int = 0
    index_step: int = 0
    skipped_steps: int = 0
    refreshes: int = 0
    examples: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    last_eval: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None


class _Phases:
    """Accumulates wall time per phase (synchronising CUDA so GPU work lands in its phase)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {p: 0.0 for p in PHASES}

    @contextlib.contextmanager
    def __call__(self, name: str):
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - t0

    def take(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds = {p: 0.0 for p in PHASES}
        return out


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Runs one training config into one run directory.

    Models, data and index are built from the config unless passed in (tests inject
    tiny models). ``run()`` returns the summary also written to ``completed.json``.
    """

    def __init__(self, cfg: Config, out_dir: str | Path, *, resume: bool = False, stop_if_poor: bool = False,
                 progress: bool = True, dist=None, reader=None, retriever=None, data: RunData | None = None,
                 monitor=None, config_source: str | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.resume = resume
        self.stop_if_poor = stop_if_poor
        self.progress = progress
        self.config_source = config_source
        if dist is None:
            from ragdistill.training.distributed import Dist

            dist = Dist(cfg.runtime.device, cfg.runtime.mixed_precision)
        self.dist = dist
        self.device = dist.device
        self.reader = reader
        self.retriever = retriever
        self.data = data
        self.monitor = monitor
        self.state = RunState()
        self.phases = _Phases(self.device)
        self._perm_cache: dict = {}
        self._index_snapshot: dict[str, torch.Tensor] | None = None
        self._fresh: tuple[int, Any, dict[str, torch.Tensor]] | None = None  # (step, index, weights) of the last eval index
        self._stop_requested: str | None = None
        self._resumed_from: Path | None = None
        self._writer = None
        self._metrics_file = None
        self.index = None

    # ------------------------------------------------------------------ paths
    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self) -> Path | None:
        """The checkpoint to resume from, after refusing to overwrite an existing run by accident."""
        existing = self.ckpt_root.is_dir() and any(True for _ in ckpt.list_checkpoints(self.ckpt_root))
        if (self.out / COMPLETED).is_file() and not self.resume:
            raise InputError("this run directory holds a finished run; choose another --out (or delete it)", self.out)
        if existing and not self.resume:
            raise InputError("this run directory already holds checkpoints: pass --resume to continue, or choose another --out",
                             self.out)
        if not self.resume:
            return None
        path = ckpt.latest_complete(self.ckpt_root)
        if path is None:
            if existing:
                log.warning("no intact checkpoint in %s: starting from step 0", self.ckpt_root)
            return None
        saved_cfg = self.out / "config.yaml"
        if saved_cfg.is_file():
            self._check_same_config(saved_cfg)
        return path

    def _check_same_config(self, saved_path: Path) -> None:
        import yaml

        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        now = self.cfg.to_dict()

        def flat(d, prefix=""):
            for k, v in d.items():
                if isinstance(v, dict) and k != "options":
                    yield from flat(v, f"{prefix}{k}.")
                else:
                    yield f"{prefix}{k}", v

        a, b = dict(flat(saved)), dict(flat(now))
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and not any(key == c or (c.endswith(".") and key.startswith(c)) for c in RESUMABLE_CHANGES):
                raise ConfigError(key, f"the run in {self.out} was started with {a.get(key)!r}, now {b.get(key)!r}: "
                                       "resume with the same config (or start a new --out)")

    def setup(self) -> None:
        cfg, dist = self.cfg, self.dist
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        resume_from = self._check_run_dir()
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", cfg.to_yaml())
        dist.barrier()
        if self.data is None:
            self.data = load_run_data(cfg, self.out, dist)
        if self.reader is None:
            self.reader = build_reader(cfg, self.device)
        if self.retriever is None:
            self.retriever = build_retriever(cfg, self.device)
        self._check_layers()
        reader_params = _set_trainable(self.reader.model, cfg.trains_reader)
        retriever_params = _set_trainable(self.retriever, cfg.trains_retriever)
        self.reader_params = _unique(reader_params)
        self.retriever_params = _unique(retriever_params)
        self.params = _unique(self.reader_params + self.retriever_params)
        from ragdistill.training.optim import build_optimizer, build_scheduler

        self.optimizer = build_optimizer(
            [("reader", self.reader_params, cfg.optim.lr_reader), ("retriever", self.retriever_params, cfg.optim.lr_retriever)],
            cfg.optim,
        )
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.steps)
        from ragdistill.retrieval.refresh import RefreshSchedule

        self.schedule = RefreshSchedule.parse(cfg.index.refresh, key="index.refresh")
        if cfg.signal.name == "attention" or cfg.train.regime != "reader":
            from ragdistill.signals import get_signal

            self.signal_fn = get_signal(cfg.signal.name)
        self._open_index()
        self._resumed_from = resume_from
        if resume_from is not None:
            self._restore(resume_from)
        self._open_logs()
        if self.monitor is None and cfg.monitor.every > 0:
            self.monitor = self._build_monitor()

    def _check_layers(self) -> None:
        """signal.layers must exist in the reader: refused before the index is built, naming the key."""
        layers = self.cfg.signal.layers
        if layers is None:
            return
        mc = getattr(self.reader.model, "config", None)
        n = None
        if getattr(self.reader, "kind", "decoder") == "fid":  # cross-attention lives in the decoder
            n = getattr(mc, "num_decoder_layers", None) or getattr(getattr(mc, "decoder", None), "num_hidden_layers", None)
        n = n or getattr(mc, "num_hidden_layers", None) or getattr(mc, "n_layer", None)
        if not n:
            return  # unknown architecture: the reader checks at the first step
        bad = [layer for layer in layers if not -n <= layer < n]
        if bad:
            raise ConfigError("signal.layers", f"layer(s) {bad} do not exist: the reader has {n} layers "
                                               f"(0..{n - 1}; negative indices count from the top)")

    _MONITOR_FIELDS = ("history", "failed_streak", "reference")

    def _monitor_state(self) -> dict[str, Any] | None:
        if self.monitor is None:
            return None
        out = {k: getattr(self.monitor, k) for k in self._MONITOR_FIELDS if hasattr(self.monitor, k)}
        try:
            json.dumps(out)
        except (TypeError, ValueError):
            return None
        return out

    def _build_monitor(self):
        try:
            from ragdistill.analysis.monitor import IndicatorMonitor
        except ImportError:
            log.warning("monitor.every > 0 but ragdistill.analysis.monitor is not available: the indicator monitor is off")
            return None
        return IndicatorMonitor(self.cfg, self.data.dev, self.index, self.retriever, out_dir=self.out / "monitor",
                                **dict(self.cfg.monitor.options))

    # ------------------------------------------------------------------ index
    def _open_index(self) -> None:
        from ragdistill.retrieval.index import PassageIndex

        cfg, dist = self.cfg, self.dist
        k = cfg.train.k
        if cfg.index.dir:
            self.index = PassageIndex.load(cfg.index.dir, retriever=self.retriever)
            if len(self.index) < k:
                raise ConfigError("train.k", f"k={k} passages per question, but the index {cfg.index.dir} holds only "
                                             f"{len(self.index)}: lower train.k or use a larger corpus")
            return
        index_dir = self.out / "index"
        if dist.is_main and not (index_dir / "manifest.json").is_file():
            from itertools import islice

            from ragdistill.data.corpus import iter_passages

            # k larger than the corpus is refused before any embedding is spent (reads at most k passages)
            n = sum(1 for _ in islice(iter_passages(self.data.corpus, format=self.data.corpus_format,
                                                    chunk_words=self.data.chunk_words), k))
            if n < k:
                raise ConfigError("train.k", f"k={k} passages per question, but the corpus {self.data.corpus} holds "
                                             f"only {n}: lower train.k or use a larger corpus")
            with self.phases("refresh"):
                PassageIndex.build(
                    iter_passages(self.data.corpus, format=self.data.corpus_format, chunk_words=self.data.chunk_words),
                    self.retriever, index_dir, faiss_type=cfg.index.faiss_type, batch_size=cfg.index.batch_size,
                    progress=self.progress, corpus_path=self.data.corpus,
                )
        dist.barrier()
        self.index = PassageIndex.load(index_dir, retriever=self.retriever)

    def _refresh_index(self, with_retriever=None, index=None) -> dict[str, Any]:
        """Re-embed the corpus with the current weights (sharded over processes) and remember them."""
        from ragdistill.training.distributed import refresh_index

        retriever = with_retriever or self.retriever
        info = refresh_index(index or self.index, retriever, self.dist, batch_size=self.cfg.index.batch_size,
                             progress=self.progress)
        if index is None:
            self._index_snapshot = {k: v.detach().clone().cpu() for k, v in retriever.passage_encoder.state_dict().items()}
        return info

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if not self.dist.is_main:
            return
        step = self.state.step
        kept = []
        if self.metrics_path.is_file() and self._resumed_from is not None:  # a fresh start keeps nothing
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if isinstance(rec, dict) and rec.get("step", 0) <= step:
                    kept.append(line)
        with atomic_file(self.metrics_path) as f:
            f.write("".join(line + "\n" for line in kept))
        self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = self.out / "tensorboard"
            purge = (step + 1 if self._resumed_from is not None else 0) if tb.is_dir() else None
            self._writer = SummaryWriter(log_dir=str(tb), purge_step=purge)  # drop events a killed run logged later
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()
        if self._writer is not None:
            prefix = record.get("kind", "train")
            for k, v in record.items():
                if k in ("step", "kind", "split") or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                self._writer.add_scalar(f"{prefix}/{k}" if "/" not in k else k, v, record["step"])
            self._writer.flush()

    def _close_logs(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path | None:
        cfg, dist = self.cfg, self.dist
        path = None
        with self.phases("save"):
            if dist.is_main:
                from ragdistill.training.optim import scheduler_state

                modules = {}
                if cfg.trains_reader:
                    modules["reader"] = self.reader.model
                if cfg.trains_retriever:
                    modules["retriever"] = self.retriever
                tensors = {}
                if cfg.trains_retriever and self._index_snapshot is not None:
                    tensors["index_passage_encoder"] = self._index_snapshot
                state = asdict(self.state)
                state.update(rng=rng_state_json(), world_size=dist.world_size, config_sha256=self.cfg.fingerprint())
                monitor_state = self._monitor_state()
                if monitor_state is not None:
                    state["monitor"] = monitor_state
                path = ckpt.save_checkpoint(
                    self.ckpt_root, self.state.step, modules=modules, tensors=tensors,
                    objects={"optimizer": self.optimizer.state_dict(), "scheduler": scheduler_state(self.scheduler),
                             "rng": rng_state()},
                    state=state, keep_last=cfg.train.keep_last,
                )
            dist.barrier()
        return path

    def _restore(self, path: Path) -> None:
        """Load checkpoint `path`, which `latest_complete` has just verified file by file (no second hashing)."""
        from ragdistill.training.optim import load_scheduler_state

        cfg = self.cfg
        state = ckpt.read_state(path, verified=True)
        if state.get("world_size", 1) != self.dist.world_size:
            raise ConfigError("runtime", f"checkpoint {path} was written by {state.get('world_size')} processes, now "
                                         f"{self.dist.world_size}: resume with the same number of processes (the data order depends on it)")
        if cfg.trains_reader:
            ckpt.load_module(path, "reader", self.reader.model, verified=True)
        if cfg.trains_retriever:
            ckpt.load_module(path, "retriever", self.retriever, verified=True)
        self.optimizer.load_state_dict(ckpt.load_object(path, "optimizer", verified=True))
        load_scheduler_state(self.scheduler, ckpt.load_object(path, "scheduler", verified=True))
        restore_rng(ckpt.load_object(path, "rng", verified=True), state.get("rng"))
        if self.monitor is None and cfg.monitor.every > 0:
            self.monitor = self._build_monitor()
        if self.monitor is not None and isinstance(state.get("monitor"), dict):
            for key, value in state["monitor"].items():   # history, streak and reference continue where they were
                setattr(self.monitor, key, value)
        known = {f for f in RunState.__dataclass_fields__}
        self.state = RunState(**{k: v for k, v in state.items() if k in known})
        if cfg.trains_retriever and self.state.index_step > 0:
            snap = ckpt.load_tensors(path, "index_passage_encoder", verified=True)
            twin = copy.deepcopy(self.retriever)
            twin.passage_encoder.load_state_dict(snap)
            with self.phases("refresh"):
                self._refresh_index(with_retriever=twin)
            del twin
        log.info("resumed from %s (step %d)", path, self.state.step)

    # ------------------------------------------------------------------ one step
    def _retrieve(self, questions: list[Question]) -> list[list[Passage]]:
        results = self.index.retrieve(self.retriever, [q.question for q in questions], self.cfg.train.k)
        out = [[r.passage for r in rs] for rs in results]
        for q, ps in zip(questions, out):
            if len(ps) < self.cfg.train.k:
                raise ConfigError("train.k", f"the index holds only {len(ps)} passages for '{q.id}', fewer than k={self.cfg.train.k}")
        return out

    def _signal_opts(self) -> dict[str, Any]:
        s = self.cfg.signal
        if s.name == "attention":
            return {"layers": s.layers, "value_norm": s.value_norm, "aggregation": s.aggregation}
        return {}

    def _losses(self, batch: list[Question], passages: list[list[Passage]]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        regime = cfg.train.regime
        qs = [q.question for q in batch]
        answers = [q.answers[0] for q in batch]
        out: dict[str, torch.Tensor] = {}
        S = None
        with self.dist.autocast():
            if regime in ("joint", "reader"):
                with self.phases("reader"):
                    if regime == "joint" and cfg.signal.name == "attention":
                        loss_r, atts = self.reader.lm_loss_and_attention(qs, passages, answers, **self._signal_opts())
                        S = torch.stack([a.passage_scores.float() for a in atts]).to(self.device)
                    else:
                        loss_r = self.reader.lm_loss(qs, passages, answers)
                out["reader_loss"] = loss_r
            if regime in ("joint", "retriever") and S is None:
                with self.phases("signal"), torch.no_grad():
                    S = torch.stack([
                        self.signal_fn(self.reader, q, ps, a, **self._signal_opts()).float().to(self.device)
                        for q, ps, a in zip(qs, passages, answers)
                    ])
            if regime in ("joint", "retriever"):
                from ragdistill.signals import distillation_loss

                with self.phases("retriever"):
                    scores = self.retriever.score(qs, passages)
                    out["retriever_loss"] = distillation_loss(scores.float(), S.detach(), cfg.retriever.temperature,
                                                              cfg.signal.tau_gold, mode=cfg.signal.mode)
        total = 0.0
        if "reader_loss" in out:
            total = total + cfg.train.reader_loss_weight * out["reader_loss"]
        if "retriever_loss" in out:
            total = total + cfg.train.retriever_loss_weight * out["retriever_loss"]
        out["loss"] = total
        return out

    def train_step(self) -> dict[str, Any]:
        cfg, dist, st = self.cfg, self.dist, self.state
        step = st.step
        if cfg.trains_retriever and step > st.index_step and self.schedule.is_due(step):
            with self.phases("refresh"):
                if self._fresh is not None and self._fresh[0] == step:
                    _, self.index, self._index_snapshot = self._fresh
                    info = {"adopted_eval_index": True}
                else:
                    info = self._refresh_index()
            self._fresh = None
            st.index_step = step
            st.refreshes += 1
            log.debug("index refreshed at step %d: %s", step, info)
        seed_step(cfg.train.seed, step, dist.rank)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        bad_batch = None
        accum = cfg.train.grad_accum
        for micro in range(accum):
            idx = batch_indices(step, micro, accum, cfg.train.batch_size, dist.world_size, dist.rank,
                                len(self.data.train), cfg.train.seed, self._perm_cache)
            batch = [self.data.train[i] for i in idx]
            with self.phases("retrieve"):
                passages = self._retrieve(batch)
            losses = self._losses(batch, passages)
            if dist.any_true(not bool(torch.isfinite(losses["loss"].detach()).all())):
                bad_batch = [q.id for q in batch]
                break
            with self.phases("backward"):
                (losses["loss"] / accum).backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
            st.examples += len(batch) * dist.world_size
        maybe_fault("step")
        record: dict[str, Any] = {}
        with self.phases("optim"):
            if bad_batch is None:
                dist.all_reduce_gradients(self.params)
                if cfg.optim.clip_grad_norm > 0:
                    norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.clip_grad_norm)
                else:
                    norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
                record["grad_norm"] = float(norm)
                if not math.isfinite(record["grad_norm"]):
                    bad_batch = ["<gradient norm is not finite>"]
            if bad_batch is None:
                self.optimizer.step()
            else:
                st.skipped_steps += 1
                log.warning("step %d skipped: non-finite loss or gradient on batch %s (%d skipped so far)",
                            step, ", ".join(map(str, bad_batch)), st.skipped_steps)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        st.step = step + 1
        if bad_batch is None:
            sums = {k: dist.mean_scalar(v) for k, v in sums.items()}
            st.loss_sum += sums.get("loss", 0.0)
            st.loss_count += 1
        record.update(sums)
        record["skipped"] = bad_batch is not None
        return record

    # ------------------------------------------------------------------ evaluation
    def _eval_index(self):
        """The index to evaluate with: the training one, or a fresh one when the retriever moved on."""
        if not (self.cfg.eval.fresh_index and self.cfg.trains_retriever) or self.state.index_step == self.state.step:
            return self.index
        if self._fresh is not None and self._fresh[0] == self.state.step:
            return self._fresh[1]       # already embedded with these weights (e.g. final eval after the last dev eval)
        import faiss

        from ragdistill.retrieval.index import PassageIndex

        fresh = PassageIndex(faiss.clone_index(self.index.index), self.index.store, dict(self.index.manifest), self.index.path)
        self._refresh_index(index=fresh)  # shares the read-only passage store; the training index is untouched
        # Same weights, same embeddings: a refresh due at this very step can adopt it instead of re-embedding.
        snapshot = {k: v.detach().clone().cpu() for k, v in self.retriever.passage_encoder.state_dict().items()}
        self._fresh = (self.state.step, fresh, snapshot)
        return fresh

    def evaluate(self, split: str | None = None, generate: bool | None = None, write_dir: Path | None = None,
                 desc: str = "eval") -> dict[str, Any]:
        from ragdistill.evaluation.evaluate import evaluate_questions, write_eval

        cfg = self.cfg
        split = split or cfg.eval.split
        questions = getattr(self.data, split)
        if not questions:
            return {}
        generate = cfg.eval.generate if generate is None else generate
        with self.phases("eval"):
            self.reader.model.eval()
            self.retriever.eval()
            try:
                index = self._eval_index()
                result = evaluate_questions(self.reader, self.retriever, index, questions, k=cfg.train.k, ks=cfg.eval.ks,
                                            batch_size=cfg.eval.batch_size, match=cfg.eval.match, generate=generate,
                                            progress=self.progress and self.dist.is_main, dist=self.dist, desc=desc)
            finally:
                self.reader.model.train(cfg.trains_reader)
                self.retriever.train(cfg.trains_retriever)
        if write_dir is not None and self.dist.is_main:
            write_eval(write_dir, result, info={"split": split, "step": self.state.step, "k": cfg.train.k,
                                                "reader": cfg.reader.name, "retriever": cfg.retriever.name})
        return result.metrics

    # ------------------------------------------------------------------ the loop
    def _request_stop(self, signum, frame) -> None:  # pragma: no cover - exercised by the CLI
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = "interrupted"
        log.warning("interrupt received: saving a checkpoint after this step (press Ctrl-C again to abort now)")

    def run(self) -> dict[str, Any]:
        """Train to `train.steps` (or an early stop), then save weights, evaluate and mark the run complete."""
        done = self.out / COMPLETED
        if self.resume and done.is_file():
            log.info("%s is already complete: nothing to resume", self.out)
            return json.loads(done.read_text(encoding="utf-8"))
        self.setup()
        cfg, dist, st = self.cfg, self.dist, self.state
        t_start = time.perf_counter()
        old_handler = None
        if dist.is_main:
            with contextlib.suppress(ValueError):  # not in the main thread
                old_handler = _signal.signal(_signal.SIGINT, self._request_stop)
        bar = None
        if self.progress and dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.train.steps, initial=st.step, desc=f"train {cfg.train.regime}", unit="step",
                       dynamic_ncols=True)
        try:
            if st.step == 0 and cfg.eval.every > 0:
                self._eval_and_log()
            t_log = time.perf_counter()
            steps_since = 0
            while st.step < cfg.train.steps:
                record = self.train_step()
                steps_since += 1
                if bar is not None:
                    bar.update(1)
                    post = {"loss": f"{record.get('loss', float('nan')):.4f}"}
                    hr = st.last_eval.get("hr@5")
                    if hr is not None:
                        post["hr@5"] = f"{hr:.3f}"
                    bar.set_postfix(post, refresh=False)
                if st.step % cfg.train.log_every == 0 or st.step == cfg.train.steps:
                    now = time.perf_counter()
                    timings = self.phases.take()
                    rec = {"step": st.step, "kind": "train", **{k: v for k, v in record.items() if k != "skipped"},
                           "loss_avg": st.loss_sum / max(1, st.loss_count),
                           "lr_reader": self._lr("reader"), "lr_retriever": self._lr("retriever"),
                           "steps_per_s": steps_since / max(1e-9, now - t_log),
                           "skipped_steps": st.skipped_steps, "refreshes": st.refreshes, "index_step": st.index_step,
                           "peak_mem_mb": peak_memory_mb(self.device)}
                    rec.update({f"time/{k}": v / steps_since for k, v in timings.items()})
                    self._log(rec)
                    st.loss_sum, st.loss_count = 0.0, 0
                    t_log, steps_since = now, 0
                if cfg.eval.every > 0 and st.step % cfg.eval.every == 0 and st.step < cfg.train.steps:
                    self._eval_and_log()
                if self.monitor is not None and cfg.monitor.every > 0 and st.step % cfg.monitor.every == 0:
                    self._run_monitor()
                stop = self._stop_requested or st.stopped_early
                stop = dist.broadcast_object(stop)
                save_due = cfg.train.save_every > 0 and st.step % cfg.train.save_every == 0
                if save_due or stop:
                    self.save()
                if stop:
                    break
            if self._stop_requested:
                log.warning("stopped at step %d on request; resume with --resume", st.step)
                return {"interrupted": True, "step": st.step}
            return self._finish(time.perf_counter() - t_start)
        finally:
            if bar is not None:
                bar.close()
            if old_handler is not None:
                _signal.signal(_signal.SIGINT, old_handler)
            self._close_logs()

    def _lr(self, group: str) -> float:
        for g in self.optimizer.param_groups:
            if g.get("name") == group:
                return float(g["lr"])
        return 0.0

    def _eval_and_log(self) -> None:
        metrics = self.evaluate(desc=f"eval@{self.state.step}")
        self.state.last_eval = metrics
        t = self.phases.seconds["eval"]
        self._log({"step": self.state.step, "kind": "eval", "split": self.cfg.eval.split, **metrics})

    def _run_monitor(self) -> None:
        result = None
        if self.dist.is_main:
            result = self.monitor.check(self.reader, self.state.step, retriever=self.retriever)
            if isinstance(result, dict):
                self._log({"step": self.state.step, "kind": "monitor",
                           **{k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})
            if self.stop_if_poor and self.monitor.should_stop():
                message = getattr(self.monitor, "stop_message", None)
                self.state.stopped_early = (message() if callable(message) else
                                            "the indicator monitor judged the reader's attention a poor teacher")
                log.warning("stopping early at step %d: %s", self.state.step, self.state.stopped_early)
        self.reader.model.train(self.cfg.trains_reader)

    def _finish(self, seconds: float) -> dict[str, Any]:
        cfg, dist, st = self.cfg, self.dist, self.state
        if cfg.train.save_every <= 0 or st.step % cfg.train.save_every != 0:
            self.save()  # the final state is always resumable
        final = {}
        if cfg.eval.every > 0 and not st.stopped_early:
            self._eval_and_log()
        in_sync = dist.in_sync(self.params) if dist.distributed else True
        if not in_sync:
            log.error("the processes ended with different weights: data-parallel training went out of sync")
        reader_path = cfg.reader.name
        retriever_path = cfg.retriever.name
        if dist.is_main:
            if cfg.trains_reader:
                self.reader.save_pretrained(self.out / "reader")
                reader_path = str(self.out / "reader")
            if cfg.trains_retriever:
                self.retriever.save_pretrained(self.out / "retriever")
                retriever_path = str(self.out / "retriever")
        dist.barrier()
        if cfg.eval.final:
            final = self.evaluate(split=cfg.eval.final_split, generate=True, write_dir=self.out / "eval",
                                  desc=f"final {cfg.eval.final_split}")
            self._log({"step": st.step, "kind": "final", "split": cfg.eval.final_split, **final})
        summary = {
            "name": cfg.name,
            "regime": cfg.train.regime,
            "steps": st.step,
            "skipped_steps": st.skipped_steps,
            "refreshes": st.refreshes,
            "stopped_early": st.stopped_early,
            "reader": reader_path,
            "retriever": retriever_path,
            "index": str(cfg.index.dir or self.out / "index"),
            "final_eval": final,
            "last_eval": st.last_eval,
            "seconds": round(seconds, 2),
            "peak_mem_mb": round(peak_memory_mb(self.device), 1),
            "world_size": dist.world_size,
            "ranks_in_sync": in_sync,
            "config_sha256": cfg.fingerprint(),
            "config_source": self.config_source,
        }
        if dist.is_main:
            atomic_write_json(self.out / COMPLETED, summary)
        dist.barrier()
        return summary


def train(cfg: Config, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Run `cfg` into `out_dir` (see `Trainer`)."""
    return Trainer(cfg, out_dir, **kwargs).run()

"""The training loop: one explicit loop, ATLAS's shape, for every regime. Each optimiser step::

    refresh the index if due (regimes that train the retriever) -> retrieve top-K from the (stale) index
    -> reader forward (LM loss; a signal read off that forward, e.g. attention, comes with it)
    -> signal S (the registered signal, no grad) -> losses: LM loss and/or KL(p_gold || p_RETR) on retriever.score
    -> backward (gradient accumulation; a non-finite loss skips the step, counted)
    -> all-reduce grads, clip, optimiser + scheduler step -> log -> evaluate -> monitor -> save

Which models train and which losses apply is the regime's (``ragdistill.config.REGIMES``, METHOD.md §4).
Rooms of their own: ``data`` (questions, batch order), ``rng`` (per-step seeds), ``build`` (models),
``indexing`` (the stale index, refreshes), ``rundir`` (guards, metrics log, completed marker), ``state``
(checkpoint contents), ``stop`` (stop on request), ``timing`` (phases, memory).

Repeatability: the questions of step s are a function of (seed, s) and the RNGs are re-seeded from
(seed, s, rank) every step, so a run resumed from any checkpoint replays what an unbroken run would.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch

from ragdistill.config import Config
from ragdistill.data.types import Passage, Question
from ragdistill.retrieval.refresh import RefreshSchedule
from ragdistill.signals import distillation_loss, get_signal_spec
from ragdistill.training import checkpoint as ckpt
from ragdistill.training import state as run_state
from ragdistill.training.build import build_monitor, build_reader, build_retriever, check_layers, set_trainable, unique
from ragdistill.training.data import RunData, batch_indices, load_run_data
from ragdistill.training.distributed import Dist, is_collective_failure, peer_lost
from ragdistill.training.evaluation import evaluate_run
from ragdistill.training.export import save_models, write_reader_card
from ragdistill.training.indexing import TrainingIndex
from ragdistill.training.optim import build_optimizer, build_scheduler
from ragdistill.training.rng import seed_step
from ragdistill.training.rundir import (
    MetricsLog,
    check_run_dir,
    lock_run_dir,
    read_completed,
    run_summary,
    write_completed,
    write_config,
)
from ragdistill.training.state import RunState
from ragdistill.training.stop import EXIT_CODES, StopRequest
from ragdistill.training.timing import Phases, peak_memory_mb
from ragdistill.utils.faults import maybe_fault

log = logging.getLogger(__name__)

__all__ = ["Trainer", "train"]


class Trainer:
    """Runs one training config into one run directory.

    Models, data and index are built from the config unless passed in (tests inject
    tiny models). ``run()`` returns the summary also written to ``completed.json``.
    """

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path,
        *,
        resume: bool = False,
        stop_if_poor: bool = False,
        progress: bool = True,
        dist=None,
        reader=None,
        retriever=None,
        data: RunData | None = None,
        monitor=None,
        config_source: str | None = None,
        deadline: float | None = None,
    ):
        self.cfg, self.regime = cfg, cfg.regime
        self.out = Path(out_dir)
        self.resume, self.stop_if_poor, self.progress = resume, stop_if_poor, progress
        self.config_source = config_source
        self.dist = (
            dist
            if dist is not None
            else Dist(cfg.runtime.device, cfg.runtime.precision, cfg.runtime.collective_timeout)
        )
        self.device = self.dist.device
        self.reader, self.retriever, self.data, self.monitor = reader, retriever, data, monitor
        self.state = RunState()
        self.phases = Phases(self.device)
        self.indexing = TrainingIndex(cfg, self.dist, self.phases, progress)
        self.logs = MetricsLog(self.out, enabled=self.dist.is_main, cfg=cfg)  # + runtime.log_with's trackers
        self._perm_cache: dict = {}
        self.stop = StopRequest(deadline)  # signals and --max-time (a stop.clock() deadline)
        self.lock = None  # the run directory's RunLock while run() runs

    @property
    def index(self):
        return self.indexing.index

    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg, dist, regime = self.cfg, self.dist, self.regime
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        resume_from = check_run_dir(self.out, cfg, self.resume)
        if dist.is_main:
            write_config(self.out, cfg)
        dist.barrier()
        if self.data is None:
            self.data = load_run_data(cfg, self.out, dist)
        if self.reader is None:
            self.reader = build_reader(cfg, self.device)
        if self.retriever is None:
            self.retriever = build_retriever(cfg, self.device)
        check_layers(cfg, self.reader)
        self.reader_params = unique(set_trainable(self.reader.model, regime.trains_reader))
        self.retriever_params = unique(set_trainable(self.retriever, regime.trains_retriever))
        self.params = unique(self.reader_params + self.retriever_params)
        self.optimizer = build_optimizer(
            [
                ("reader", self.reader_params, cfg.optim.lr_reader),
                ("retriever", self.retriever_params, cfg.optim.lr_retriever),
            ],
            cfg.optim,
        )
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.steps)
        self.schedule = RefreshSchedule.parse(cfg.index.refresh, key="index.refresh")
        self.signal = get_signal_spec(cfg.signal.name)
        self.signal_fn = self.signal.fn
        self.indexing.open(self.retriever, self.data, self.out)
        if resume_from is not None:
            self._build_monitor()
            run_state.restore(self, resume_from)
        self.logs.open(self.state.step, resumed=resume_from is not None)
        self._build_monitor()

    def _build_monitor(self) -> None:
        if self.monitor is None and self.cfg.monitor.every > 0:
            self.monitor = build_monitor(self.cfg, self.data.dev, self.index, self.retriever, self.out / "monitor")

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        cfg, dist, st = self.cfg, self.dist, self.state
        step = st.step
        if self.regime.needs_refresh and step > st.index_step and self.schedule.is_due(step):
            info = self.indexing.refresh_at(step, self.retriever)
            st.index_step = step
            st.refreshes += 1
            log.debug("index refreshed at step %d: %s", step, info)
        seed_step(cfg.train.seed, step, dist.rank)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        bad_batch = None
        accum = cfg.train.grad_accum
        for micro in range(accum):
            idx = batch_indices(
                step,
                micro,
                accum,
                cfg.train.batch_size,
                dist.world_size,
                dist.rank,
                len(self.data.train),
                cfg.train.seed,
                self._perm_cache,
            )
            batch = [self.data.train[i] for i in idx]
            with self.phases("retrieve"):
                passages = self.indexing.top_k(self.retriever, batch)
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
                log.warning(
                    "step %d skipped: non-finite loss or gradient on batch %s (%d skipped so far)",
                    step,
                    ", ".join(map(str, bad_batch)),
                    st.skipped_steps,
                )
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

    def _losses(self, batch: list[Question], passages: list[list[Passage]]) -> dict[str, torch.Tensor]:
        cfg, regime = self.cfg, self.regime
        qs, answers = [q.question for q in batch], [q.answers[0] for q in batch]
        opts = {key: getattr(cfg.signal, key) for key in self.signal.options}
        out: dict[str, torch.Tensor] = {}
        S = None
        with self.dist.autocast():
            if regime.reader_loss:
                with self.phases("reader"):
                    if regime.distillation_loss and self.signal.lm_forward:  # S from the LM loss's own forward
                        loss_r, atts = self.reader.lm_loss_and_attention(qs, passages, answers, **opts)
                        S = torch.stack([a.passage_scores.float() for a in atts]).to(self.device)
                    else:
                        loss_r = self.reader.lm_loss(qs, passages, answers)
                out["reader_loss"] = loss_r
            if regime.distillation_loss:
                if S is None:
                    with self.phases("signal"), torch.no_grad():  # batched forwards where the signal has them
                        S = self.signal.scores_batch(self.reader, qs, passages, answers, **opts).float().to(self.device)
                with self.phases("retriever"):
                    scores = self.retriever.score(qs, passages)
                    out["retriever_loss"] = distillation_loss(
                        scores.float(), S.detach(), cfg.retriever.temperature, cfg.signal.tau_gold, mode=cfg.signal.mode
                    )
        total = 0.0
        if "reader_loss" in out:
            total = total + cfg.train.reader_loss_weight * out["reader_loss"]
        if "retriever_loss" in out:
            total = total + cfg.train.retriever_loss_weight * out["retriever_loss"]
        out["loss"] = total
        return out

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train to `train.steps` (or an early stop), then save weights, evaluate and mark the run complete.

        The run directory is locked (rank 0) for the whole run; a collective that fails (a dead or hung process)
        ends every surviving process with `PeerLost`."""
        self.lock = lock_run_dir(self.dist, self.out)
        try:
            return self._run()
        except RuntimeError as exc:
            if not (self.dist.distributed and is_collective_failure(exc)):
                raise
            # torchrun SIGTERMs the survivors as soon as it sees a rank die: this process is ending with status 3
            # anyway, so it lets that signal pass (the launcher SIGKILLs after its grace) and says why it stopped
            with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            last = ckpt.latest_complete(self.ckpt_root) if self.ckpt_root.is_dir() else None
            raise peer_lost(self.dist, self.state.step, exc, str(last) if last else None) from exc
        finally:
            self._close_logs()  # also when setup failed after the log opened
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> dict[str, Any]:
        if self.resume and (done := read_completed(self.out)) is not None:
            log.info("%s is already complete: nothing to resume", self.out)
            return done
        self.setup()
        cfg, dist, st = self.cfg, self.dist, self.state
        t_start = time.perf_counter()
        bar = None
        if self.progress and dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=cfg.train.steps,
                initial=st.step,
                desc=f"train {cfg.train.regime}",
                unit="step",
                dynamic_ncols=True,
            )
        try:
            with self.stop.installed():
                if st.step == 0 and cfg.eval.every > 0:
                    self._eval_and_log()
                t_log, steps_since = time.perf_counter(), 0
                while st.step < cfg.train.steps:
                    t_iter = time.perf_counter()
                    record = self.train_step()
                    steps_since += 1
                    if bar is not None:
                        bar.update(1)
                        post = {"loss": f"{record.get('loss', float('nan')):.4f}"}
                        if (hr := st.last_eval.get("hr@5")) is not None:
                            post["hr@5"] = f"{hr:.3f}"
                        bar.set_postfix(post, refresh=False)
                    if st.step % cfg.train.log_every == 0 or st.step == cfg.train.steps:
                        now = time.perf_counter()
                        self._log_train(record, steps_since / max(1e-9, now - t_log), steps_since)
                        t_log, steps_since = now, 0
                    if cfg.eval.every > 0 and st.step % cfg.eval.every == 0 and st.step < cfg.train.steps:
                        self._eval_and_log()
                    if self.monitor is not None and cfg.monitor.every > 0 and st.step % cfg.monitor.every == 0:
                        self._run_monitor()
                    self.stop.observe_step(time.perf_counter() - t_iter)
                    if st.step < cfg.train.steps:
                        self.stop.time_is_up()
                    # any process's stop request stops all of them (a signal may reach only some); rank 0's early stop
                    asked = dist.gather_objects([(self.stop.reason, st.stopped_early)])
                    self.stop.reason = next((r for r, _ in asked if r), None)
                    stop = self.stop.reason or asked[0][1]
                    if (cfg.train.save_every > 0 and st.step % cfg.train.save_every == 0) or stop:
                        t_save = time.perf_counter()
                        self.save()
                        self.stop.observe_save(time.perf_counter() - t_save)
                    if stop:
                        break
                if self.stop.reason:
                    log.warning(
                        "stopped at step %d (%s): a checkpoint was saved; resume with --resume",
                        st.step,
                        self.stop.reason,
                    )
                    return {
                        "interrupted": True,
                        "step": st.step,
                        "reason": self.stop.reason,
                        "exit_code": EXIT_CODES.get(self.stop.reason, 130),
                    }
                return self._finish(time.perf_counter() - t_start)
        finally:
            if bar is not None:
                bar.close()
            self._close_logs()

    # ------------------------------------------------------------------ log, evaluate, monitor, save
    def _log_train(self, record: dict[str, Any], steps_per_s: float, steps: int) -> None:
        st = self.state
        timings = self.phases.take()
        rec = {
            "step": st.step,
            "kind": "train",
            **{k: v for k, v in record.items() if k != "skipped"},
            "loss_avg": st.loss_sum / max(1, st.loss_count),
            "lr_reader": self._lr("reader"),
            "lr_retriever": self._lr("retriever"),
            "steps_per_s": steps_per_s,
            "skipped_steps": st.skipped_steps,
            "refreshes": st.refreshes,
            "index_step": st.index_step,
            "peak_mem_mb": peak_memory_mb(self.device),
        }
        rec.update({f"time/{k}": v / steps for k, v in timings.items()})
        self.logs.log(rec)
        st.loss_sum, st.loss_count = 0.0, 0

    def _lr(self, group: str) -> float:
        return next((float(g["lr"]) for g in self.optimizer.param_groups if g.get("name") == group), 0.0)

    def _close_logs(self) -> None:
        self.logs.close()

    def evaluate(
        self,
        split: str | None = None,
        generate: bool | None = None,
        write_dir: Path | None = None,
        desc: str = "eval",
        final: bool = False,
    ) -> dict[str, Any]:
        """HR@k (and EM/F1 with generation) on a split; see `training.evaluation.evaluate_run`."""
        return evaluate_run(self, split=split, generate=generate, write_dir=write_dir, desc=desc, final=final)

    def _eval_and_log(self) -> None:
        metrics = self.evaluate(desc=f"eval@{self.state.step}")
        self.state.last_eval = metrics
        self.logs.log({"step": self.state.step, "kind": "eval", "split": self.cfg.eval.split, **metrics})

    def _run_monitor(self) -> None:
        st = self.state
        if self.dist.is_main:
            result = self.monitor.check(self.reader, st.step, retriever=self.retriever, index=self.index)
            if isinstance(result, dict):
                self.logs.log(
                    {
                        "step": st.step,
                        "kind": "monitor",
                        **{k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                    }
                )
            if self.stop_if_poor and self.monitor.should_stop():
                message = getattr(self.monitor, "stop_message", None)
                st.stopped_early = (
                    message()
                    if callable(message)
                    else "the indicator monitor judged the reader's attention a poor teacher"
                )
                log.warning("stopping early at step %d: %s", st.step, st.stopped_early)
        self.reader.model.train(self.regime.trains_reader)

    def save(self) -> Path | None:
        with self.phases("save"):
            path = run_state.save(self) if self.dist.is_main else None
            self.dist.barrier()
        return path

    def _finish(self, seconds: float) -> dict[str, Any]:
        cfg, dist, st = self.cfg, self.dist, self.state
        if cfg.train.save_every <= 0 or st.step % cfg.train.save_every != 0:
            self.save()  # the final state is always resumable
        if cfg.eval.every > 0 and not st.stopped_early:
            self._eval_and_log()
        in_sync = dist.in_sync(self.params) if dist.distributed else True
        if not in_sync:
            log.error("the processes ended with different weights: data-parallel training went out of sync")
        reader_path, retriever_path = save_models(self)
        final = {}
        if cfg.eval.final:
            final = self.evaluate(
                split=cfg.eval.final_split,
                generate=cfg.eval.final_generate,
                write_dir=self.out / "eval",
                desc=f"final {cfg.eval.final_split}",
                final=True,
            )
            self.logs.log({"step": st.step, "kind": "final", "split": cfg.eval.final_split, **final})
        write_reader_card(self, final)
        summary = run_summary(
            cfg,
            st,
            reader=reader_path,
            retriever=retriever_path,
            index=str(cfg.index.dir or self.out / "index"),
            final_eval=final,
            seconds=seconds,
            peak_mem_mb=peak_memory_mb(self.device),
            world_size=dist.world_size,
            ranks_in_sync=in_sync,
            config_source=self.config_source,
        )
        if dist.is_main:
            write_completed(self.out, summary)
        dist.barrier()
        return summary


def train(cfg: Config, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Run `cfg` into `out_dir` (see `Trainer`)."""
    return Trainer(cfg, out_dir, **kwargs).run()

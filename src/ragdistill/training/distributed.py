"""Data parallelism through Hugging Face accelerate: one process per GPU (or CPU worker).

Launch with ``accelerate launch --multi_gpu --num_processes 8 -m ragdistill train ...``
(GPUs; add ``--num_machines/--machine_rank/--main_process_ip`` for several nodes) or
``torchrun --nproc_per_node 2 -m ragdistill train ...`` (CPU, gloo backend). A single
plain ``ragdistill train`` is one process and needs none of this.

Why gradients are all-reduced here rather than by wrapping the models in DDP: the
training loop calls the models through their own methods (``retriever.score``,
``reader.lm_loss_and_attention``), not through ``forward``, and DDP only synchronises
what passes through the wrapper's ``forward``. Averaging the gradients explicitly after
the backward pass is exactly DDP's arithmetic (mean over processes), bucketed the same
way, and works for any call path. The index refresh is sharded: each process embeds a
contiguous block of the passages (`PassageIndex.refresh(shard=...)`) and the blocks are
all-gathered, so every process ends with the same full index.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ragdistill.errors import RagdistillError

log = logging.getLogger(__name__)

_BUCKET_BYTES = 25 * 1024 * 1024


class Dist:
    """Rank, world size, device and the few collectives the loop needs (no-ops in one process)."""

    def __init__(self, device: str = "auto", precision: str = "fp32", collective_timeout: float = 600.0):
        import datetime

        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        from ragdistill.utils.precision import resolve_precision

        use_cpu = device == "cpu" or not torch.cuda.is_available()
        handlers = [InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=collective_timeout))]
        # autocast is ours (`autocast`), so 'auto' can resolve per device
        self.accelerator = Accelerator(cpu=use_cpu, kwargs_handlers=handlers)
        self.collective_timeout = collective_timeout
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.local_rank = self.accelerator.local_process_index
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        # the precision actually used: 'fp32', 'bf16' or 'fp16' ('auto' resolved for this device; the old
        # 'no' means fp32)
        self.precision = resolve_precision("fp32" if precision == "no" else precision, self.device)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def mixed_precision(self) -> str:
        """The old name: 'no' | 'bf16' | 'fp16'."""
        return "no" if self.precision == "fp32" else self.precision

    def autocast(self):
        """Autocast of the forward passes in the resolved precision (a no-op for fp32); weights stay as they are."""
        from ragdistill.utils.precision import autocast

        return autocast(self.precision, self.device)

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def any_true(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any of them (e.g. a non-finite loss)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean_scalar(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world_size

    def broadcast_object(self, obj: Any) -> Any:
        """The main process's `obj` on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, items: list[Any]) -> list[Any]:
        """Concatenation of every process's `items` (process order)."""
        if not self.distributed:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def all_reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Average gradients over processes in ~25 MB buckets (DDP's arithmetic)."""
        if not self.distributed:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        bucket: list[torch.Tensor] = []
        size = 0
        for g in grads + [None]:  # type: ignore[list-item]
            if g is not None and (
                not bucket or (size + g.numel() * g.element_size() <= _BUCKET_BYTES and g.dtype == bucket[0].dtype)
            ):
                bucket.append(g)
                size += g.numel() * g.element_size()
                continue
            if bucket:
                flat = _flatten_dense_tensors(bucket)
                torch.distributed.all_reduce(flat)
                flat.div_(self.world_size)
                for dst, src in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                    dst.copy_(src)
            bucket = [g] if g is not None else []
            size = g.numel() * g.element_size() if g is not None else 0

    def in_sync(self, params: Sequence[torch.nn.Parameter]) -> bool:
        """True when every process holds bit-identical `params` (a cheap end-of-run sanity check)."""
        import hashlib

        h = hashlib.sha256()
        for p in params:
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        digests = self.gather_objects([h.hexdigest()])
        return len(set(digests)) == 1

    def gather_blocks(self, local: np.ndarray) -> list[np.ndarray]:
        """Every process's [n_r, D] float32 block, in rank order (blocks may differ in length)."""
        local = np.ascontiguousarray(local, dtype=np.float32)
        if not self.distributed:
            return [local]
        dim = local.shape[1]
        n = torch.tensor([local.shape[0]], dtype=torch.long, device=self.device)
        counts = [torch.zeros_like(n) for _ in range(self.world_size)]
        torch.distributed.all_gather(counts, n)
        counts = [int(c.item()) for c in counts]
        buf = torch.zeros((max(counts), dim), dtype=torch.float32, device=self.device)
        buf[: local.shape[0]] = torch.from_numpy(local).to(self.device)
        out = [torch.zeros_like(buf) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, buf)
        return [o[:c].cpu().numpy() for o, c in zip(out, counts)]


class PeerLost(RagdistillError):
    """A collective failed or timed out: another process of the run died or hangs (exit status 3)."""

    exit_code = 3


def is_collective_failure(exc: BaseException) -> bool:
    """A torch.distributed / gloo / NCCL failure: a peer closed its connection, or a collective timed out."""
    dist_error = getattr(torch.distributed, "DistError", ())
    if dist_error and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text
        for s in (
            "Connection closed by peer",
            "Connection reset by peer",
            "Timed out",
            "timed out",
            "Broken pipe",
            "gloo",
            "NCCL",
            "ProcessGroup",
            "Socket",
        )
    )


def peer_lost(dist: Dist, step: int, exc: BaseException, last_checkpoint: str | None) -> PeerLost:
    """The one message a surviving process gives when another process of the run died or hangs."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    where = f"the last complete checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
    return PeerLost(
        f"process {dist.rank} of {dist.world_size} stopped after step {step}: another process of this run "
        f"died or stopped answering (a collective failed or waited longer than runtime.collective_timeout"
        f" = {dist.collective_timeout:g} s: {first}). Nothing was saved after that; {where}. Relaunch "
        "the same command with --resume to continue from it"
    )


def refresh_index(index, retriever, dist: Dist | None, batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """Re-embed the whole index with `retriever`: each process embeds its contiguous shard, blocks are all-gathered."""
    if dist is None or not dist.distributed:
        return index.refresh(retriever, batch_size=batch_size, progress=progress)
    return index.refresh(
        retriever,
        batch_size=batch_size,
        shard=(dist.rank, dist.world_size),
        gather=dist.gather_blocks,
        progress=progress and dist.is_main,
    )


def launched_with_several_processes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1

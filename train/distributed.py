"""One run on several processes under torchrun: the process group and its collectives.

torchrun (or `dyn train --nproc N`, which starts it) launches one process per GPU (gloo on CPU)
and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Every rank builds the same
model from the same seed and draws the same data order from the same seeded generator, then
trains on its contiguous shard of each global batch; DistributedDataParallel all-reduces the
gradients, so every rank holds the same weights and hence the same EMA networks. Evaluation is
split the same way and gathered; rank 0 alone writes the run file.

BatchNorm: with --sync-bn, SyncBatchNorm normalises by the whole global batch's statistics.
Without it each rank normalises by its shard's statistics (as DDP does by default) and rank 0's
running statistics are broadcast after every step, so the state the EMA averages stays the same
on every rank (DDP's own broadcast_buffers would do it only at the next forward).
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Mapping

import numpy as np
import torch
import torch.distributed as tdist

from dyn.errors import UsageError

from dyn.writer import Eval
from .ranks import shard, torchrun_env

# A rank waiting for a dead peer gives up after this long instead of hanging (torchrun also
# ends the job when a worker dies; this covers a peer that hangs without dying). Long enough
# for rank 0 to write an epoch of ResNet-50 weights while the others wait.
TIMEOUT = _dt.timedelta(minutes=10)


class Dist:
    """This process's place in a torchrun job, and the few collectives `dyn train` needs."""

    def __init__(self, rank: int, world: int, local_rank: int):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.comm = torch.device("cpu")  # where collective tensors live: the GPU under nccl

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Dist | None":
        found = torchrun_env(environ)
        return None if found is None else cls(*found)

    @classmethod
    def joined(cls, device: torch.device) -> "Dist | None":
        """The default process group another library started (Lightning's DDP, accelerate), or
        None outside one (or in a group of one)."""
        if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() < 2:
            return None
        d = cls(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        if tdist.get_backend() == "nccl":
            d.comm = device
        return d

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The device of this rank for --device `name`: GPU LOCAL_RANK when CUDA is used."""
        if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available here")
        if name.startswith("cuda:"):
            if self.world > 1:
                raise UsageError(f"--device {name}: under torchrun each process uses cuda:LOCAL_RANK; "
                                 f"give --device cuda")
            return torch.device(name)
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise UsageError(f"--nproc: local rank {self.local_rank} has no GPU (this node has {count})")
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the job's process group (nccl for CUDA, gloo for CPU)."""
        if device.type == "cuda":
            torch.cuda.set_device(device)
            tdist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
            self.comm = device
        else:
            tdist.init_process_group("gloo", timeout=TIMEOUT)

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()

    # ---------------------------------------------------------- collectives
    def barrier(self) -> None:
        # an all_reduce rather than tdist.barrier, which under nccl guesses a device
        tdist.all_reduce(torch.zeros(1, device=self.comm))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks (float64, so integers below 2**53 stay exact)."""
        t = values.to(self.comm, torch.float64)
        tdist.all_reduce(t)
        return t

    def max(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.comm)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's shard (rows, its share of n columns) into (rows, n), in rank order.

        all_gather needs equal sizes: shards are padded to the largest and cut back here."""
        width = -(-n // self.world)
        padded = torch.zeros(part.shape[0], width, dtype=part.dtype, device=self.comm)
        padded[:, :part.shape[1]] = part.to(self.comm)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        tdist.all_gather(parts, padded)
        return torch.cat([p[:, :shard(n, r, self.world).stop - shard(n, r, self.world).start]
                          for r, p in enumerate(parts)], dim=1)

    def gather_objects(self, obj) -> list:
        out = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, buffers: list[torch.Tensor]) -> None:
        """Rank 0's values of `buffers` to every rank: one broadcast per dtype."""
        by_dtype: dict = {}
        for b in buffers:
            by_dtype.setdefault(b.dtype, []).append(b)
        with torch.no_grad():
            for group in by_dtype.values():
                flat = torch.cat([b.reshape(-1) for b in group])
                tdist.broadcast(flat, src=0)
                parts = flat.split([b.numel() for b in group])
                torch._foreach_copy_(group, [v.view_as(b) for v, b in zip(parts, group)])

    def gather_evals(self, evals: Mapping[str, Eval], n: int) -> dict[str, Eval]:
        """Every network's per-sample results on this rank's shard of a split -> on the whole split.

        One all_gather per split: correctness, prediction, loss (and prob and margin where
        computed) of every network as float64 rows (exact for bools, int64 class indices and
        float32 values)."""
        names = list(evals)
        extra = [f for f in ("prob", "margin") if all(getattr(evals[k], f) is not None for k in names)]
        fields = ["correct", "predicted", "loss", *extra]
        rows = torch.stack([torch.from_numpy(np.asarray(getattr(evals[k], f), dtype=np.float64))
                            for k in names for f in fields])
        whole = self.gather(rows, n).cpu().numpy()
        w = len(fields)
        out = {}
        for i, k in enumerate(names):
            r = whole[w * i:w * (i + 1)]
            more = {f: r[3 + j].astype(np.float32) for j, f in enumerate(extra)}
            out[k] = Eval(correct=r[0] != 0, predicted=r[1].astype(np.int64), loss=r[2].astype(np.float32), **more)
        return out

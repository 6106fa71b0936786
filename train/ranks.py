"""Which process of a torchrun job this is, and its share of the work. Plain Python (no torch):
`dyn sweep` and `dyn train --nproc` check these before anything starts."""

from __future__ import annotations

import os
from typing import Mapping

from dyn.errors import UsageError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def shard(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s contiguous part of n items: sizes differ by at most one, in rank order."""
    return slice(n * rank // world, n * (rank + 1) // world)


def torchrun_env(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun, None when not.

    Some of torchrun's variables without the others is refused: it is neither a plain run nor a
    job whose processes could find each other.
    """
    present = [v for v in TORCHRUN_VARS if environ.get(v)]
    if not present:
        return None
    missing = [v for v in TORCHRUN_VARS if v not in present]
    if missing:
        raise UsageError(f"torchrun's environment is half set ({', '.join(present)} set, {', '.join(missing)} "
                         f"not): start with torchrun or dyn train --nproc N, or unset them")
    try:
        rank, world, local = (int(environ[v]) for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE, LOCAL_RANK: torchrun sets integers, got "
                         f"{environ['RANK']!r}, {environ['WORLD_SIZE']!r}, {environ['LOCAL_RANK']!r}") from None
    if not (world >= 1 and 0 <= rank < world and 0 <= local <= rank):
        raise UsageError(f"RANK {rank}, WORLD_SIZE {world}, LOCAL_RANK {local}: not a valid torchrun rank")
    return rank, world, local


def check_shards(n: int, batch_size: int, world: int) -> None:
    """Every rank must get at least one sample of every batch (an empty shard has no mean loss)."""
    last = n % batch_size
    if batch_size < world or 0 < last < world:
        size = batch_size if batch_size < world else last
        raise UsageError(f"--batch-size: {batch_size} over {n:,} training samples gives a batch of {size}, "
                         f"fewer than the {world} processes; choose a batch size that leaves none empty")


def loss_scale(n: int, world: int, global_size: int) -> float:
    """The factor for a rank's mean loss over its n samples of a global batch of global_size.

    DDP averages the ranks' gradients; weighting each rank's mean by its share of the global
    batch makes that average the gradient of the global batch's mean loss, also for a last
    batch split unevenly. 1.0 exactly when shards are even (and for one process)."""
    return n * world / global_size

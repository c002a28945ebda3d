"""Process-group helpers for torchrun (DDP over gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistInfo(device=device)


def world_size() -> int:
    """Ranks in the process group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over ranks, in place, without gradient (identity when not distributed);
    returns it, so global sums read as expressions."""
    if world_size() > 1:
        dist.all_reduce(value)
    return value


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (identity when not distributed)."""
    if world_size() > 1:
        value = all_reduce_sum(value.detach().clone()) / world_size()
    return value


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# A study's single-process stages (data, control, analysis, suite, report) run on rank 0 while
# the other ranks wait; at the paper's scale that takes hours, far past the default collective
# timeout (10 min for NCCL, 30 for gloo). The wait runs on a CPU (gloo) group of its own.
COORDINATION_TIMEOUT = timedelta(days=7)


class Coordinator:
    """Rank 0 decides, every rank follows: the study's handshake between ranks.

    One process (no torchrun): every call is the identity. Under torchrun: ``share`` sends rank
    0's value to all ranks and ``gather`` collects one value per rank, over a gloo group with a
    long timeout, so ranks can wait for rank 0 to finish a long single-process stage.
    """

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.group = None
        if info.distributed:
            self.group = dist.new_group(backend="gloo", timeout=COORDINATION_TIMEOUT)

    def share(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.group is None:
            return value
        box = [value if self.info.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if self.group is None:
            return [value]
        out: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(out, value, group=self.group)
        return out

    def close(self) -> None:
        """Leave together and tear the process groups down before the interpreter exits: a
        gloo group destroyed during interpreter shutdown can abort a rank that is already done
        ("terminate called without an active exception")."""
        if self.group is None:
            return
        dist.barrier(group=self.group)
        dist.destroy_process_group()
        self.group = None

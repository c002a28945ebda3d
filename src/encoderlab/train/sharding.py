"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for tasks whose model does not fit one GPU.

``TrainConfig.sharding: fsdp`` makes the trainer train a *replica* of the task built on the
meta device and sharded: ``fully_shard`` on each unit the task names (``fsdp_units``: an HF
LM's decoder layers), then on the whole task; fp32 master weights, gradients and AdamW moments
live in shards (1/W per rank); with bf16 precision, ``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)`` gathers bf16 layers for compute and reduces gradients in fp32. The replica
is filled from the task's own weights (every rank holds them, as under DDP), and the trained
weights are copied back into the task when ``fit`` ends, so callers (``save_vlm``) see a plain
module, as after DDP.

Checkpoints hold full (gathered) tensors in the trainer's usual format (the task's
``state_dict`` keys; torch's optimizer ``state_dict`` with integer parameter ids), so a
checkpoint written under FSDP resumes under DDP or in one process and the other way round.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from encoderlab.errors import ConfigError

__all__ = [
    "FullState",
    "copy_back",
    "fsdp_replica",
    "full_model_state",
    "full_optimizer_state",
    "full_tensor",
    "load_full_model",
    "load_full_optimizer",
    "shard_plan",
]


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered (a collective: every rank calls it), a plain tensor as is."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_plan(task: nn.Module) -> list[str]:
    """The qualified names of the modules ``fsdp_replica`` shards, in order: the task's
    ``fsdp_units()`` (e.g. each decoder layer), then the task itself ("")."""
    units = getattr(task, "fsdp_units", None)
    if units is None:
        raise ConfigError(
            f"sharding: fsdp needs a task that names its FSDP units; {type(task).__name__} "
            "does not (use sharding: ddp)"
        )
    names = {id(m): n for n, m in task.named_modules()}
    return [names[id(m)] for m in units()] + [""]


def _meta_copy(task: nn.Module) -> nn.Module:
    """A deep copy of ``task`` with its parameters on the meta device (no memory); buffers and
    other tensor attributes (a VLM task's feature cache) are shared, not copied."""
    memo: dict[int, Any] = {}
    for p in task.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
    for m in task.modules():
        for value in vars(m).values():
            if torch.is_tensor(value) and id(value) not in memo:
                memo[id(value)] = value
        for b in m._buffers.values():
            if b is not None:
                memo.setdefault(id(b), b)
    return copy.deepcopy(task, memo)


def fsdp_replica(task: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """A sharded copy of ``task`` on ``device`` (1/W of every parameter per rank) holding the
    task's current weights. Needs an initialised process group; every rank calls it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plan = shard_plan(task)
    replica = _meta_copy(task)
    mesh = dist.device_mesh.init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy()
    if bf16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    modules = dict(replica.named_modules())
    for name in plan[:-1]:
        fully_shard(modules[name], mesh=mesh, mp_policy=policy)
    # the root keeps its inputs' dtypes: a VLM batch carries fp32 features and a token count
    # (num_items_in_batch) that bf16 would round; the projector casts the features itself
    root = MixedPrecisionPolicy(
        param_dtype=policy.param_dtype, reduce_dtype=policy.reduce_dtype, cast_forward_inputs=False
    )
    fully_shard(replica, mesh=mesh, mp_policy=root)
    replica.to_empty(device=device)
    own = dict(task.named_buffers())
    with torch.no_grad():
        for name, b in replica.named_buffers():  # non-persistent ones (rotary) are in no state dict
            b.copy_(own[name])
    load_full_model(replica, task.state_dict())
    return replica


@torch.no_grad()
def copy_back(replica: nn.Module, task: nn.Module) -> None:
    """Gather the replica's weights and buffers into ``task`` (every rank calls it)."""
    params = dict(task.named_parameters())
    for name, p in replica.named_parameters():
        params[name].copy_(full_tensor(p).to(params[name].device))
    buffers = dict(task.named_buffers())
    for name, b in replica.named_buffers():
        buffers[name].copy_(b.to(buffers[name].device))


def full_model_state(replica: nn.Module) -> dict[str, torch.Tensor]:
    """The replica's full state dict on CPU on rank 0 (``{}`` elsewhere): the task's keys."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(replica, options=options)


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded state gathered, on CPU: the format the
    trainer writes for DDP and one process (integer ids in parameter order). Collective."""
    state = optimizer.state_dict()
    main = dist.get_rank() == 0
    out: dict[int, dict[str, Any]] = {}
    for pid in sorted(state["state"]):
        values = {}
        for key, value in state["state"][pid].items():
            if torch.is_tensor(value):
                value = full_tensor(value).cpu() if isinstance(value, DTensor) or main else None
            values[key] = value
        out[pid] = values
    return {"state": out if main else {}, "param_groups": state["param_groups"]}


@torch.no_grad()
def load_full_model(replica: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full (unsharded) state dict, as a checkpoint holds it, into the replica: every
    rank holds the same full tensors and cuts its own shard (no communication)."""
    own = replica.state_dict()  # sharded parameters (DTensors) and buffers, by reference
    missing = sorted(set(own) - set(state))
    if missing:
        raise RuntimeError(f"state dict lacks {', '.join(missing[:3])}")
    for name, target in own.items():
        source = state[name]
        if isinstance(target, DTensor):
            shard = distribute_tensor(
                source.to(target.device, target.dtype),
                target.device_mesh,
                target.placements,
                src_data_rank=None,
            )
            target.to_local().copy_(shard.to_local())
        else:
            target.copy_(source)


def load_full_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full optimizer state dict (``full_optimizer_state``'s format) into the optimizer
    of a replica: each state tensor is cut into its parameter's shard."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    out: dict[int, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        p = params[int(pid)]
        out[int(pid)] = {
            key: distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
            if isinstance(p, DTensor) and torch.is_tensor(v) and v.shape == p.shape
            else v
            for key, v in values.items()
        }
    optimizer.load_state_dict({**state, "state": out})


class FullState:
    """What ``save_checkpoint``/``load_checkpoint`` call on a model or an optimizer, for a
    sharded replica: ``state_dict`` returns the gathered state (computed beforehand by every
    rank), ``load_state_dict`` shards a full one into the replica."""

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        load: Any = None,
    ) -> None:
        self._state = state
        self._load = load

    def state_dict(self) -> dict[str, Any]:
        assert self._state is not None
        return self._state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load(state)

"""One training loop for every objective and every VLM stage.

A *task* is an ``nn.Module`` with the small interface below (pretraining objectives and VLM
stages both implement it); the trainer owns everything the runs of a study must share: data
order, optimiser, schedule, precision, clipping, DDP, checkpoint/resume, logging and progress.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from encoderlab.data.reader import MAX_REFILL, EpochSampler, SkipReport
from encoderlab.errors import DataError, EncoderlabError
from encoderlab.precision import autocast, resolve_precision
from encoderlab.progress import console, make_progress
from encoderlab.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    resume_checkpoint,
    save_checkpoint,
)
from encoderlab.train.config import TrainConfig
from encoderlab.train.distributed import DistInfo, all_reduce_mean
from encoderlab.train.host_memory import keep_freed_memory
from encoderlab.train.schedule import cosine_with_warmup
from encoderlab.train.sharding import (
    FullState,
    copy_back,
    fsdp_replica,
    full_model_state,
    full_optimizer_state,
    full_tensor,
    load_full_model,
    load_full_optimizer,
)


class TrainingDiverged(EncoderlabError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class TrainTask(Protocol):
    """What the trainer needs from an objective or a VLM stage."""

    def prepare_batch(self, batch: dict[str, Any], step: int) -> dict[str, Any]: ...
    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]: ...
    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]: ...
    def on_step_start(
        self, step: int, total_steps: int, optimizer: torch.optim.Optimizer
    ) -> None: ...
    def after_backward(self, step: int) -> None: ...
    def on_step_end(self, step: int, total_steps: int) -> None: ...


def build_optimizer(task: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = task.param_groups(cfg.weight_decay)
    for g in groups:
        g["base_wd"] = g.get("weight_decay", cfg.weight_decay)
    # fused AdamW runs on CPU and GPU and is several times faster than the per-tensor loop
    # that torch picks by default on CPU; it is deterministic, so resume stays bitwise exact.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)


def samples_in(batch: Any) -> int:
    """Samples in a batch: a reader batch's length, or the leading size of a dict of tensors
    (the VLM stages' collated batches, whose ``len`` counts their keys; their ``index`` has
    one entry per example however the examples were packed into rows)."""
    if isinstance(batch, Mapping):
        if "index" in batch:
            return len(batch["index"])
        return int(next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0])
    return len(batch)


class Trainer:
    """Runs ``task`` on ``dataset`` for ``cfg.total_steps`` steps, resumably."""

    def __init__(
        self,
        task: nn.Module,
        dataset: Dataset,
        collate: Callable[[list], dict[str, Any]],
        cfg: TrainConfig,
        run_dir: Path,
        dist_info: DistInfo | None = None,
        progress: bool = True,
        description: str = "train",
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        self.task = task
        # called on the main rank with the step, before each checkpoint is written (e.g. the
        # encoder snapshots of pretraining: train.snapshots)
        self.on_checkpoint = on_checkpoint
        self.dataset = dataset
        self.collate = collate
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info or DistInfo()
        self.progress = progress and self.dist.is_main
        self.description = description
        self.skips = SkipReport()
        if cfg.batch_size % self.dist.world_size:
            raise EncoderlabError(
                f"batch_size {cfg.batch_size} is not divisible by world size {self.dist.world_size}"
            )
        self.rank_batch = cfg.batch_size // self.dist.world_size
        self.steps_per_epoch = len(dataset) // cfg.batch_size  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            raise EncoderlabError(
                f"the data set has {len(dataset)} samples, fewer than one batch of {cfg.batch_size}"  # type: ignore[arg-type]
            )
        self.total_steps = cfg.total_steps
        self.ckpt_root = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"

    # -- data -----------------------------------------------------------------------------
    def _loader(self, epoch: int, start: int) -> DataLoader:
        sampler = EpochSampler(
            len(self.dataset),  # type: ignore[arg-type]
            seed=self.cfg.seed,
            epoch=epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start=start,
        )
        return DataLoader(
            self.dataset,
            batch_size=self.rank_batch,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=self.collate,
            persistent_workers=False,
            # Its own generator: a DataLoader iterator otherwise draws its worker seed from the
            # global RNG, and a resumed run (which opens one more iterator) would diverge.
            generator=torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch),
        )

    def _batches(self, first_step: int):
        step = first_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            for batch in self._loader(epoch, pos * self.cfg.batch_size):
                # Reader batches carry decode-time skips and whole-batch errors back from the
                # worker processes; other task-specific batches simply lack these attributes.
                self.skips.extend(getattr(batch, "skipped", ()))
                if getattr(batch, "error", None):
                    raise DataError(batch.error)
                n = samples_in(batch)
                if getattr(self.dataset, "refill", False) and n != self.rank_batch:
                    # every rank must hold the same number of samples: CLIP gathers features
                    # by rank, DINO counts its centre over ranks (SampleDataset.refill)
                    raise DataError(
                        f"rank {self.dist.rank}: a batch of {n} samples instead of "
                        f"{self.rank_batch}: more than {MAX_REFILL} unreadable samples in a row "
                        f"({self.skips.summary().splitlines()[-1]})"
                    )
                if n == 0:
                    continue
                yield batch
                step += 1
                if step // self.steps_per_epoch != epoch:
                    break

    # -- loop -----------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.cfg.precision, self.dist.device)

    def _truncate_metrics(self, step: int) -> None:
        """On resume, forget metrics logged after the checkpoint: those steps are replayed."""
        if self.dist.is_main and self.metrics_path.exists():
            rows = self.metrics_path.read_text().splitlines()
            kept = [r for r in rows if r and json.loads(r)["step"] <= step]
            self.metrics_path.write_text("".join(r + "\n" for r in kept))

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or to ``max_steps``, to simulate an interruption); resume if a
        checkpoint exists. Returns the last logged metrics. Skipped samples (undecodable
        images...) are in ``self.skips``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.device.type == "cpu":
            keep_freed_memory()  # no page faults on each step's activations (host_memory.py)
        # FSDP2 trains a sharded replica of the task and copies its weights back at the end
        # (train.sharding); in one process there is nothing to shard
        fsdp = self.cfg.sharding == "fsdp" and self.dist.distributed
        self._gradient_checkpointing(self.cfg.gradient_checkpointing)
        if fsdp:
            bf16 = resolve_precision(self.cfg.precision, self.dist.device) == "bf16"
            task = fsdp_replica(self.task, self.dist.device, bf16)
        else:
            task = self.task.to(self.dist.device)
        optimizer = build_optimizer(task, self.cfg)
        start_step = 0
        # the newest checkpoint that verifies; damaged newer ones are named in one line
        ckpt, notice = resume_checkpoint(self.ckpt_root)
        if notice and self.dist.is_main:
            console.print(f"warning: {notice}", highlight=False)
        if ckpt is not None:
            if fsdp:  # full tensors on disk, each rank keeps its shard
                model_in = FullState(load=lambda state: load_full_model(task, state))
                optim_in = FullState(load=lambda state: load_full_optimizer(optimizer, state))
                start_step = load_checkpoint(ckpt, model_in, optim_in)["step"]  # type: ignore[arg-type]
            else:
                start_step = load_checkpoint(ckpt, task, optimizer)["step"]
            self._truncate_metrics(start_step)
        elif self.dist.is_main and self.metrics_path.exists():
            self.metrics_path.unlink()  # a fresh run: stale metrics from a wiped run go
        model: nn.Module = task
        if self.dist.distributed and not fsdp:
            model = DistributedDataParallel(task, broadcast_buffers=False)
        stop = min(self.total_steps, max_steps) if max_steps is not None else self.total_steps
        warmup = int(self.cfg.warmup_frac * self.total_steps)
        last: dict[str, Any] = {}
        window_t, window_n = time.perf_counter(), 0
        # on the training device: a CUDA loss cannot be added to a CPU accumulator, and NCCL
        # all-reduces device tensors only
        window_loss, window_steps = torch.zeros((), device=self.dist.device), 0
        # text fields: before the first logged window there is no loss to show ("-", not "nan")
        fields = "loss {task.fields[loss]}  {task.fields[rate]} samples/s"
        with make_progress(self.progress, fields) as bar:
            bar_task = None
            if bar is not None:
                bar_task = bar.add_task(
                    self.description,
                    total=self.total_steps,
                    completed=start_step,
                    loss="-",
                    rate="-",
                )
            batches = self._batches(start_step)
            for step in range(start_step, stop):
                batch = next(batches)
                lr = cosine_with_warmup(
                    step, self.total_steps, self.cfg.lr, warmup, self.cfg.lr * self.cfg.min_lr_ratio
                )
                for g in optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                task.on_step_start(step, self.total_steps, optimizer)
                inputs = task.prepare_batch(batch, step)
                with self._autocast():
                    out = model(inputs)
                loss = out["loss"]
                if not bool(torch.isfinite(all_reduce_mean(loss.detach().float()))):
                    good = latest_checkpoint(self.ckpt_root)
                    where = f"; last good checkpoint: {good}" if good else "; no checkpoint yet"
                    raise TrainingDiverged(f"loss became {loss.item()} at step {step}{where}")
                loss.backward()
                task.after_backward(step)
                grad_norm = None
                if self.cfg.grad_clip is not None:
                    grad_norm = full_tensor(  # FSDP: the norm over every shard, gathered
                        torch.nn.utils.clip_grad_norm_(task.parameters(), self.cfg.grad_clip)
                    )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                task.on_step_end(step, self.total_steps)
                window_n += samples_in(batch) * self.dist.world_size
                window_loss += loss.detach().float()
                window_steps += 1
                done = step + 1
                if done % self.cfg.log_every == 0 or done == stop:
                    now = time.perf_counter()
                    rate = window_n / max(now - window_t, 1e-9)
                    window_t, window_n = now, 0
                    last = {
                        "step": done,
                        "epoch": step // self.steps_per_epoch,
                        "lr": lr,
                        "samples_per_s": rate,
                        **{k: float(all_reduce_mean(v.detach().float())) for k, v in out.items()},
                        # the loss is averaged over the logging window, not just its last batch
                        "loss": float(all_reduce_mean(window_loss / window_steps)),
                    }
                    window_loss, window_steps = torch.zeros((), device=self.dist.device), 0
                    if grad_norm is not None:
                        last["grad_norm"] = float(grad_norm)
                    self._log(last)
                    if bar is not None:
                        bar.update(
                            bar_task, completed=done, loss=f"{last['loss']:.4f}", rate=f"{rate:.0f}"
                        )
                elif bar is not None:
                    bar.update(bar_task, completed=done)
                if done % self.cfg.checkpoint_every == 0 or done == stop:
                    if self.dist.is_main and self.on_checkpoint is not None:
                        self.on_checkpoint(done)
                    model_out: Any = task
                    optim_out: Any = optimizer
                    if fsdp:  # gathered by every rank, written by rank 0, as DDP's
                        model_out = FullState(full_model_state(task))
                        optim_out = FullState(full_optimizer_state(optimizer))
                    if self.dist.is_main:
                        save_checkpoint(
                            self.ckpt_root,
                            done,
                            model_out,
                            optim_out,
                            {"epoch": step // self.steps_per_epoch},
                            keep=self.cfg.keep_checkpoints,
                        )
                    if self.dist.distributed:
                        torch.distributed.barrier()
        if fsdp:
            copy_back(task, self.task)
        self._gradient_checkpointing(False)
        return last

    def _gradient_checkpointing(self, enable: bool) -> None:
        """Turn the task's activation checkpointing on (``TrainConfig.gradient_checkpointing``)
        for training, off again after it."""
        hook = getattr(self.task, "set_gradient_checkpointing", None)
        if hook is not None:
            hook(enable)
        elif enable:
            raise EncoderlabError(
                f"gradient_checkpointing: {type(self.task).__name__} has no decoder to "
                "checkpoint (set it false)"
            )

    @property
    def finished(self) -> bool:
        ckpt = latest_checkpoint(self.ckpt_root)
        return (
            ckpt is not None
            and json.loads((ckpt / "state.json").read_text())["step"] >= self.total_steps
        )

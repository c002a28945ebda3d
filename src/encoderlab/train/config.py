"""The optimisation recipe shared by every objective and every VLM stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from encoderlab.config import StrictModel


class TrainConfig(StrictModel):
    """One schedule for all runs of a study: only the objective (or the encoder) may differ.

    ``samples`` fixes the budget in samples seen, so two objectives trained with the same
    ``TrainConfig`` see the same images in the same order for the same number of steps.
    """

    batch_size: int = Field(128, gt=0, description="global batch size (all ranks together)")
    samples: int = Field(50_000, gt=0, description="samples seen in total (sets the step count)")
    lr: float = Field(5e-4, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of lr")
    warmup_frac: float = Field(0.05, ge=0, lt=1, description="linear warm-up, fraction of steps")
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = Field(3.0, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 where the hardware has it natively, else fp32"
    )
    seed: int = 0
    num_workers: int = Field(
        0, ge=0, description="loader processes; 0 on small CPUs (workers contend with compute)"
    )
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, gt=0)
    sharding: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="ddp: every rank holds the whole model; fsdp: FSDP2 fully_shard per unit "
        "the task names (an LM's decoder layers) and the whole (train.sharding), for models "
        "that do not fit one GPU; the same as ddp in one process",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute each LM decoder layer in backward (activation memory)"
    )

    @model_validator(mode="after")
    def _enough_samples(self) -> TrainConfig:
        if self.samples < self.batch_size:
            raise ValueError(f"samples ({self.samples}) < batch_size ({self.batch_size})")
        return self

    @property
    def total_steps(self) -> int:
        return self.samples // self.batch_size

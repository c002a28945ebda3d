"""Knobs of the four objectives, one section each; defaults are scaled for the tiny preset.

A study trains every objective from one ``ObjectiveConfig``, so each objective reads only its
own section and the shared ``seed``. Schedule lengths are fractions of the run's total steps,
so they scale with the preset.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from encoderlab.config import StrictModel
from encoderlab.encoders.text import PretrainedTextConfig, TextConfig

__all__ = [
    "ClipConfig",
    "ClipPretrainedTextConfig",
    "DinoConfig",
    "ObjectiveConfig",
    "SiglipConfig",
]

Range = tuple[float, float]


def _ordered(name: str, value: Range) -> None:
    if not 0 < value[0] <= value[1]:
        raise ValueError(f"{name} must be 0 < low <= high, got {value}")


class _ContrastiveConfig(StrictModel):
    embed_dim: int = Field(256, gt=0, description="joint image-text embedding size")
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = Field(math.log(100), description="OpenCLIP's clamp, after each step")
    crop_scale: Range = Field((0.9, 1.0), description="OpenCLIP's light random resized crop")

    @model_validator(mode="after")
    def _check_crop(self) -> _ContrastiveConfig:
        _ordered("crop_scale", self.crop_scale)
        return self


class ClipConfig(_ContrastiveConfig):
    """InfoNCE (OpenCLIP ``ClipLoss``), text tower trained from scratch."""

    text: TextConfig = Field(default_factory=TextConfig)


class SiglipConfig(_ContrastiveConfig):
    """Sigmoid loss (OpenCLIP ``SigLipLoss``), text tower trained from scratch."""

    init_logit_scale: float = math.log(10)
    init_logit_bias: float = -10.0
    text: TextConfig = Field(default_factory=TextConfig)


class ClipPretrainedTextConfig(_ContrastiveConfig):
    """InfoNCE against a pretrained (frozen) Hugging Face text encoder + trainable projection."""

    text: PretrainedTextConfig = Field(default_factory=PretrainedTextConfig)


class DinoConfig(StrictModel):
    """DINO v1; the defaults are its code's, resized for 64-px images where noted."""

    out_dim: int = Field(4096, gt=0, description="prototypes (DINO: 65536)")
    hidden_dim: int = Field(2048, gt=0)
    bottleneck_dim: int = Field(256, gt=0)
    head_layers: int = Field(3, ge=1)
    norm_last_layer: bool = True
    head_batchnorm: bool = Field(False, description="DINO's --use_bn_in_head (global batch)")
    n_local_crops: int = Field(6, ge=0, description="DINO: 8")
    local_crop_size: int = Field(32, gt=0, description="DINO: 96 px for 224-px global crops")
    global_crop_scale: Range = (0.4, 1.0)
    local_crop_scale: Range = (0.05, 0.4)
    blur_sigma: Range = Field((0.03, 0.57), description="DINO's (0.1, 2.0) px, times 64/224")
    jitter_p: float = Field(
        0.8, ge=0, le=1, description="colour jitter's probability per view (DINO: 0.8)"
    )
    grayscale_p: float = Field(0.2, ge=0, le=1, description="DINO: 0.2")
    solarize_p: float = Field(0.2, ge=0, le=1, description="second global crop's (DINO: 0.2)")
    teacher_temp: float = Field(0.07, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp_frac: float = Field(0.3, ge=0, le=1, description="DINO: 30 of 100 epochs")
    student_temp: float = Field(0.1, gt=0)
    center_momentum: float = Field(0.9, ge=0, lt=1)
    centering: Literal["centre", "sinkhorn"] = Field(
        "centre",
        description="the teacher's: DINO's EMA centre, or DINOv2's Sinkhorn-Knopp "
        "(3 iterations; balanced assignments from the first step)",
    )
    momentum_teacher: float = Field(0.996, ge=0, le=1, description="EMA start; cosine to 1")
    weight_decay: float = Field(0.04, ge=0, description="start of the cosine wd schedule")
    weight_decay_end: float = Field(0.4, ge=0)
    freeze_last_layer_frac: float = Field(0.01, ge=0, le=1, description="DINO: 1 of 100 epochs")

    @model_validator(mode="after")
    def _check_ranges(self) -> DinoConfig:
        for name in ("global_crop_scale", "local_crop_scale", "blur_sigma"):
            _ordered(name, getattr(self, name))
        return self


class ObjectiveConfig(StrictModel):
    """All objectives' settings; ``seed`` fixes head init and every augmentation draw."""

    seed: int = 0
    clip: ClipConfig = Field(default_factory=ClipConfig)
    siglip: SiglipConfig = Field(default_factory=SiglipConfig)
    clip_pretrained_text: ClipPretrainedTextConfig = Field(default_factory=ClipPretrainedTextConfig)
    dino: DinoConfig = Field(default_factory=DinoConfig)

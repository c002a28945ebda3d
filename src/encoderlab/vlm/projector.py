"""Projectors from vision tokens to LM embeddings (LLaVA-1.5 and Prismatic's fused variant)."""

from __future__ import annotations

from typing import Literal

from torch import nn

__all__ = ["ProjectorKind", "build_projector", "projector_kind"]

ProjectorKind = Literal["mlp2x_gelu", "fused_mlp3x_gelu"]


def projector_kind(num_encoders: int) -> ProjectorKind:
    """One encoder: LLaVA-1.5's ``mlp2x_gelu``; two (channel-concatenated): Prismatic's fused MLP."""
    return "mlp2x_gelu" if num_encoders == 1 else "fused_mlp3x_gelu"


def build_projector(kind: ProjectorKind, vision_dim: int, lm_dim: int) -> nn.Sequential:
    """``mlp2x_gelu``: Linear -> GELU -> Linear. ``fused_mlp3x_gelu`` (Prismatic's
    ``FusedMLPProjector``): Linear to 4x the vision width -> GELU -> Linear -> GELU -> Linear."""
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(vision_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))
    if kind == "fused_mlp3x_gelu":
        wide = 4 * vision_dim
        return nn.Sequential(
            nn.Linear(vision_dim, wide),
            nn.GELU(),
            nn.Linear(wide, lm_dim),
            nn.GELU(),
            nn.Linear(lm_dim, lm_dim),
        )
    raise ValueError(f"unknown projector {kind!r}")

"""The frozen vision side: one or two encoders, the feature tap, optional pooling, the cache.

Every encoder is read the same way (LLaVA-1.5 / Prismatic): patch tokens of the penultimate
block, CLS dropped; two encoders are concatenated by channel (a CLIP+DINO VLM), which needs
the same patch grid. Because the encoders are frozen and VLM training uses no augmentation,
their features are a pure function of the image: ``encode_images`` computes them once per
encoder and data set and the stages train on the cached tensors (on CPU the encoder forward
would otherwise cost as much as the LM step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from encoderlab.data.augment import normalize
from encoderlab.encoders.vit import VisionEncoder
from encoderlab.errors import ConfigError, DataError
from encoderlab.progress import make_progress

__all__ = ["VisionTower", "encode_images", "feature_stats", "read_image", "standardize"]


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per token position and channel ``[T, D]`` and std per channel ``[D]`` of training
    features ``[N, T, D]``: what ``standardize`` removes and divides by."""
    mean = features.mean(dim=0)
    std = (features - mean).std(dim=(0, 1)).clamp_min(1e-6)
    return mean, std


def standardize(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Features with the image-independent part (what every image puts at a token position:
    mostly the position embedding carried up the residual stream) removed and every channel at
    unit scale. That part can dominate a token (most of it for a small DINO), and a VLM
    trained on such raw tokens learns to ignore them (docs/lab-notes.md)."""
    return (features - mean.to(features.device)) / std.to(features.device)


class VisionTower(nn.Module):
    """Frozen encoders -> ``[B, T, sum of widths]`` tokens for the projector."""

    def __init__(
        self,
        encoders: Sequence[VisionEncoder],
        tap_layer: int = -2,
        pool_tokens: int | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        names = list(names or [f"encoder {i}" for i in range(len(encoders))])
        if not 1 <= len(encoders) <= 2:
            raise ConfigError(f"a VLM takes one or two encoders, got {len(encoders)}")
        first = encoders[0]
        # The layer each encoder is read at: a ViT's block ``tap_layer``; a CNN's
        # ``encoder.feature_stage`` (``token_layer``), whose grid and width are its own.
        self.layers: list[int] = []
        for enc, name in zip(encoders, names, strict=True):
            try:
                self.layers.append(enc.token_layer(tap_layer))
            except ValueError:
                raise ConfigError(
                    f"{name}: tap_layer {tap_layer} does not exist in a "
                    f"{enc.num_layers}-block encoder"
                ) from None
            if (enc.cfg.image_size, enc.num_patches) != (first.cfg.image_size, first.num_patches):
                raise ConfigError(
                    f"{name}: {enc.cfg.image_size} px / {enc.num_patches} patches does not match "
                    f"{names[0]} ({first.cfg.image_size} px / {first.num_patches} patches); "
                    "fused encoders need the same patch grid"
                )
        self.grid = math.isqrt(first.num_patches)
        if pool_tokens is not None and math.isqrt(pool_tokens) > self.grid:
            raise ConfigError(
                f"pool_tokens {pool_tokens} exceeds the {first.num_patches} patches of {names[0]}"
            )
        self.encoders = nn.ModuleList(encoders)
        self.encoders.requires_grad_(False)
        self.encoders.eval()
        self.tap_layer = tap_layer
        self.pool_tokens = pool_tokens
        # standardisation statistics (``set_feature_stats``): None = raw features, as LLaVA
        self.register_buffer("feature_mean", None)
        self.register_buffer("feature_std", None)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """From now on ``forward`` returns standardised features (``standardize``)."""
        device = next(self.parameters()).device
        self.feature_mean, self.feature_std = mean.to(device), std.to(device)

    def train(self, mode: bool = True) -> VisionTower:
        return super().train(False)  # frozen: always in eval mode (no dropout, no drop-path)

    @property
    def image_size(self) -> int:
        return int(self.encoders[0].cfg.image_size)

    @property
    def num_tokens(self) -> int:
        return self.pool_tokens or self.grid * self.grid

    @property
    def dim(self) -> int:
        return sum(enc.token_dim(i) for enc, i in zip(self.encoders, self.layers, strict=True))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> float32 ``[B, num_tokens, dim]`` (other sizes are resized
        to the encoder's, since the token count is fixed by the template)."""
        x = normalize(images.to(next(self.parameters()).device))
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True)
        feats = []
        for enc, layer in zip(self.encoders, self.layers, strict=True):
            f = enc.tap(x, kind="patch", layer=layer).float()
            if self.pool_tokens is not None:
                side = math.isqrt(self.pool_tokens)
                b, _, d = f.shape
                grid = f.transpose(1, 2).reshape(b, d, self.grid, self.grid)
                f = F.adaptive_avg_pool2d(grid, side).flatten(2).transpose(1, 2)
            feats.append(f)
        out = torch.cat(feats, dim=-1)
        if self.feature_mean is None:
            return out
        return standardize(out, self.feature_mean, self.feature_std)


def encode_images(
    tower: VisionTower, images: Sequence[torch.Tensor], batch_size: int = 128, progress: bool = True
) -> torch.Tensor:
    """Features of a list of uint8 images, ``[N, T, D]``, in fp32 (the feature cache)."""
    out = []
    with make_progress(progress) as bar:
        task = bar.add_task("image features", total=len(images)) if bar is not None else None
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(images[start : start + batch_size]))
            out.append(tower(batch).cpu())
            if bar is not None:
                bar.update(task, advance=len(batch))
    return torch.cat(out)


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file as uint8 ``[3, size, size]``, centre-cropped and resized like the reader."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            image = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__})") from None
    image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()

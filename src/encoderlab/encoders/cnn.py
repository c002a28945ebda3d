"""A timm CNN (ResNet or ConvNeXt) behind the same interface as the ViT encoder.

CLIP and DINO were both published on ResNets as well as ViTs, and LLaVA-style models have been
built on CNN feature grids (ConvLLaVA), so a study may share a CNN backbone across its
objectives instead of a ViT (``encoder.arch``). The network is built by
``timm.create_model`` (random init from ``encoder.seed``) and read through timm's uniform API:

* ``forward`` -> the pooled embedding ``[B, D]`` (``forward_features`` then ``forward_head``
  without a classifier: global average pool, and ConvNeXt's head LayerNorm), what the
  objectives train and the probes read;
* ``tap(kind, layer)`` over the model's ``feature_info`` entries (timm's
  ``forward_intermediates`` indices: ResNet's stem and its 4 stages, ConvNeXt's 4 stages):
  ``patch`` tokens ``[B, H*W, C]`` of that stage's grid, ``mean``/``cls`` its spatial mean (a
  CNN has no class token); the last stage's ``cls`` is ``forward``;
* the VLM's grid: the stage ``encoder.feature_stage`` (-2, the penultimate, as LLaVA reads the
  penultimate ViT block) through ``token_layer`` / ``token_grid`` / ``token_dim``.

Normalisation must keep a 2-rank run on the 1-rank trajectory: ConvNeXt has LayerNorm already;
ResNet's BatchNorm is replaced through timm's ``norm_layer`` argument by GroupNorm (Wu & He
2018, 32 groups; ``encoder.norm: group``, no batch statistics) or by BatchNorm over the global
batch (``encoder.norm: batch``: ``GlobalBatchNorm2d``, SyncBatchNorm's statistics on CPUs too),
as the ResNets of CLIP and DINO were trained (DINO: SyncBatchNorm, the teacher's from its own
batch). With labels, GroupNorm learns far slower here in the first hundred steps.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import timm
import torch
import torch.distributed.nn.functional as dist_nn
from torch import nn

from encoderlab.encoders.vit import CNN_FAMILIES, EncoderConfig, TapKind, seeded
from encoderlab.errors import ConfigError
from encoderlab.train.distributed import world_size

__all__ = ["CNN_FAMILIES", "CnnEncoder", "GlobalBatchNorm2d", "GroupNorm32", "cnn_stage_count"]


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups (Wu & He's default; fewer, of at least 2 channels each, for
    narrow layers, so a 1x1 map still has statistics), called the way timm calls a
    ``norm_layer``: ``norm_layer(num_channels)``."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True, **_) -> None:
        groups = math.gcd(32, max(1, num_channels // 2))
        super().__init__(groups, num_channels, eps=eps, affine=affine)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch: under DDP the statistics are all-reduced over the ranks
    (with gradients), so a 2-rank run follows the 1-rank trajectory; what ``SyncBatchNorm`` does
    on GPUs (it refuses CPU tensors). Running statistics as ``nn.BatchNorm2d`` (eval mode).
    One process: ``nn.BatchNorm2d`` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = world_size()
        if world == 1 or not self.training:
            return super().forward(x)
        xf = x.float()
        count = xf.numel() / xf.shape[1] * world
        mean = dist_nn.all_reduce(xf.sum((0, 2, 3))) / count
        centred = xf - mean[None, :, None, None]
        var = dist_nn.all_reduce(centred.square().sum((0, 2, 3))) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = (
                self.momentum
                if self.momentum is not None
                else 1.0 / float(self.num_batches_tracked)
            )
            self.running_mean.lerp_(mean.detach(), m)
            self.running_var.lerp_(var.detach() * count / max(count - 1, 1), m)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def _create(
    arch: str, timm_kwargs: dict[str, Any], drop_path: float = 0.0, norm: str = "group"
) -> nn.Module:
    kw: dict[str, Any] = dict(pretrained=False, num_classes=0, drop_path_rate=drop_path)
    if arch.startswith("resnet"):
        # group: no batch statistics (per-sample features); batch: over the global batch
        kw["norm_layer"] = GroupNorm32 if norm == "group" else GlobalBatchNorm2d
    return timm.create_model(arch, **kw, **timm_kwargs)


@lru_cache(maxsize=64)
def _stage_count(arch: str, kwargs_json: str) -> int:
    with torch.device("meta"):
        net = _create(arch, json.loads(kwargs_json))
    return len(net.feature_info)


def cnn_stage_count(arch: str, timm_kwargs: dict[str, Any] | None = None) -> int:
    """How many taps (``feature_info`` entries) the timm model has; built on the meta device,
    so no weights are allocated. Raises what timm raises for arguments it does not take."""
    return _stage_count(arch, json.dumps(timm_kwargs or {}, sort_keys=True))


class CnnEncoder(nn.Module):
    """A timm CNN without classifier, with the ``VisionEncoder`` taps (see the module doc).

    Inputs are float images already normalised with CLIP's mean/std, as for the ViT.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        with seeded(cfg.seed):
            net = _create(cfg.arch, cfg.timm_kwargs, cfg.drop_path, cfg.norm)
        if not hasattr(net, "forward_intermediates") or not getattr(net, "feature_info", None):
            raise ConfigError(f"encoder.arch: {cfg.arch!r} has no timm feature taps")
        self.net = net
        self.stages = [dict(info) for info in net.feature_info]
        depth = len(self.stages)
        if not -depth <= cfg.feature_stage < depth:
            raise ConfigError(
                f"encoder.feature_stage: {cfg.feature_stage} does not exist in {cfg.arch} "
                f"({depth} stages)"
            )
        if cfg.grad_checkpointing:
            self.set_grad_checkpointing(True)

    # -- sizes ----------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """Width of the pooled embedding (what ``forward`` returns)."""
        return int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)

    @property
    def num_layers(self) -> int:
        """Taps ``tap`` can index (timm's ``feature_info`` entries)."""
        return len(self.stages)

    @property
    def patch_size(self) -> int:
        """Pixels per token side of the VLM's grid (the feature stage's reduction)."""
        return int(self.stages[self.token_layer()]["reduction"])

    @property
    def input_stride(self) -> int:
        """Input sizes must be multiples of this (the last stage's reduction): ConvNeXt's
        downsampling convs take no padding, so a smaller crop does not reach the last stage."""
        return int(self.stages[-1]["reduction"])

    @property
    def num_patches(self) -> int:
        """Tokens of the VLM's grid at the native image size."""
        height, width = self.token_grid()
        return height * width

    def _index(self, layer: int) -> int:
        index = layer + self.num_layers if layer < 0 else layer
        if not 0 <= index < self.num_layers:
            raise ValueError(f"layer {layer} out of range for a {self.num_layers}-stage encoder")
        return index

    def token_layer(self, tap_layer: int | None = None) -> int:
        """The stage the VLM reads: ``encoder.feature_stage`` (the VLM's ``tap_layer`` counts
        ViT blocks and does not apply to a CNN)."""
        return self._index(self.cfg.feature_stage)

    def token_grid(self, layer: int | None = None) -> tuple[int, int]:
        """(rows, columns) of a stage's grid at the native image size (default: the VLM's)."""
        index = self.token_layer() if layer is None else self._index(layer)
        side = math.ceil(self.cfg.image_size / self.stages[index]["reduction"])
        return side, side

    def token_dim(self, layer: int | None = None) -> int:
        """Channels of a stage's tokens (default: the VLM's stage)."""
        index = self.token_layer() if layer is None else self._index(layer)
        return int(self.stages[index]["num_chs"])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)

    # -- forward and taps -----------------------------------------------------------------
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map ``[B, C, H, W]`` (timm's ``forward_features``)."""
        return self.net.forward_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled embedding ``[B, D]``: timm's ``forward_head`` without a classifier."""
        return self.net.forward_head(self.net.forward_features(images))

    def _maps(self, images: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
        return self.net.forward_intermediates(
            images, indices=indices, stop_early=True, intermediates_only=True
        )

    def _read(self, fmap: torch.Tensor, index: int, kind: str, norm: bool | None) -> torch.Tensor:
        if norm is None:
            norm = index == self.num_layers - 1
        if kind == "patch":
            return fmap.flatten(2).transpose(1, 2)
        if kind not in ("cls", "mean"):
            raise ValueError(f"unknown tap kind {kind!r}; known: cls, mean, patch")
        if norm and index == self.num_layers - 1:
            return self.net.forward_head(fmap)  # = forward(): pool + the head's norm
        return fmap.mean(dim=(2, 3))

    def tap(
        self,
        images: torch.Tensor,
        kind: TapKind = "cls",
        layer: int = -1,
        norm: bool | None = None,
    ) -> torch.Tensor:
        """Features of one stage: ``patch`` tokens ``[B, H*W, C]`` (row-major grid), or its
        spatial mean (``mean``, and ``cls``: a CNN has no class token) ``[B, C]``. At the last
        stage ``cls``/``mean`` go through the head by default (``norm``), so ``tap(x, "cls")``
        equals ``forward(x)``; other stages come out raw, like the ViT's blocks."""
        index = self._index(layer)
        (fmap,) = self._maps(images, [index])
        return self._read(fmap, index, kind, norm)

    def tap_layers(self, images: torch.Tensor, kind: str, layers: list[int]) -> list[torch.Tensor]:
        """``tap(images, kind, layer)`` for several stages in one forward pass."""
        index = [self._index(layer) for layer in layers]
        unique = sorted(set(index))
        by_index = dict(zip(unique, self._maps(images, unique), strict=True))
        return [self._read(by_index[i], i, kind, None) for i in index]

"""The vision encoder every objective trains: a timm ViT with a class token and feature taps.

All objectives wrap the *same* encoder class built from the *same* seed, so any difference
between the trained encoders comes from the objective alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import pairwise
from typing import Any, Literal

import timm
import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from timm.models._manipulate import checkpoint_seq
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import nn
from torch.nn import functional as F

from encoderlab.config import StrictModel
from encoderlab.errors import ConfigError

__all__ = [
    "NAMED_SIZES",
    "EncoderConfig",
    "TapKind",
    "VisionEncoder",
    "build_encoder",
    "seeded",
]

# name -> (embed_dim, depth, num_heads); anything else must be a timm ViT name.
NAMED_SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),  # tests and smoke runs
    # A third of tiny's FLOPs for as much learning per labelled step; not the tiny preset's,
    # because at equal samples its self-supervised encoders learn less (docs/results.md,
    # experiments/mini-400 and mini-1200).
    "mini": (128, 4, 4),
    "tiny": (192, 6, 3),  # the CPU preset (64 px, patch 8: 64 patch tokens + CLS)
    "small": (384, 12, 6),
}

TapKind = Literal["cls", "mean", "patch"]


def _known_sizes() -> str:
    return ", ".join(NAMED_SIZES) + ", or a timm ViT name such as vit_base_patch16_224"


# timm CNN families ``encoder.arch`` may name (``encoders.cnn``); kept here for the validator.
CNN_FAMILIES = ("resnet", "convnext")


class EncoderConfig(StrictModel):
    """Architecture and init of the encoder; identical across the objectives of a study.

    ``arch: vit`` (the default) is the ViT below (``size``, ``patch_size``, ``stem``); a timm
    ResNet or ConvNeXt name builds that CNN instead (``encoders.cnn``; ``size``, ``patch_size``
    and ``stem`` are then unused), read for the VLM at ``feature_stage``.
    """

    arch: str = Field("vit", description="vit | a timm ResNet / ConvNeXt name (resnet18, ...)")
    timm_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="CNN only: more timm.create_model arguments, e.g. {depths: [1, 1, 1, 1]}",
    )
    norm: Literal["group", "batch"] = Field(
        "group",
        description="ResNet only: GroupNorm, or BatchNorm over the global batch (all DDP ranks)",
    )
    feature_stage: int = Field(
        -2, description="CNN only: the stage whose grid the VLM reads (-2: penultimate)"
    )
    size: str = Field("tiny", description="micro | mini | tiny | small | a timm ViT name")
    image_size: int = Field(64, gt=0)
    patch_size: int = Field(8, gt=0)
    stem: Literal["patch", "conv"] = Field(
        "patch", description="patchify (ViT) or a stride-2 conv stack (Xiao et al. 2021)"
    )
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, description="init seed: every objective starts from these weights")
    grad_checkpointing: bool = False

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch != "vit" and not (arch.startswith(CNN_FAMILIES) and timm.is_model(arch)):
            raise ValueError(
                f"unknown encoder arch {arch!r}; known: vit, or a timm ResNet / ConvNeXt name "
                "such as resnet18, resnet10t, convnext_atto"
            )
        return arch

    @field_validator("feature_stage")
    @classmethod
    def _stage_exists(cls, stage: int, info: ValidationInfo) -> int:
        arch = info.data.get("arch", "vit")
        if arch != "vit" and "timm_kwargs" in info.data:
            from encoderlab.encoders.cnn import cnn_stage_count

            depth = cnn_stage_count(arch, info.data["timm_kwargs"])
            if not -depth <= stage < depth:
                raise ValueError(
                    f"stage {stage} does not exist in {arch}, which has {depth} stages "
                    f"(0..{depth - 1}, or -{depth}..-1)"
                )
        return stage

    @field_validator("timm_kwargs")
    @classmethod
    def _timm_accepts(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        arch = info.data.get("arch", "vit")
        if kwargs and arch == "vit":
            raise ValueError("only a CNN arch takes timm_kwargs")
        if arch != "vit":
            from encoderlab.encoders.cnn import cnn_stage_count

            try:
                cnn_stage_count(arch, kwargs)
            except (TypeError, ValueError, AssertionError, IndexError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                raise ValueError(f"timm cannot build {arch} with {kwargs} ({first})") from None
        return kwargs

    @field_validator("size")
    @classmethod
    def _known_size(cls, size: str) -> str:
        timm_vit = size.startswith(("vit_", "deit")) and timm.is_model(size)
        if size not in NAMED_SIZES and not timm_vit:
            raise ValueError(f"unknown encoder size {size!r}; known: {_known_sizes()}")
        return size

    @model_validator(mode="after")
    def _patch_divides(self) -> EncoderConfig:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.norm == "batch" and not self.arch.startswith("resnet"):
            raise ValueError(f"norm 'batch' is for a ResNet arch, not {self.arch!r}")
        if self.arch != "vit":
            return self
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ValueError(f"a conv stem needs a power-of-two patch_size, not {self.patch_size}")
        if self.stem == "conv" and self.size not in NAMED_SIZES:
            raise ValueError(f"stem 'conv' is built for the named sizes ({', '.join(NAMED_SIZES)})")
        return self


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (a module's init, on the CPU) with the CPU RNG seeded to ``seed`` inside a
    fork: the result depends on ``seed`` only, and the caller's RNG streams are left as they
    were."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def conv_stem(embed_dim: int, patch_size: int) -> nn.Sequential:
    """Xiao et al. (2021), "Early convolutions help transformers see better": log2(patch)
    stride-2 3x3 convs (widths doubling up to embed_dim / 2) in place of the patchify conv.

    Why: a patchify ViT from scratch does not learn SynthWorld's object categories in a CPU
    budget even with labels (6% after 400 supervised steps at 64 px / patch 8, chance 4%);
    with a conv stem, 19-25% (lr 2e-4 / 1e-3; ``bench/bench_stem.py``), for 3% more FLOPs
    (0.359 vs 0.350 GFLOP/image) and ~12% more time on a 2-core CPU.
    GroupNorm, not BatchNorm: no batch statistics, so DDP ranks and DINO's crops see
    per-sample features. timm's ``HybridEmbed`` adds the 1x1 projection to ``embed_dim``.
    """
    steps = patch_size.bit_length() - 1
    widths = [3] + [max(8, embed_dim >> (steps - i)) for i in range(steps)]
    layers: list[nn.Module] = []
    for cin, cout in pairwise(widths):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.GroupNorm(1, cout), nn.GELU()]
    stem = nn.Sequential(*layers)
    stem.num_features = widths[-1]  # what HybridEmbed reads to size its projection
    return stem


def _make_vit(cfg: EncoderConfig) -> nn.Module:
    # dynamic_img_size: DINO's local crops are smaller than the global ones; timm then
    # interpolates the position embedding (and leaves it untouched at the native size).
    common: dict = dict(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_classes=0,
        drop_path_rate=cfg.drop_path,
        dynamic_img_size=True,
    )
    if cfg.stem == "conv":
        dim = NAMED_SIZES[cfg.size][0]
        grid = cfg.image_size // cfg.patch_size
        stem = conv_stem(dim, cfg.patch_size)
        common.update(
            patch_size=1,  # the stem does the downsampling; HybridEmbed projects 1x1
            embed_layer=partial(HybridEmbed, backbone=stem, feature_size=grid),
        )
    if cfg.size in NAMED_SIZES:
        dim, depth, heads = NAMED_SIZES[cfg.size]
        return VisionTransformer(
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            class_token=True,
            global_pool="token",
            **common,
        )
    return timm.create_model(cfg.size, pretrained=False, **common)


def _plain_block(block: nn.Module) -> bool:
    """A timm ``Block`` whose attention is timm's plain ``Attention`` (no gate)."""
    attn = getattr(block, "attn", None)
    return type(block) is Block and type(attn) is Attention and getattr(attn, "gate", None) is None


def cls_row_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """timm's ``Block.forward`` for the class token's row only: ``[B, T, D] -> [B, 1, D]``.

    Why by hand: objectives pool the last block's CLS token, so the other rows of that block
    (their queries, attention outputs, projections and MLPs) never reach the loss. Skipping
    them is exact and saves 10/12 of the last block's matmuls (1/7 of a 6-block ViT's). No
    library offers a query-subset block; this mirrors timm 1.0's ``Block`` / ``Attention``.
    """
    attn = block.attn
    xn = block.norm1(x)
    batch, tokens, _ = xn.shape
    heads, head_dim, width = attn.num_heads, attn.head_dim, attn.attn_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(xn[:, :1], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(xn, weight[width:], None if bias is None else bias[width:])
    q = q.reshape(batch, 1, heads, head_dim).transpose(1, 2)
    k, v = kv.reshape(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    drop = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
    out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(batch, 1, width))))
    y = x[:, :1] + block.drop_path1(block.ls1(out))
    return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))


class VisionEncoder(nn.Module):
    """A timm ``VisionTransformer`` (class token, no head) with the taps the studies need.

    Inputs are float images already normalised with CLIP's mean/std
    (``encoderlab.data.augment.normalize``).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        with seeded(cfg.seed):
            vit = _make_vit(cfg)
        if not isinstance(vit, VisionTransformer) or vit.cls_token is None:
            raise ConfigError(f"encoder.size: {cfg.size!r} is not a ViT with a class token")
        self.vit = vit
        if cfg.grad_checkpointing:
            self.set_grad_checkpointing(True)

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    @property
    def num_patches(self) -> int:
        """Patch tokens at the native image size (the token count is 1 + this)."""
        return int(self.vit.patch_embed.num_patches)

    @property
    def num_layers(self) -> int:
        return len(self.vit.blocks)

    @property
    def patch_size(self) -> int:
        """Pixels per token side (the patch)."""
        return int(self.cfg.patch_size)

    @property
    def input_stride(self) -> int:
        """Input sizes must be multiples of this: the patch."""
        return int(self.cfg.patch_size)

    def token_layer(self, tap_layer: int = -2) -> int:
        """The block the VLM reads for its ``tap_layer`` (python-style index, checked)."""
        index = tap_layer + self.num_layers if tap_layer < 0 else tap_layer
        if not 0 <= index < self.num_layers:
            raise ValueError(
                f"layer {tap_layer} out of range for a {self.num_layers}-block encoder"
            )
        return index

    def token_grid(self, layer: int | None = None) -> tuple[int, int]:
        """(rows, columns) of the patch grid at the native image size (every block's)."""
        rows, cols = self.vit.patch_embed.grid_size
        return int(rows), int(cols)

    def token_dim(self, layer: int | None = None) -> int:
        """Channels of the patch tokens (every block's)."""
        return self.embed_dim

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens after the final norm: ``[B, 1 + N, D]`` (CLS first)."""
        return self.vit.forward_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The CLS embedding after the final norm: ``[B, D]``.

        Equal (up to float rounding) to ``forward_features(images)[:, 0]``, with the last block
        computed for the CLS row only (``cls_row_block``) where it is a plain timm block.
        """
        vit = self.vit
        if not _plain_block(vit.blocks[-1]):
            return self.forward_features(images)[:, 0]
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        body = vit.blocks[:-1]
        x = checkpoint_seq(body, x) if vit.grad_checkpointing else body(x)
        return vit.norm(cls_row_block(vit.blocks[-1], x))[:, 0]

    def tap(
        self,
        images: torch.Tensor,
        kind: TapKind = "cls",
        layer: int = -1,
        norm: bool | None = None,
    ) -> torch.Tensor:
        """Features of one block: ``cls`` ``[B, D]``, ``mean`` of patch tokens ``[B, D]`` or
        ``patch`` tokens ``[B, N, D]`` (CLS dropped, as LLaVA feeds its projector).

        ``layer`` indexes blocks python-style (-1 last, -2 penultimate). ``norm`` applies the
        final LayerNorm; by default (None) it is applied to the last block only, so
        ``tap(x, "cls")`` equals ``forward(x)``, while earlier blocks come out raw, the way
        LLaVA-1.5 and Prismatic read the penultimate layer.
        """
        depth = self.num_layers
        index = layer + depth if layer < 0 else layer
        if not 0 <= index < depth:
            raise ValueError(f"layer {layer} out of range for a {depth}-block encoder")
        if norm is None:
            norm = index == depth - 1
        patches, prefix = self.vit.forward_intermediates(
            images,
            indices=[index],
            return_prefix_tokens=True,
            norm=norm,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )[0]
        if kind == "cls":
            return prefix[:, 0]
        if kind == "mean":
            return patches.mean(dim=1)
        if kind == "patch":
            return patches
        raise ValueError(f"unknown tap kind {kind!r}; known: cls, mean, patch")


def build_encoder(cfg: EncoderConfig) -> VisionEncoder:
    """The encoder for ``cfg``, initialised from ``cfg.seed`` (never pretrained weights): the
    ViT, or for a CNN ``arch`` an ``encoders.cnn.CnnEncoder`` with the same interface."""
    if cfg.arch != "vit":
        from encoderlab.encoders.cnn import CnnEncoder

        return CnnEncoder(cfg)  # type: ignore[return-value]  # same interface
    return VisionEncoder(cfg)

"""Encoders from outside encoderlab: a timm or OpenCLIP image tower from a local weights file.

A spec reads ``KIND:MODEL=PATH``, e.g. ``timm:vit_tiny_patch16_224=/w/vit.safetensors`` or
``open_clip:ViT-B-32=/w/clip.pt``. The architecture is built by the library with
``pretrained=False`` (nothing is downloaded) and the file loaded into it; the adapter then
follows the interface of ``encoderlab.evaluate.embeddings``: ``forward`` (the model's own image
embedding), ``tap_layers`` (per-block features for CKA) and ``preprocess`` (resize to the model's
input size, its own mean/std), so researchers can analyse their encoders next to ours.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.data.augment import to_unit_float
from encoderlab.errors import EncoderlabError

__all__ = ["KINDS", "ExternalEncoder", "is_external_spec", "load_external", "parse_spec"]

KINDS = ("timm", "open_clip")


def is_external_spec(text: str) -> bool:
    """Whether ``text`` looks like ``KIND:MODEL=PATH`` rather than a run directory."""
    head = text.split("=", 1)[0]
    return ":" in head and not Path(text).exists()


def parse_spec(spec: str) -> tuple[str, str, Path]:
    """``KIND:MODEL=PATH`` -> (kind, model, path); a one-line error names what is wrong."""
    head, sep, path = spec.partition("=")
    kind, colon, model = head.partition(":")
    if not sep or not colon or not model or not path:
        raise EncoderlabError(
            f"{spec}: expected an encoder as KIND:MODEL=WEIGHTS_FILE or a run dir"
        )
    if kind not in KINDS:
        raise EncoderlabError(f"{spec}: unknown encoder kind {kind!r}; known: {', '.join(KINDS)}")
    weights = Path(path)
    if not weights.is_file():
        raise EncoderlabError(f"{weights}: weights file not found (encoder {spec})")
    return kind, model, weights


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


class ExternalEncoder(nn.Module):
    """A library image model behind encoderlab's encoder interface.

    ``inner`` is the image tower; ``num_prefix`` its leading special tokens (1 for a class
    token, 0 for a convnet); ``final_norm`` the norm applied to the last block's tokens.
    """

    def __init__(
        self,
        spec: str,
        inner: nn.Module,
        image_size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        layers: int | None,
        num_prefix: int,
        final_norm: nn.Module | None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.inner = inner.eval().requires_grad_(False)
        self.image_size = image_size
        self.num_layers = layers
        self.num_prefix = num_prefix
        self.final_norm = final_norm
        self.cfg = {"spec": spec.split("=", 1)[0], "image_size": image_size, "mean": mean}
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B,3,H,W]`` -> the model's input: bicubic resize, its own mean/std."""
        x = to_unit_float(images)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images)

    def _intermediates(self, images: torch.Tensor, indices: list[int]) -> list[tuple[Any, Any]]:
        """(patch tokens NLC or maps NCHW, prefix tokens or None) per index, raw."""
        raise NotImplementedError

    def tap_layers(self, images: torch.Tensor, kind: str, layers: list[int]) -> list[torch.Tensor]:
        """``[B, D]`` per block: the class token (``cls``; the spatial mean for models without
        one) or the mean of the patch tokens (``mean``); the last block after the final norm."""
        if self.num_layers is None:
            raise TypeError(f"{self.spec}: this model exposes no per-block features")
        index = [layer % self.num_layers for layer in layers]
        unique = sorted(set(index))
        by_index = dict(zip(unique, self._intermediates(images, unique), strict=True))
        out = []
        for i in index:
            patches, prefix = by_index[i]
            if patches.ndim == 4:  # NCHW feature map (convnets): spatial mean
                out.append(patches.mean(dim=(2, 3)))
                continue
            if i == self.num_layers - 1 and self.final_norm is not None:
                tokens = self.final_norm(torch.cat([prefix, patches], dim=1))
                prefix, patches = tokens[:, : self.num_prefix], tokens[:, self.num_prefix :]
            use_cls = kind == "cls" and prefix is not None and self.num_prefix > 0
            out.append(prefix[:, 0] if use_cls else patches.mean(dim=1))
        return out


class _Timm(ExternalEncoder):
    def _intermediates(self, images: torch.Tensor, indices: list[int]) -> list[tuple[Any, Any]]:
        if self.num_prefix > 0:
            feats = self.inner.forward_intermediates(
                images,
                indices=indices,
                return_prefix_tokens=True,
                norm=False,
                stop_early=True,
                output_fmt="NLC",
                intermediates_only=True,
            )
            return [tuple(f) for f in feats]
        feats = self.inner.forward_intermediates(
            images, indices=indices, stop_early=True, intermediates_only=True
        )
        return [(f, None) for f in feats]


class _OpenClip(ExternalEncoder):
    def _intermediates(self, images: torch.Tensor, indices: list[int]) -> list[tuple[Any, Any]]:
        out = self.inner.forward_intermediates(
            images,
            indices=indices,
            stop_early=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        return list(zip(out["image_intermediates"], out["image_intermediates_prefix"], strict=True))


def _pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load_timm(spec: str, name: str, path: Path) -> ExternalEncoder:
    if not timm.is_model(name):
        raise EncoderlabError(f"{spec}: unknown timm model {name!r}")
    model = timm.create_model(name, pretrained=False, num_classes=0)
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as err:  # safetensors/pickle raise many types for a bad file
        raise EncoderlabError(f"{path}: unreadable weights file ({_first_line(err)})") from None
    # Checkpoints in a model's original layout (OpenAI, JAX...) are converted by the filter
    # timm applies to its own pretrained weights.
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as err:
            raise EncoderlabError(f"{path}: not a {name} checkpoint ({_first_line(err)})") from None
    classifier = model.pretrained_cfg.get("classifier") or "head"
    heads = tuple(classifier) if isinstance(classifier, list | tuple) else (classifier,)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(f"{h}." for h in heads))}
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise EncoderlabError(
                f"{path}: not a {name} checkpoint ({key!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)})"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise EncoderlabError(f"{path}: not a {name} checkpoint ({what})")
    data_cfg = timm.data.resolve_data_config({}, model=model)
    blocks = getattr(model, "blocks", None)
    layers = len(blocks) if blocks is not None else len(getattr(model, "feature_info", []) or [])
    num_prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    return _Timm(
        spec,
        model,
        _pair(data_cfg["input_size"][1:]),
        tuple(data_cfg["mean"]),
        tuple(data_cfg["std"]),
        layers or None,
        num_prefix,
        getattr(model, "norm", None) if num_prefix else None,
    )


def _load_open_clip(spec: str, name: str, path: Path) -> ExternalEncoder:
    if name not in open_clip.list_models():
        raise EncoderlabError(f"{spec}: unknown OpenCLIP model {name!r}")
    # open_clip logs "No pretrained weights loaded ... initialized randomly" on the root logger;
    # untrue here (the file is loaded next), so it is muted for this call.
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(name, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    try:
        result = open_clip.load_checkpoint(model, str(path), strict=False)
    except RuntimeError as err:
        raise EncoderlabError(f"{path}: not a {name} checkpoint ({_first_line(err)})") from None
    except Exception as err:
        raise EncoderlabError(f"{path}: unreadable weights file ({_first_line(err)})") from None
    missing = [k for k in getattr(result, "missing_keys", []) if k.startswith("visual.")]
    if missing:
        raise EncoderlabError(f"{path}: not a {name} checkpoint (missing {missing[0]!r})")
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    transformer = getattr(visual, "transformer", None)
    layers = len(transformer.resblocks) if transformer is not None else None
    return _OpenClip(
        spec,
        visual,
        _pair(visual.image_size),
        mean,
        std,
        layers if hasattr(visual, "forward_intermediates") else None,
        1,
        getattr(visual, "ln_post", None),
    )


def load_external(spec: str) -> ExternalEncoder:
    """Build and load the encoder of ``spec`` (``timm:...`` or ``open_clip:...``), frozen."""
    kind, name, path = parse_spec(spec)
    loader = _load_timm if kind == "timm" else _load_open_clip
    return loader(spec, name, path).eval()

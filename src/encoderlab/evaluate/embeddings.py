"""Frozen-encoder inference over image sets, batched, cached on disk.

Every analysis step reads embeddings through ``embed``: the images of an ``ImageSet`` are
produced (rendered, decoded) at most once and shared by all encoders, and each result is saved
as ``CACHE/<encoder hash>/<image-set key>-<what>.npy``, so a second run loads instead of
recomputing. The encoder hash covers the weights, so a retrained run never reuses stale
embeddings; the image-set key names what the images are (e.g. the world config, split and scene
count of a counterfactual set), so a cache hit needs no rendering at all.

An encoder is anything with ``forward(images) -> [B, D]`` on normalised float images; per-layer
taps (for CKA) come from ``tap_layers(images, kind, layers)`` when the encoder has it, from the
timm ViT inside a ``VisionEncoder`` in one pass, or from ``tap(images, kind, layer)`` per layer.
An encoder with its own input convention (an external timm/OpenCLIP model) has
``preprocess(uint8 images) -> float images``; the default is the study's CLIP normalisation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from timm.models.vision_transformer import VisionTransformer

from encoderlab.data.augment import normalize
from encoderlab.files import tensor_bytes
from encoderlab.precision import Precision, resolve_precision

__all__ = [
    "ImageSet",
    "Precision",
    "cached_json",
    "device_of",
    "embed",
    "encoder_key",
    "num_layers",
    "preprocess",
    "resolve_precision",
    "tap_layers",
]

Encoder = Any  # an nn.Module or callable following the interface above
CACHE_VERSION = 1  # bump when the meaning of cached arrays changes


class ImageSet:
    """Images to embed, named by ``key`` (what they are), produced on first use.

    ``load_all()`` returns all images as ``uint8 [N, 3, H, W]`` and is called at most once;
    ``load_some(indices)`` fetches a few (e.g. for a picture of mined pairs) without producing
    the rest. Embedding from the disk cache calls neither.
    """

    def __init__(
        self,
        key: str,
        length: int,
        load_all: Callable[[], torch.Tensor],
        load_some: Callable[[np.ndarray], torch.Tensor] | None = None,
    ) -> None:
        self.key = key
        self.length = length
        self._load_all = load_all
        self._load_some = load_some
        self._images: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.length

    @property
    def loaded(self) -> bool:
        return self._images is not None

    def tensor(self) -> torch.Tensor:
        """All images (produced on the first call, then kept)."""
        if self._images is None:
            images = self._load_all()
            if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != self.length:
                raise ValueError(
                    f"image set {self.key}: expected uint8 [{self.length}, 3, H, W], "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            self._images = images
        return self._images

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Some images, without producing all of them when ``load_some`` allows."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._images is None and self._load_some is not None:
            return self._load_some(idx)
        return self.tensor()[torch.from_numpy(idx)]

    def head(self, n: int) -> ImageSet:
        """The first ``n`` images as their own set (shares this set's images once produced)."""
        n = min(n, self.length)
        if n == self.length:
            return self
        return ImageSet(
            f"{self.key}-head{n}",
            n,
            lambda: self.tensor()[:n] if self.loaded else self.get(np.arange(n)),
            self.get,
        )


def encoder_key(encoder: Encoder) -> str | None:
    """A hash naming an encoder's behaviour: its ``fingerprint`` attribute if it has one, else
    its class, config and weights. None (no caching) for a stateless callable without one."""
    fingerprint = getattr(encoder, "fingerprint", None)
    if fingerprint is not None:
        return hashlib.sha256(str(fingerprint).encode()).hexdigest()[:16]
    if not isinstance(encoder, torch.nn.Module):
        return None
    h = hashlib.sha256()
    h.update(f"{CACHE_VERSION}|{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    h.update(repr(getattr(encoder, "cfg", None)).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()[:16]


def device_of(encoder: Encoder) -> torch.device:
    """Where the encoder's weights live (CPU for a parameter-free callable)."""
    if isinstance(encoder, torch.nn.Module):
        for p in encoder.parameters():
            return p.device
    return torch.device("cpu")


def preprocess(encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> the encoder's float input (its own ``preprocess``, or CLIP's
    normalisation at the encoder's configured image size)."""
    own = getattr(encoder, "preprocess", None)
    if own is not None:
        return own(images)
    x = normalize(images)
    size = getattr(getattr(encoder, "cfg", None), "image_size", None)
    if isinstance(size, int) and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True)
    return x


def num_layers(encoder: Encoder) -> int | None:
    """Blocks available to ``tap_layers`` (None: only the final embedding)."""
    n = getattr(encoder, "num_layers", None)
    return int(n) if n is not None else None


def tap_layers(
    encoder: Encoder, images: torch.Tensor, kind: str, layers: Sequence[int]
) -> list[torch.Tensor]:
    """``[B, D]`` features (``cls`` token or ``mean`` of patch tokens) of several blocks, in one
    forward pass where the encoder allows it. The final block is taken after the final norm and
    the others raw, matching ``VisionEncoder.tap``."""
    if hasattr(encoder, "tap_layers"):
        return encoder.tap_layers(images, kind, list(layers))
    vit = getattr(encoder, "vit", None)
    if isinstance(vit, VisionTransformer) and kind in ("cls", "mean"):
        depth = len(vit.blocks)
        index = [layer % depth for layer in layers]
        unique = sorted(set(index))
        feats = vit.forward_intermediates(
            images,
            indices=unique,
            return_prefix_tokens=True,
            norm=False,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )
        by_index = dict(zip(unique, feats, strict=True))  # block -> (patch tokens, prefix)
        out = []
        for i in index:
            patches, prefix = by_index[i]
            if i == depth - 1:  # the last block is read after the final norm, as in tap()
                tokens = vit.norm(torch.cat([prefix, patches], dim=1))
                prefix, patches = tokens[:, : prefix.shape[1]], tokens[:, prefix.shape[1] :]
            out.append(prefix[:, 0] if kind == "cls" else patches.mean(dim=1))
        return out
    if hasattr(encoder, "tap"):
        return [encoder.tap(images, kind=kind, layer=layer) for layer in layers]
    raise TypeError(f"{type(encoder).__name__} has no per-layer taps (tap or tap_layers)")


def _cache_path(
    cache_dir: Path | None, enc: str | None, images: ImageSet, what: str, precision: str
) -> Path | None:
    if cache_dir is None or enc is None:
        return None
    return Path(cache_dir) / enc / f"{images.key}-{what}-{precision}.npy"


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def cached_json(path: Path | None, compute: Callable[[], Any]) -> Any:
    """``compute()``, or its earlier result stored as JSON at ``path`` (None: no cache).

    For small derived results (probe accuracies) that cost seconds to recompute."""
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    value = compute()
    if path is not None:
        _atomic_write(path, lambda f: f.write(json.dumps(value).encode()))  # keeps key order
    return value


def embed(
    encoder: Encoder,
    images: ImageSet,
    *,
    layers: Sequence[int] | None = None,
    kind: str = "cls",
    batch_size: int = 256,
    precision: Precision = "auto",
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    description: str = "embedding",
    key: str | None = None,
) -> np.ndarray:
    """Embed every image of ``images``: float32 ``[N, D]`` (the encoder's output), or
    ``[L, N, D]`` block features when ``layers`` is given (layers narrower than the widest, a
    CNN's early stages, end in zero columns). Loaded from the cache when present.

    ``key``: the encoder's ``encoder_key`` if the caller has it (hashing weights takes time).
    """
    device = device_of(encoder)
    prec = resolve_precision(precision, device)
    what = "final" if layers is None else f"{kind}-layers{'_'.join(str(x) for x in layers)}"
    if cache_dir is not None and key is None:
        key = encoder_key(encoder)
    path = _cache_path(Path(cache_dir) if cache_dir else None, key, images, what, prec)
    if path is not None and path.is_file():
        return np.load(path)
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    if not images.loaded and progress is not None:
        loading = progress.add_task(f"rendering/decoding {len(images)} images", total=None)
        all_images = images.tensor()
        progress.update(loading, total=1, completed=1)
    else:
        all_images = images.tensor()
    task = progress.add_task(description, total=len(images)) if progress is not None else None
    chunks: list[np.ndarray] = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=prec == "bf16"),
    ):
        for start in range(0, len(all_images), batch_size):
            x = preprocess(encoder, all_images[start : start + batch_size].to(device))
            if layers is None:
                out = encoder(x).float()
            else:
                # a CNN's stages differ in width: zero columns up to the widest (linear CKA,
                # the one consumer, reads Gram matrices, which zero columns leave as they are)
                feats = [f.float() for f in tap_layers(encoder, x, kind, layers)]
                width = max(f.shape[-1] for f in feats)
                out = torch.stack([F.pad(f, (0, width - f.shape[-1])) for f in feats])
            chunks.append(out.cpu().numpy())
            if task is not None:
                progress.advance(task, len(x))
    result = np.concatenate(chunks, axis=-2).astype(np.float32, copy=False)
    if path is not None:
        _atomic_write(path, lambda f: np.save(f, result))
    return result

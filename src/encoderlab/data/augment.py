"""Batched image augmentations whose randomness belongs to the sample, not to the batch.

Every random parameter of a view is a pure function of ``(seed, sample_id, step, view)``: a
counter-based generator (SplitMix64, vectorised in numpy) hashes that key into a fixed row of
uniforms, one slot per parameter. A sample therefore gets the same crop whichever batch or DDP
rank it lands in, which is what makes a 2-rank run reproduce a 1-process run. (A
``torch.Generator`` per sample would do the same at ~9 µs per sample and view, 3x slower.)

The ops follow torchvision/DINO semantics on float images in [0, 1]: RandomResizedCrop (one
``roi_align`` call crops and resizes the whole batch), horizontal flip, ColorJitter (brightness,
contrast, saturation, hue in a random order per sample, clamped after each), RandomGrayscale,
GaussianBlur (one grouped convolution per axis) and solarize; then CLIP's mean/std
normalisation, shared by all objectives so their inputs are identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision.ops import roi_align

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ViewSpec",
    "augment_views",
    "normalize",
    "sample_uniforms",
    "to_unit_float",
]

CLIP_MEAN = OPENAI_DATASET_MEAN
CLIP_STD = OPENAI_DATASET_STD
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_SOLARIZE_AT = 128 / 255  # PIL's ImageOps.solarize threshold (DINO), on [0, 1] images

# Fixed slots in each sample's row of uniforms: adding an op never reshuffles the others.
_CROP_TRIES = 10  # torchvision's RandomResizedCrop attempts
_S_CROP = 0  # 4 per try: area, log-ratio, top, left
_S_FLIP = 40
_S_JITTER = 41  # apply?, then brightness, contrast, saturation, hue, then 4 order keys
_S_GRAY = 50
_S_BLUR = 51  # apply?, sigma
_S_SOLARIZE = 53
_N_SLOTS = 54


@dataclass(frozen=True)
class ViewSpec:
    """One augmentation pipeline; probabilities of 0 switch an op off."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    jitter_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


# -- counter-based randomness -------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective 64-bit mix (wrapping uint64 arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sample_uniforms(
    seed: int, sample_ids: torch.Tensor, step: int, view: int, n: int = _N_SLOTS
) -> torch.Tensor:
    """Uniforms in [0, 1), ``[B, n]`` float64; row ``b`` depends only on
    ``(seed, sample_ids[b], step, view)``."""
    ids = np.asarray(sample_ids.detach().cpu(), dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        key = np.full(ids.shape, np.int64(seed), dtype=np.int64).view(np.uint64)
        for part in (ids, np.int64(step), np.int64(view)):
            key = _splitmix(_splitmix(key) ^ np.asarray(part, dtype=np.int64).view(np.uint64))
        counters = key[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None] * _GOLDEN
        bits = _splitmix(counters) >> np.uint64(11)  # top 53 bits -> exact doubles
    return torch.from_numpy(bits.astype(np.float64) * 2.0**-53)


def _between(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


# -- ops ----------------------------------------------------------------------------------------


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float32 in [0, 1]; float input is taken as already in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """CLIP mean/std normalisation of a uint8 or [0, 1] float batch (the eval-time transform)."""
    x = to_unit_float(images)
    return _normalize_(x.clone() if x.data_ptr() == images.data_ptr() else x)


def _normalize_(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def _crop_boxes(u: torch.Tensor, height: int, width: int, spec: ViewSpec) -> torch.Tensor:
    """torchvision ``RandomResizedCrop.get_params``, all samples and all 10 tries at once.

    Returns ``[B, 4]`` boxes ``(x1, y1, x2, y2)`` in pixel coordinates (float64).
    """
    tries = u[:, _S_CROP : _S_CROP + 4 * _CROP_TRIES].reshape(-1, _CROP_TRIES, 4)
    area = height * width * _between(tries[..., 0], *spec.scale)
    log_ratio = _between(tries[..., 1], math.log(spec.ratio[0]), math.log(spec.ratio[1]))
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = torch.floor(tries[..., 2] * (height - h + 1))
    left = torch.floor(tries[..., 3] * (width - w + 1))
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)  # first successful try
    w, h, top, left = (t.gather(1, first).squeeze(1) for t in (w, h, top, left))
    # No try succeeded: torchvision's fallback, a centre crop at the clamped aspect ratio.
    in_ratio = width / height
    if in_ratio < min(spec.ratio):
        fw, fh = width, round(width / min(spec.ratio))
    elif in_ratio > max(spec.ratio):
        fw, fh = round(height * max(spec.ratio)), height
    else:
        fw, fh = width, height
    failed = ~ok.any(dim=1)
    w = torch.where(failed, float(fw), w)
    h = torch.where(failed, float(fh), h)
    top = torch.where(failed, float((height - fh) // 2), top)
    left = torch.where(failed, float((width - fw) // 2), left)
    return torch.stack([left, top, left + w, top + h], dim=1)


def _resized_crop(
    source: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop ``boxes`` out of ``source`` (``[2B, ...]``: the images, then their mirror images)
    and resize to ``size`` in one ``roi_align`` call.

    A flipped crop is the crop of the mirrored box in the mirrored image, so flipping costs
    one flip of the source batch, shared by all views, instead of one per view.
    """
    b, width = len(boxes), source.shape[-1]
    x1, y1, x2, y2 = boxes.unbind(1)
    x1, x2 = torch.where(flip, width - x2, x1), torch.where(flip, width - x1, x2)
    index = torch.arange(b, dtype=boxes.dtype) + b * flip.to(boxes.dtype)
    rois = torch.stack([index, x1, y1, x2, y2], dim=1).to(source.device, source.dtype)
    # aligned=True: pixel i covers [i, i+1); sampling_ratio=-1 averages ceil(box/size) samples
    # per output pixel, i.e. bilinear when enlarging and area-averaged (antialiased) when
    # shrinking, like torchvision's antialiased resize.
    return roi_align(source, rois, (size, size), 1.0, -1, True)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``rgb_to_grayscale``: ``[B, 1, H, W]``."""
    r, g, b = _GRAY
    return (r * x[:, 0] + g * x[:, 1] + b * x[:, 2]).unsqueeze(1)


def _color_map(x: torch.Tensor, mat: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``clamp(mat @ pixel + offset)``, one 3x3 matrix and offset per sample (one baddbmm)."""
    offset = offset.to(x.device, x.dtype).view(-1, 1, 1).expand(-1, 3, 1)
    y = torch.baddbmm(offset, mat.to(x.device, x.dtype), x.reshape(len(x), 3, -1))
    return y.view_as(x).clamp_(0.0, 1.0)


def _hue_matrix(hue: torch.Tensor) -> torch.Tensor:
    """Per-sample 3x3 RGB matrices rotating chroma by ``hue`` turns in YIQ space.

    The linear counterpart of torchvision's HSV hue shift (as in NVIDIA DALI's Hue op): the
    exact HSV round trip costs ~15x more per pixel than the other three jitter ops together,
    for a difference invisible in the purpose of the augmentation.
    """
    rgb2yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=torch.float64,
    )
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    theta = hue.to(torch.float64) * 2 * math.pi
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros(len(hue), 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    return yiq2rgb @ rot @ rgb2yiq


def _color_jitter(x: torch.Tensor, u: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """torchvision ColorJitter per sample: the four ops in a random order, clamped after each.

    Each op is an affine colour map, so step ``k`` applies, to every sample at once, the 3x3
    matrix (and offset) of the op that sample has in position ``k``; samples that skip the
    jitter get the identity.
    """
    b = len(x)
    active = (u[:, _S_JITTER] < spec.jitter_p).to(torch.float64)
    f = u[:, _S_JITTER + 1 : _S_JITTER + 5]
    bright = _between(f[:, 0], 1 - spec.brightness, 1 + spec.brightness)
    contrast = _between(f[:, 1], 1 - spec.contrast, 1 + spec.contrast)
    sat = _between(f[:, 2], 1 - spec.saturation, 1 + spec.saturation)
    hue = _between(f[:, 3], -spec.hue, spec.hue)
    order = torch.argsort(u[:, _S_JITTER + 5 : _S_JITTER + 9], dim=1)  # a permutation per sample

    eye = torch.eye(3, dtype=torch.float64).expand(b, 3, 3)
    gray_rows = torch.tensor(_GRAY, dtype=torch.float64).expand(3, 3)  # every channel -> gray
    mats = torch.stack(
        [
            bright[:, None, None] * eye,
            contrast[:, None, None] * eye,
            sat[:, None, None] * eye + (1 - sat)[:, None, None] * gray_rows,
            _hue_matrix(hue),
        ],
        dim=1,
    )  # [B, op, 3, 3]
    # Identity for samples that skip the jitter.
    mats = active[:, None, None, None] * mats + (1 - active)[:, None, None, None] * eye[:, None]
    contrast_w = active * (1 - contrast)  # weight of the grey mean in the contrast blend
    gray_w = torch.tensor(_GRAY, dtype=torch.float64)
    rows = torch.arange(b)
    for k in range(4):
        op = order[:, k]
        offset = torch.zeros(b, dtype=torch.float64)
        if bool((op == 1).any()):
            # contrast blends with the mean grey level of the image as it is at this point
            mean = x.mean(dim=(2, 3)).to("cpu", torch.float64) @ gray_w
            offset = torch.where(op == 1, contrast_w * mean, 0.0)
        x = _color_map(x, mats[rows, op], offset)
    return x


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample, reflect padding (torchvision's)."""
    b, c, h, w = x.shape
    radius = max(1, math.ceil(3 * max_sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.device, x.dtype)  # [B, K]
    kernel = kernel.repeat_interleave(c, dim=0)  # one kernel per (sample, channel) group
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = y.reshape(1, b * c, h + 2 * radius, w + 2 * radius)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)  # vertical
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)  # horizontal
    return y.reshape(b, c, h, w)


def _chosen(u: torch.Tensor, p: float) -> torch.Tensor:
    """Indices of the samples whose uniform falls under probability ``p``."""
    return (u < p).nonzero().squeeze(1)


def _view(
    source: torch.Tensor, u: torch.Tensor, spec: ViewSpec, height: int, width: int
) -> torch.Tensor:
    flip = u[:, _S_FLIP] < spec.flip_p
    x = _resized_crop(source, _crop_boxes(u, height, width, spec), flip, spec.size)
    if spec.jitter_p > 0:
        x = _color_jitter(x, u, spec)
    # The ops below touch only the samples they were drawn for.
    idx = _chosen(u[:, _S_GRAY], spec.grayscale_p)
    if len(idx):
        x[idx] = _gray(x[idx]).expand(-1, 3, -1, -1)
    idx = _chosen(u[:, _S_BLUR], spec.blur_p)
    if len(idx):
        sigma = _between(u[idx, _S_BLUR + 1], *spec.blur_sigma)
        x[idx] = _gaussian_blur(x[idx], sigma, spec.blur_sigma[1])
    idx = _chosen(u[:, _S_SOLARIZE], spec.solarize_p)
    if len(idx):
        v = x[idx]
        x[idx] = torch.where(v >= _SOLARIZE_AT, 1.0 - v, v)
    return _normalize_(x)


def augment_views(
    images: torch.Tensor,
    sample_ids: torch.Tensor,
    specs: list[ViewSpec],
    *,
    seed: int,
    step: int,
) -> list[torch.Tensor]:
    """Augmented, normalised views of every image, one per spec (view ``v`` uses
    ``specs[v]``): ``[B, 3, spec.size, spec.size]`` float32 each, on the images' device.

    ``images`` is uint8 (or float in [0, 1]) ``[B, 3, H, W]``; ``sample_ids`` the int64 global
    sample indices that, with ``seed``, ``step`` and the view index, fix every random choice
    (drawn on the CPU, so the parameters do not depend on the device).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    if len(sample_ids) != len(images):
        raise ValueError(f"{len(sample_ids)} sample ids for {len(images)} images")
    x = to_unit_float(images)
    source = torch.cat([x, x.flip(-1)]) if any(s.flip_p > 0 for s in specs) else x
    height, width = x.shape[-2:]
    return [
        _view(source, sample_uniforms(seed, sample_ids, step, view), spec, height, width)
        for view, spec in enumerate(specs)
    ]

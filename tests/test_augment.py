"""Batched augmentations: per-sample determinism, geometry, colour ops, value ranges."""

from __future__ import annotations

import math

import pytest
import torch

from encoderlab.data.augment import (
    CLIP_MEAN,
    CLIP_STD,
    ViewSpec,
    _crop_boxes,
    augment_views,
    normalize,
    sample_uniforms,
)

DINO_LIKE = [
    ViewSpec(32, (0.4, 1.0), flip_p=0.5, jitter_p=0.8, grayscale_p=0.2, blur_p=1.0),
    ViewSpec(32, (0.4, 1.0), flip_p=0.5, jitter_p=0.8, grayscale_p=0.2, blur_p=0.1, solarize_p=0.2),
    ViewSpec(16, (0.05, 0.4), flip_p=0.5, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5),
]
FULL = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))  # the crop is the whole image


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (12, 3, 32, 32), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return x * std + mean


def test_sample_uniforms_depend_on_the_key_only() -> None:
    ids = torch.tensor([3, 9, 3, -1])
    u = sample_uniforms(5, ids, step=2, view=1, n=7)
    assert u.shape == (4, 7) and u.dtype == torch.float64
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(u[1:2], sample_uniforms(5, ids[1:2], step=2, view=1, n=7))
    for other in (dict(step=3, view=1), dict(step=2, view=0)):
        assert not torch.equal(u, sample_uniforms(5, ids, n=7, **other))
    assert not torch.equal(u, sample_uniforms(6, ids, step=2, view=1, n=7))
    big = sample_uniforms(0, torch.arange(20_000), step=0, view=0, n=4)
    assert big.min() >= 0 and big.max() < 1
    assert abs(big.mean().item() - 0.5) < 0.005 and abs(big.var().item() - 1 / 12) < 0.002


def test_same_sample_same_view_whatever_the_batch(images: torch.Tensor) -> None:
    ids = torch.arange(100, 112)
    full = augment_views(images, ids, DINO_LIKE, seed=1, step=4)
    # a DDP rank's half, and a shuffled sub-batch, give bitwise the same rows
    for rows in (torch.arange(6, 12), torch.tensor([7, 2, 11])):
        part = augment_views(images[rows], ids[rows], DINO_LIKE, seed=1, step=4)
        for v in range(len(DINO_LIKE)):
            assert torch.equal(part[v], full[v][rows])
    again = augment_views(images, ids, DINO_LIKE, seed=1, step=4)
    assert all(torch.equal(a, b) for a, b in zip(full, again, strict=True))
    later = augment_views(images, ids, DINO_LIKE, seed=1, step=5)
    assert not torch.equal(full[0], later[0])
    assert not torch.equal(full[0], full[1])  # two global views differ


def test_shapes_and_value_range(images: torch.Tensor) -> None:
    views = augment_views(images, torch.arange(12), DINO_LIKE, seed=0, step=0)
    assert [tuple(v.shape) for v in views] == [(12, 3, 32, 32), (12, 3, 32, 32), (12, 3, 16, 16)]
    for v in views:
        assert v.dtype == torch.float32
        pixels = unnormalize(v)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # a float batch in [0, 1] gives the same views as its uint8 original
    as_float = augment_views(images.float() / 255, torch.arange(12), DINO_LIKE, seed=0, step=0)
    torch.testing.assert_close(as_float[0], views[0])


def test_crop_boxes_follow_random_resized_crop() -> None:
    spec = ViewSpec(16, (0.05, 0.4))
    boxes = _crop_boxes(sample_uniforms(0, torch.arange(4000), 0, 0), 48, 64, spec)
    x1, y1, x2, y2 = boxes.unbind(1)
    w, h = x2 - x1, y2 - y1
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 64).all() and (y2 <= 48).all()
    assert torch.equal(w, w.round()) and torch.equal(x1, x1.round())  # integer boxes
    area = w * h / (48 * 64)
    assert area.min() > 0.04 and area.max() < 0.42  # scale range, up to rounding
    aspect = (w / h).log()
    assert aspect.abs().max() < math.log(4 / 3) + 0.15
    assert area.std() > 0.05 and x1.std() > 3  # really random


def test_full_crop_and_flip_are_exact(images: torch.Tensor) -> None:
    ids = torch.arange(12)
    (same,) = augment_views(images, ids, [ViewSpec(32, **FULL)], seed=0, step=0)
    torch.testing.assert_close(same, normalize(images))
    (flipped,) = augment_views(images, ids, [ViewSpec(32, flip_p=1.0, **FULL)], seed=0, step=0)
    torch.testing.assert_close(flipped, normalize(images.flip(-1)))
    (half,) = augment_views(images, ids, [ViewSpec(32, flip_p=0.5, **FULL)], seed=0, step=0)
    is_flipped = [torch.allclose(half[i], flipped[i]) for i in range(12)]
    assert 0 < sum(is_flipped) < 12


def test_grayscale_and_solarize(images: torch.Tensor) -> None:
    ids = torch.arange(12)
    (gray,) = augment_views(images, ids, [ViewSpec(32, grayscale_p=1.0, **FULL)], seed=0, step=0)
    gray = unnormalize(gray)
    torch.testing.assert_close(gray[:, 0], gray[:, 1], atol=1e-5, rtol=0)
    x = images.float() / 255
    torch.testing.assert_close(
        gray[:, 0], 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-5, rtol=0
    )
    (sol,) = augment_views(images, ids, [ViewSpec(32, solarize_p=1.0, **FULL)], seed=0, step=0)
    expected = torch.where(images >= 128, 255 - images, images)
    torch.testing.assert_close(sol, normalize(expected), atol=1e-5, rtol=0)


def test_brightness_jitter_scales_each_image_by_one_factor(images: torch.Tensor) -> None:
    dim = (images // 2).clamp(min=1)  # no clamping at 1.4x brightness
    spec = ViewSpec(32, jitter_p=1.0, brightness=0.4, contrast=0, saturation=0, hue=0, **FULL)
    (out,) = augment_views(dim, torch.arange(12), [spec], seed=3, step=0)
    ratio = unnormalize(out) / (dim.float() / 255)
    factors = ratio.flatten(1).median(dim=1).values
    torch.testing.assert_close(ratio, factors.view(-1, 1, 1, 1).expand_as(ratio), atol=1e-4, rtol=0)
    assert factors.min() >= 0.6 and factors.max() <= 1.4 and factors.std() > 0.05


def test_colour_jitter_keeps_grey_grey_and_blur_keeps_flat_flat() -> None:
    levels = torch.linspace(20, 230, 12).to(torch.uint8)
    flat = levels.view(12, 1, 1, 1).expand(12, 3, 32, 32).contiguous()
    # hue rotation and saturation leave a grey image unchanged (up to torchvision's grey
    # weights summing to 0.9999); blur leaves a flat one unchanged
    spec = ViewSpec(32, jitter_p=1.0, brightness=0, contrast=0, blur_p=1.0, **FULL)
    (out,) = augment_views(flat, torch.arange(12), [spec], seed=0, step=0)
    torch.testing.assert_close(out, normalize(flat), atol=1e-4, rtol=0)


def test_blur_smooths(images: torch.Tensor) -> None:
    spec = ViewSpec(32, blur_p=1.0, blur_sigma=(1.0, 2.0), **FULL)
    (blurred,) = augment_views(images, torch.arange(12), [spec], seed=0, step=0)
    sharp = normalize(images)
    assert (blurred.flatten(1).std(1) < 0.6 * sharp.flatten(1).std(1)).all()
    torch.testing.assert_close(blurred.mean(), sharp.mean(), atol=0.02, rtol=0)


def mid_images(n: int = 6) -> torch.Tensor:
    """Colourful images in [0.35, 0.65]: no channel clips under the jitter ranges below."""
    g = torch.Generator().manual_seed(2)
    return (torch.rand(n, 3, 32, 32, generator=g) * 0.3 + 0.35).mul(255).round().to(torch.uint8)


def test_contrast_jitter_blends_with_the_mean_grey_level() -> None:
    imgs = mid_images()
    spec = ViewSpec(32, jitter_p=1.0, brightness=0, contrast=0.4, saturation=0, hue=0, **FULL)
    (out,) = augment_views(imgs, torch.arange(6), [spec], seed=0, step=0)
    x, y = imgs.float() / 255, unnormalize(out)
    grey = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))
    # y = c * x + (1 - c) * grey, with one c per image in [0.6, 1.4]
    c = ((y - grey.view(-1, 1, 1, 1)) / (x - grey.view(-1, 1, 1, 1))).flatten(1).median(1).values
    expected = c.view(-1, 1, 1, 1) * x + (1 - c.view(-1, 1, 1, 1)) * grey.view(-1, 1, 1, 1)
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=0)
    assert c.min() >= 0.6 and c.max() <= 1.4 and c.std() > 0.05


def test_hue_jitter_rotates_chroma_at_constant_luma() -> None:
    imgs = mid_images()
    spec = ViewSpec(32, jitter_p=1.0, brightness=0, contrast=0, saturation=0, hue=0.1, **FULL)
    (out,) = augment_views(imgs, torch.arange(6), [spec], seed=0, step=0)
    x, y = imgs.float() / 255, unnormalize(out)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((y * luma).sum(1), (x * luma).sum(1), atol=1e-4, rtol=0)
    changed = (y - x).abs().amax(dim=(1, 2, 3)) > 0.01
    assert changed.sum() >= 4  # hues are drawn in [-0.1, 0.1] turns: most images change colour

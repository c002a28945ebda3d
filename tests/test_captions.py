"""Captions: mention rates follow the policy, words match the scene, determinism."""

from __future__ import annotations

import random
import re

import pytest

from encoderlab.data.synthworld import (
    CaptionPolicy,
    WorldConfig,
    generate_sample,
    make_caption,
    sample_document,
    sample_object_scene,
    vocab,
)
from encoderlab.data.synthworld.captions import (
    BACKGROUND_PHRASES,
    SIZE_WORDS,
    STYLE_PHRASES,
    STYLE_TEMPLATES,
    TEMPLATES,
    TEXTURE_WORDS,
    relation,
)

ALL = ("category", "text", "count", "spatial", "colour", "texture", "style", "background", "size")
COUNT_WORDS = ("one", "single", "two", "three")


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random(11)
    return [sample_object_scene(rng, 64, (1, 3), 0.5) for _ in range(2000)]


def _unquoted(caption: str) -> str:
    """The caption without the quoted embedded text (which may be any word)."""
    return re.sub(r'"[^"]*"', '""', caption).lower()


def _has(caption: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", _unquoted(caption)) is not None


def _present(factor: str, scene, caption: str) -> bool:
    """Whether the caption's words mention ``factor`` of the primary object / the scene."""
    o = scene.objects[0]
    if factor == "category":
        return _has(caption, o.category)
    if factor == "colour":
        return _has(caption, o.colour)
    if factor == "texture":
        return _has(caption, TEXTURE_WORDS[o.texture])
    if factor == "size":
        return any(_has(caption, w) for w in SIZE_WORDS[o.size])
    if factor == "style":
        return any(_has(caption, p) for p in STYLE_PHRASES[o.style])
    if factor == "background":
        return any(_has(caption, p) for p in BACKGROUND_PHRASES[scene.background])
    if factor == "text":
        return scene.text.content is not None and f'"{scene.text.content}"' in caption
    if factor == "count":
        return any(_has(caption, w) for w in COUNT_WORDS)
    if factor == "spatial":
        return len(scene.objects) > 1 and _has(
            caption, relation(scene.objects[0], scene.objects[1])
        )
    raise ValueError(factor)


def _captions(scenes, policy, seed=0):
    rng = random.Random(seed)
    return [make_caption(s, policy, rng) for s in scenes]


def test_default_mention_rates_match_policy(scenes):
    policy = CaptionPolicy()
    caps = _captions(scenes, policy)
    for factor in ("category", "colour", "texture", "style", "background", "size"):
        said = sum(m[factor] for _, m in caps) / len(caps)
        seen = sum(_present(factor, s, c) for s, (c, _) in zip(scenes, caps, strict=True)) / len(
            caps
        )
        assert abs(said - getattr(policy, factor)) < 0.03, factor
        assert abs(seen - getattr(policy, factor)) < 0.03, factor
    with_text = [(s, c) for s, c in zip(scenes, caps, strict=True) if s.text.content is not None]
    rate = sum(_present("text", s, c) for s, (c, _) in with_text) / len(with_text)
    assert abs(rate - policy.text) < 0.04


@pytest.mark.parametrize("factor", ALL)
def test_probability_one_always_zero_never(scenes, factor):
    sub = scenes[:300]
    for p in (0.0, 1.0):
        caps = _captions(sub, CaptionPolicy(**{factor: p}), seed=1)
        for scene, (caption, mentions) in zip(sub, caps, strict=True):
            applicable = {
                "text": scene.text.content is not None,
                "spatial": len(scene.objects) > 1,
            }.get(factor, True)
            expected = bool(p) and applicable
            assert mentions[factor] == expected
            if factor != "count":  # count words can come from nowhere else
                assert _present(factor, scene, caption) == expected, (factor, caption)
            elif expected:
                assert _present(factor, scene, caption), caption


def test_one_knob_does_not_reshuffle_the_others(scenes):
    sub = scenes[:200]
    a = _captions(sub, CaptionPolicy(colour=0.0), seed=3)
    b = _captions(sub, CaptionPolicy(colour=1.0), seed=3)
    for (_, ma), (_, mb) in zip(a, b, strict=True):
        assert {k: v for k, v in ma.items() if k != "colour"} == {
            k: v for k, v in mb.items() if k != "colour"
        }


def test_all_objects_named_and_counts_right(scenes):
    caps = _captions(scenes[:300], CaptionPolicy(category=1.0, count=1.0, spatial=0.0), seed=4)
    for scene, (caption, _) in zip(scenes[:300], caps, strict=True):
        for o in scene.objects:
            assert _has(caption, o.category)
        word = {1: ("single", "one"), 2: ("two",), 3: ("three",)}[len(scene.objects)]
        assert any(_has(caption, w) for w in word), caption


def test_captions_are_deterministic_per_sample():
    cfg = WorldConfig(seed=3)
    first = [generate_sample(cfg, "train", i)["text"] for i in range(30)]
    again = [generate_sample(cfg, "train", i)["text"] for i in range(30)]
    assert first == again
    assert len(set(first)) >= 25


def test_template_count_and_variety(scenes):
    assert len(TEMPLATES) + len(STYLE_TEMPLATES) >= 20
    caps = [c for c, _ in _captions(scenes[:600], CaptionPolicy())]
    starts = {" ".join(c.lower().split()[:2]) for c in caps}
    assert len(starts) >= 20


@pytest.mark.parametrize("kind", vocab.DOC_KINDS)
def test_doc_captions(kind):
    rng = random.Random(5)
    for _ in range(10):
        doc = sample_document(rng, 64, kind)
        plain, m0 = make_caption(doc, CaptionPolicy(doc_values=0.0), rng)
        full, m1 = make_caption(doc, CaptionPolicy(doc_values=1.0), rng)
        assert doc.title.lower() in plain.lower() and doc.title.lower() in full.lower()
        assert m0 == {"doc_values": False} and m1 == {"doc_values": True}
        if kind in ("bar", "line", "pie"):
            assert "chart" in plain.lower() or "graph" in plain.lower()
            for label, value in doc.rows:
                assert f"{label} {value}" in full
        elif kind == "table":
            assert all(h in full for h in doc.header)
        else:
            assert f'"{doc.rows[0][0]}"' in full

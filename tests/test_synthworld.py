"""SynthWorld: metadata matches pixels, counterfactuals stay in their region, determinism."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from PIL import Image

from encoderlab.config import parse_config
from encoderlab.data.preview import preview_grid
from encoderlab.data.synthworld import (
    FACTORS,
    FONTS,
    DocScene,
    Obj,
    Scene,
    Text,
    WorldConfig,
    counterfactual,
    font_path,
    generate_sample,
    render,
    sample_document,
    sample_object_scene,
    scene_masks,
    vocab,
)
from encoderlab.data.synthworld.fonts import font
from encoderlab.errors import ConfigError, EncoderlabError

NO_TEXT = Text(None, "word", "DejaVuSans", "medium", "black", None, (0.5, 0.15))


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


def _box_mask(box, size: int) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def _scenes(n: int, size: int = 64, seed: int = 0, text_prob: float = 0.5) -> list[Scene]:
    rng = random.Random(seed)
    return [sample_object_scene(rng, size, (1, 3), text_prob) for _ in range(n)]


def test_vocabulary_meets_minimums():
    supers = {s for s, _ in vocab.CATEGORIES.values()}
    assert len(vocab.CATEGORIES) >= 24 and len(supers) >= 4
    assert all(sum(s == x for x, _ in vocab.CATEGORIES.values()) >= 4 for s in supers)
    assert len(vocab.COLOURS) >= 8 and len(vocab.TEXTURES) >= 4
    assert len(vocab.STYLES) >= 4 and len(vocab.BACKGROUNDS) >= 4
    assert len(set(vocab.WORDS)) >= 300
    assert len(FONTS) >= 4
    for name in FONTS:
        assert font_path(name).is_file()
        assert font(name, 12).getlength("abc") > 0


def test_unknown_font_is_one_line_error():
    with pytest.raises(EncoderlabError, match="unknown font 'Comic'"):
        font_path("Comic")


def test_sample_structure_and_json_meta():
    cfg = WorldConfig(doc_share=0.3)
    kinds = set()
    for i in range(40):
        s = generate_sample(cfg, "train", i)
        assert s["__key__"] == f"train-{i:08d}"
        assert s["image"].mode == "RGB" and s["image"].size == (64, 64)
        assert isinstance(s["text"], str) and s["text"]
        meta = json.loads(json.dumps(s["meta"]))
        assert meta == s["meta"]
        kinds.add(meta["kind"])
        if meta["kind"] == "objects":
            for o in meta["objects"]:
                assert {
                    "category",
                    "colour",
                    "texture",
                    "style",
                    "size",
                    "position",
                    "bbox",
                } <= set(o)
            assert set(meta["mentions"]) >= {"category", "colour", "text"}
    assert "objects" in kinds and len(kinds) >= 3


def test_primary_object_has_its_colour_for_every_category():
    """Flat, solid: the object's colour is the commonest of its opaque pixels; meta bbox is the
    mask's box; nothing outside the box differs from the background."""
    colours = list(vocab.COLOURS)
    for i, cat in enumerate(vocab.CATEGORIES):
        colour = colours[i % len(colours)]
        obj = Obj(cat, colour, "solid", "flat", "large", (0.45, 0.55), bool(i % 2), i)
        scene = Scene(64, "plain", 3, (obj,), NO_TEXT)
        img = _arr(render(scene))
        alpha = scene_masks(scene)["object0"]
        pixels = img[alpha == 255]
        values, counts = np.unique(pixels, axis=0, return_counts=True)
        assert tuple(values[counts.argmax()]) == vocab.COLOURS[colour], cat  # the mode
        share = np.all(pixels == vocab.COLOURS[colour], axis=1).mean()
        assert share > 0.3, (cat, share)
        bbox = scene.to_meta()["objects"][0]["bbox"]
        ys, xs = np.nonzero(alpha)
        assert bbox == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        bg = _arr(render(dataclasses.replace(scene, objects=())))
        assert not np.any((img != bg).any(axis=2) & ~_box_mask(bbox, 64))


def test_text_is_where_the_metadata_says():
    scenes = [s for s in _scenes(60, text_prob=1.0, seed=1)]
    for scene in scenes:
        meta = scene.to_meta()["text"]
        box = _box_mask(meta["bbox"], 64)
        with_text, without = _arr(render(scene)), _arr(render(scene.replace(text=None)))
        diff = (with_text != without).any(axis=2)
        assert diff.any()
        assert not np.any(diff & ~box), "text pixels outside the text box"
        assert diff[box].mean() > 0.1  # the box is mostly ink (or plate), not empty space


def _owner_boxes(meta: dict, factor: str, obj: int) -> list[list[int]]:
    if factor in ("text", "font"):
        return [meta["text"]["bbox"]] if meta["text"] else []
    return [meta["objects"][obj]["bbox"]]


def _strip(meta: dict) -> dict:
    meta = json.loads(json.dumps(meta))
    for o in meta["objects"]:
        o.pop("bbox")
    if meta["text"]:
        meta["text"].pop("bbox")
    return meta


@pytest.mark.parametrize("factor", [*FACTORS, "font"])
def test_counterfactual_changes_only_its_factor_and_region(factor):
    rng = np.random.default_rng(0)
    scenes = _scenes(25, seed=2, text_prob=0.7)
    for scene in scenes:
        if factor == "font" and scene.text.content is None:
            continue
        obj = len(scene.objects) - 1 if factor in ("colour", "size") else 0
        cf = counterfactual(scene, factor, rng, obj=obj)
        a, b = scene.to_meta(), cf.to_meta()
        # metadata: exactly the factor differs
        sa, sb = _strip(a), _strip(b)
        key = {"font": "font", "text": "content"}.get(factor, factor)
        if factor == "background":
            assert sa["background"]["style"] != sb["background"]["style"]
            sa["background"] = sb["background"]
        elif factor in ("text", "font"):
            assert sa["text"] is None or sa["text"][key] != sb["text"][key]
            sa["text"], sb["text"] = None, None
        else:
            assert sa["objects"][obj][key] != sb["objects"][obj][key]
            sa["objects"][obj][key] = sb["objects"][obj][key]
            if factor == "category":  # the superclass follows the category
                sa["objects"][obj]["superclass"] = sb["objects"][obj]["superclass"]
        assert sa == sb
        # pixels: the difference stays in the factor's region
        diff = (_arr(render(scene)) != _arr(render(cf))).any(axis=2)
        # every change shows, except a texture under the outline style (line art has no fill)
        invisible = factor == "texture" and scene.objects[obj].style == "outline"
        assert diff.any() != invisible, (factor, scene)
        if factor == "background":
            opaque = np.zeros((64, 64), dtype=bool)
            for m in scene_masks(scene).values():
                opaque |= m == 255
            assert not np.any(diff & opaque)
        else:
            region = np.zeros((64, 64), dtype=bool)
            for box in _owner_boxes(a, factor, obj) + _owner_boxes(b, factor, obj):
                region |= _box_mask(box, 64)
            assert not np.any(diff & ~region), factor


def test_replace_keeps_everything_else_and_validates():
    scene = _scenes(1, seed=3)[0]
    red = scene.replace(colour="red", obj="all")
    assert all(o.colour == "red" for o in red.objects)
    assert [dataclasses.replace(o, colour="x") for o in red.objects] == [
        dataclasses.replace(o, colour="x") for o in scene.objects
    ]
    with pytest.raises(EncoderlabError, match="unknown factor 'hue'"):
        scene.replace(hue="red")
    with pytest.raises(EncoderlabError, match="invalid colour 'mauve'"):
        scene.replace(colour="mauve")
    with pytest.raises(EncoderlabError, match="out of range"):
        scene.replace(obj=5, colour="red")
    doc = sample_document(random.Random(0), 64, "bar")
    with pytest.raises(EncoderlabError, match="object scene"):
        counterfactual(doc, "colour", random.Random(0))


def test_same_seed_same_bytes_in_another_process():
    cfg = WorldConfig(seed=7, doc_share=0.2)
    here = [generate_sample(cfg, "val", i) for i in range(12)]
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        there = list(pool.map(generate_sample, [cfg] * 12, ["val"] * 12, range(12)))
    for a, b in zip(here, there, strict=True):
        assert np.asarray(a["image"]).tobytes() == np.asarray(b["image"]).tobytes()
        assert a["meta"] == b["meta"] and a["text"] == b["text"]


def test_other_seed_split_or_index_gives_other_samples():
    def key(cfg, split, i):
        s = generate_sample(cfg, split, i)
        return np.asarray(s["image"]).tobytes(), s["text"]

    base = WorldConfig(seed=0)
    ref = [key(base, "train", i) for i in range(10)]
    assert len(set(ref)) == 10
    for other in (
        [key(WorldConfig(seed=1), "train", i) for i in range(10)],
        [key(base, "suite-ocr", i) for i in range(10)],
    ):
        assert sum(a == b for a, b in zip(ref, other, strict=True)) == 0


def test_text_and_doc_shares_follow_config():
    cfg = WorldConfig(doc_share=0.1, text_prob=0.5)
    metas = [generate_sample(cfg, "rates", i)["meta"] for i in range(800)]
    docs = sum(m["kind"] != "objects" for m in metas) / len(metas)
    objs = [m for m in metas if m["kind"] == "objects"]
    text = sum(m["text"] is not None for m in objs) / len(objs)
    assert abs(docs - 0.1) < 0.035 and abs(text - 0.5) < 0.06
    counts = {m["num_objects"] for m in objs}
    assert counts == {1, 2, 3}


def test_objects_and_text_do_not_overlap():
    for scene in _scenes(80, seed=4):
        meta = scene.to_meta()
        boxes = [o["bbox"] for o in meta["objects"]] + (
            [meta["text"]["bbox"]] if meta["text"] else []
        )
        masks = [_box_mask(b, 64) for b in boxes]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                assert not np.any(masks[i] & masks[j])


@pytest.mark.parametrize("kind", vocab.DOC_KINDS)
def test_doc_content_matches_pixels(kind):
    for seed in range(6):
        doc = sample_document(random.Random(seed), 64, kind)
        meta = doc.to_meta()
        img = _arr(render(doc))
        paper = np.array(vocab.DOC_PAPERS[doc.paper])
        ink = (img != paper).any(axis=2)
        boxes = []
        if kind in ("bar", "line", "pie"):
            items = meta["items"]
            assert [it["label"] for it in items] == [r[0] for r in doc.rows]
            boxes = [it["label_bbox"] for it in items] + [it["value_bbox"] for it in items]
            if kind == "bar":  # taller bar for larger value
                heights = [it["bbox"][3] - it["bbox"][1] for it in items]
                order = np.argsort([it["value"] for it in items])
                assert np.all(np.diff(np.array(heights)[order]) >= 0)
                top = max(items, key=lambda it: it["value"])
                assert heights[items.index(top)] == max(heights)
            if kind == "pie":
                assert sum(it["value"] for it in items) == 100
        elif kind == "table":
            cells = [list(doc.header), *map(list, doc.rows)]
            assert [len(r) for r in meta["cell_boxes"]] == [len(r) for r in cells]
            boxes = [b for row in meta["cell_boxes"] for b in row]
        else:
            assert [ln["text"] for ln in meta["lines"]] == [r[0] for r in doc.rows]
            assert len(meta["lines"]) >= 3
            boxes = [ln["bbox"] for ln in meta["lines"]] + [meta["title_bbox"]]
        for box in boxes:
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64, box
            assert ink[y0:y1, x0:x1].mean() > 0.05, (kind, box)


def test_scales_to_224_and_keeps_layout():
    scene = _scenes(1, seed=5, text_prob=1.0)[0]
    big = dataclasses.replace(scene, size=224)
    img = render(big)
    assert img.size == (224, 224)
    small_box = np.array(scene.to_meta()["objects"][0]["bbox"]) / 64
    big_box = np.array(big.to_meta()["objects"][0]["bbox"]) / 224
    assert np.abs(small_box - big_box).max() < 0.08
    doc = sample_document(random.Random(1), 224, "table")
    assert len(doc.rows) > 3 and len(doc.header) == 3


def test_world_config_validation():
    cfg = parse_config(WorldConfig, {"image_size": 96, "caption": {"colour": 0.5}})
    assert cfg.caption.colour == 0.5 and cfg.caption.category == 0.9
    with pytest.raises(ConfigError, match="num_objects"):
        parse_config(WorldConfig, {"num_objects": [2, 1]}, "world.yaml")
    with pytest.raises(ConfigError, match=r"world.yaml: caption.hue: unknown key"):
        parse_config(WorldConfig, {"caption": {"hue": 1}}, "world.yaml")


def test_preview_grid_writes_png(tmp_path):
    samples = [generate_sample(WorldConfig(), "train", i) for i in range(10)]
    path = preview_grid(samples, tmp_path / "grid.png", cols=4, scale=2)
    img = Image.open(path)
    assert img.width == 4 * (128 + 6) + 6 and img.height > 3 * 128
    assert isinstance(DocScene, type)

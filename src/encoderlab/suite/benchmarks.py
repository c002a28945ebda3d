"""The synthetic benchmarks: deterministic SynthWorld items, cached as VLMEvalKit TSV files.

Benchmark ``b`` draws its images from the SynthWorld split ``suite-<b>`` (disjoint from train /
val / test by construction of the per-sample seeds), walking sample indices 0, 1, 2... and
keeping a sample when its question generator applies (and, for balanced benchmarks, when its
answer class still has room: every class gets the same share). Each benchmark conditions the
world on what its questions need instead of rejecting most samples: OCR benchmarks always have
text, Doc&Chart ones draw only their document kind, relation benchmarks ask for 2-3 objects.
Everything else (vocabularies, layout, rendering) is the world the encoders were trained on.

Items are cached to ``<cache>/<benchmark>-<n>-<hash>.tsv`` (hash of the world config, the
benchmark and ``GENERATOR_VERSION``), which doubles as an export for VLMEvalKit.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoderlab.config import config_hash
from encoderlab.data.synthworld import (
    WorldConfig,
    counterfactual,
    render,
    sample_document,
    sample_object_scene,
    sample_rngs,
    vocab,
)
from encoderlab.errors import DataError
from encoderlab.suite.formats import MCItem, encode_image, load_table, write_table
from encoderlab.suite.questions import (
    COUNT_OPTIONS,
    LETTERS,
    TEXTURELESS_STYLES,
    Question,
    attribute_phrase,
    count_question,
    generate,
    pair_questions,
)
from encoderlab.suite.registry import Benchmark

__all__ = ["GENERATOR_VERSION", "build_items", "cache_path", "load_items", "prepare"]

GENERATOR_VERSION = 1  # bump when generators change: cached items are then rebuilt
# Give up (with an error) when a world cannot support a benchmark: after this many samples per
# item (the hungriest benchmark needs ~7), or at once if the first samples yield nothing.
MAX_SAMPLES_PER_ITEM = 50
FIRST_SAMPLES = 2000


def _samples(n_items: int, items: list[MCItem]):
    """Sample indices 0, 1, 2... until ``n_items`` items or one of the give-up limits."""
    for index in range(MAX_SAMPLES_PER_ITEM * n_items):
        if len(items) >= n_items or (index >= FIRST_SAMPLES and not items):
            return
        yield index


# What each benchmark needs from a scene (overrides of the world's sampling).
DOC_KINDS: dict[str, tuple[str, ...]] = {
    "chart_value": ("bar", "line", "pie"),
    "chart_argmax": ("bar", "line", "pie"),
    "table": ("table",),
    "document": ("document",),
    "diagram": ("pie",),
}
SCENE_OVERRIDES: dict[str, dict[str, Any]] = {
    "read_word": {"text_prob": 1.0},
    "read_number": {"text_prob": 1.0},
    "spatial": {"num_objects": (2, 3)},
    "size": {"num_objects": (2, 3)},
    "odd_one_out": {"num_objects": (3, 3), "text_prob": 0.0},
    "count": {"num_objects": (3, 3), "text_prob": 0.0},
    "arithmetic": {"text_prob": 0.0},
}
PAIR_FACTORS: tuple[str, ...] = ("colour", "texture", "style")


def _source(bench: Benchmark) -> str:
    """The generator behind a benchmark (open-ended variants share their base's items)."""
    if bench.qtype is None:
        raise DataError(f"benchmark {bench.name!r} has no question generator")
    return bench.qtype


def _scene(source: str, world: WorldConfig, index: int) -> tuple[Any, np.random.Generator]:
    """Scene ``index`` of split ``suite-<source>`` and the rng for its question."""
    scene_rng, question_rng = sample_rngs(world.seed, f"suite-{source}", index)
    if source in DOC_KINDS:
        kinds = DOC_KINDS[source]
        scene = sample_document(scene_rng, world.image_size, scene_rng.choice(kinds))
    else:
        opts = {"num_objects": world.num_objects, "text_prob": world.text_prob}
        opts.update(SCENE_OVERRIDES.get(source, {}))
        scene = sample_object_scene(scene_rng, world.image_size, **opts)
    return scene, np.random.default_rng(question_rng.getrandbits(128))


def _enough(name: str, items: list[MCItem], n_items: int, detail: str = "") -> list[MCItem]:
    if len(items) < n_items:
        raise DataError(
            f"benchmark {name!r}: this world config yields only {len(items)} of {n_items} items"
            f"{detail} (e.g. too few objects per scene for relations)"
        )
    return items


def _item(
    i: int, q: Question, image: Any, meta: dict[str, Any], source: str, **extra: Any
) -> MCItem:
    return MCItem(
        index=str(i),
        question=q.question,
        options=q.options,
        answer=LETTERS[q.answer_index],
        image=encode_image(image),
        category=source,
        answers=(q.answer,),
        extra={
            "qtype": q.qtype,
            "answer_class": q.answer_class,
            "meta": json.dumps(meta, sort_keys=True),
            **extra,
        },
    )


def _build_pairs(world: WorldConfig, n_items: int) -> list[MCItem]:
    """MMVP-like: pairs of images that differ in one factor of object 0, asked the same."""
    items: list[MCItem] = []
    for index in _samples(n_items, items):
        scene, rng = _scene("pairs", world, index)
        factor = PAIR_FACTORS[int(rng.integers(len(PAIR_FACTORS)))]
        other = counterfactual(scene, factor, random.Random(int(rng.integers(2**63))))
        meta_a, meta_b = scene.to_meta(), other.to_meta()
        pair = pair_questions(meta_a, meta_b, factor, rng)
        if pair is None:
            continue
        for q, s, m in zip(pair, (scene, other), (meta_a, meta_b), strict=True):
            items.append(_item(len(items), q, render(s), m, "pairs", sample=index, pair=index))
    return _enough("pairs", items, n_items)


def _build_count(world: WorldConfig, n_items: int) -> list[MCItem]:
    """Counting with every answer 0-3 equally often for every phrasing.

    In the world, three objects rarely share a colour, so a text-only model could learn that
    "how many red objects" is seldom 3. Like CLEVR-style counting sets, this benchmark sets the
    count: item ``i`` asks for ``i % 4`` objects of a colour (or texture) and recolours (or
    re-textures) objects of its scene to make it true. Colour and texture are independent draws
    per object in the world, so the edited scene is still a scene the world can produce.
    """
    items: list[MCItem] = []
    for index in _samples(n_items, items):
        k = len(items) % len(COUNT_OPTIONS)
        scene, rng = _scene("count", world, index)
        n = len(scene.objects)
        factors = ["colour"]
        if all(o.style not in TEXTURELESS_STYLES for o in scene.objects):
            factors.append("texture")
        factor = factors[int(rng.integers(len(factors)))]
        values = list(vocab.COLOURS) if factor == "colour" else list(vocab.TEXTURES)
        if n < k:
            continue
        value = values[int(rng.integers(len(values)))]
        others = [v for v in values if v != value]
        chosen = set(rng.choice(n, size=k, replace=False).tolist())
        for j, obj in enumerate(scene.objects):
            if j in chosen:
                scene = scene.replace(obj=j, **{factor: value})
            elif getattr(obj, factor) == value:
                scene = scene.replace(obj=j, **{factor: others[int(rng.integers(len(others)))]})
        q = count_question(attribute_phrase(factor, value), k, rng)
        if q is not None:
            items.append(
                _item(len(items), q, render(scene), scene.to_meta(), "count", sample=index)
            )
    return _enough("count", items, n_items)


def build_items(bench: Benchmark, world: WorldConfig, n_items: int) -> list[MCItem]:
    """Generate ``n_items`` items of a synthetic benchmark (deterministic, no cache)."""
    source = _source(bench)
    if source == "pairs":
        return _build_pairs(world, n_items + n_items % 2)[:n_items]
    if source == "count":
        return _build_count(world, n_items)
    cap = math.ceil(n_items / bench.balance) if bench.balance else n_items
    counts: Counter[str] = Counter()
    items: list[MCItem] = []
    for index in _samples(n_items, items):
        scene, rng = _scene(source, world, index)
        meta = scene.to_meta()
        q = generate(source, meta, rng)
        if q is None or counts[q.answer_class] >= cap:
            continue
        counts[q.answer_class] += 1
        items.append(_item(len(items), q, render(scene), meta, source, sample=index))
    return _enough(bench.name, items, n_items, f"; answer classes so far {dict(counts)}")


def cache_path(bench: Benchmark, world: WorldConfig, n_items: int, cache_dir: Path) -> Path:
    """Where a benchmark's items are cached (keyed by everything that determines them)."""
    source = _source(bench)
    key = config_hash(
        {
            "world": world.model_dump(mode="json"),
            "source": source,
            "n": n_items,
            "version": GENERATOR_VERSION,
        }
    )
    return Path(cache_dir) / f"{source}-{n_items}-{key}.tsv"


def load_items(
    bench: Benchmark, world: WorldConfig, n_items: int, cache_dir: str | Path
) -> list[MCItem]:
    """A benchmark's items: file benchmarks read their table, synthetic ones the cache (built
    on first use)."""
    if bench.source == "file":
        return load_table(bench.path, mc=bench.format == "mc")  # type: ignore[arg-type]
    path = cache_path(bench, world, n_items, Path(cache_dir))
    if not path.is_file():
        write_table(build_items(bench, world, n_items), path)
    return load_table(path)


def _prepare_one(args: tuple[Benchmark, WorldConfig, int, str]) -> str:
    bench, world, n_items, cache_dir = args
    path = cache_path(bench, world, n_items, Path(cache_dir))
    if not path.is_file():
        write_table(build_items(bench, world, n_items), path)
    return str(path)


def prepare(
    benchmarks: Sequence[Benchmark],
    world: WorldConfig,
    n_items: int,
    cache_dir: str | Path,
    workers: int = 2,
) -> list[Path]:
    """Build every missing synthetic cache, benchmarks in parallel (one process each)."""
    todo, seen = [], set()
    for b in benchmarks:
        if b.source != "generator":
            continue
        path = cache_path(b, world, n_items, Path(cache_dir))
        if path.is_file() or path in seen:
            continue
        seen.add(path)
        todo.append((b, world, n_items, str(cache_dir)))
    if workers > 1 and len(todo) > 1:
        # fork: the workers only run PIL and numpy; spawning would re-import torch (~3 s each).
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(workers, len(todo))) as pool:
            done = pool.map(_prepare_one, todo, chunksize=1)
    else:
        done = [_prepare_one(t) for t in todo]
    return [Path(p) for p in done]

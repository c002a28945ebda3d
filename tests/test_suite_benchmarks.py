"""Synthetic benchmarks: registry, determinism, caching, balance, and blindness to text-only
shortcuts (a text-only model trained on training-split questions scores ~25%)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from encoderlab.data.synthworld import WorldConfig
from encoderlab.errors import ConfigError
from encoderlab.suite.benchmarks import build_items, cache_path, load_items, prepare
from encoderlab.suite.blind import NGramBlind, OptionPrior, parse_mc_prompt, training_questions
from encoderlab.suite.questions import mc_prompt
from encoderlab.suite.registry import (
    BENCHMARKS,
    CAMBRIAN_CATEGORIES,
    SUITES,
    VMC_CATEGORIES,
    get_benchmark,
    resolve,
)

N_ITEMS = 40
WORLD = WorldConfig()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 20 benchmarks at N_ITEMS items (shared by this module's tests)."""
    root = tmp_path_factory.getbasetemp() / "suite-items"
    prepare([BENCHMARKS[n] for n in SUITES["default"]], WORLD, N_ITEMS, root, workers=2)
    return root


def test_registry_mirrors_vmcbench() -> None:
    default = [BENCHMARKS[n] for n in SUITES["default"]]
    assert len(default) == 20
    per_vmc = collections.Counter(b.vmc for b in default)
    assert per_vmc == {"General": 7, "Reasoning": 6, "OCR": 2, "Doc&Chart": 5}  # as VMCBench
    assert set(b.cambrian for b in default) == set(CAMBRIAN_CATEGORIES)
    assert set(per_vmc) == set(VMC_CATEGORIES)
    assert all(b.format == "mc" for b in default)
    assert [b.name for b in resolve("count,read_word_open")] == ["count", "read_word_open"]
    assert resolve("x/VMCBench.tsv")[0].source == "file"


def test_unknown_benchmark_is_one_line_listing_known() -> None:
    with pytest.raises(ConfigError) as err:
        get_benchmark("nope")
    message = str(err.value)
    assert "\n" not in message and "'nope'" in message
    assert all(name in message for name in SUITES["default"])
    with pytest.raises(ConfigError, match="known benchmarks"):
        resolve("default,nope")


def test_items_are_well_formed_disjoint_and_balanced(cache: Path) -> None:
    for name in SUITES["default"]:
        bench = BENCHMARKS[name]
        items = load_items(bench, WORLD, N_ITEMS, cache)
        assert len(items) == N_ITEMS, name
        for it in items:
            assert len(it.options) == 4 and len(set(it.options)) == 4
            assert it.options[it.answer_index] == it.answers[0]
            assert json.loads(it.extra["meta"])["image_size"] == WORLD.image_size
        letters = collections.Counter(it.answer for it in items)
        assert max(letters.values()) <= N_ITEMS * 0.5, (name, letters)
        if bench.balance:  # every answer class gets the same share
            classes = collections.Counter(it.extra["answer_class"] for it in items)
            assert len(classes) == bench.balance, (name, classes)
            assert max(classes.values()) <= -(-N_ITEMS // bench.balance), (name, classes)
    pairs = load_items(BENCHMARKS["pairs"], WORLD, N_ITEMS, cache)
    # the two items of a pair: same question and options, different answers and images
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        assert a.extra["pair"] == b.extra["pair"] and a.question == b.question
        assert a.options == b.options and a.answer != b.answer and a.image != b.image


def test_deterministic_and_cached(cache: Path, tmp_path: Path) -> None:
    bench = BENCHMARKS["read_number"]
    cached = cache_path(bench, WORLD, N_ITEMS, cache)
    fresh = tmp_path / cached.name
    from encoderlab.suite.formats import write_table

    write_table(build_items(bench, WORLD, N_ITEMS), fresh)
    assert fresh.read_bytes() == cached.read_bytes()  # same bytes as the worker-built cache
    other = cache_path(bench, WORLD.model_copy(update={"seed": 1}), N_ITEMS, cache)
    assert other != cached  # the world config is part of the cache key
    assert cache_path(BENCHMARKS["read_number_open"], WORLD, N_ITEMS, cache) == cached


def test_suite_splits_are_disjoint_from_training(cache: Path) -> None:
    items = load_items(BENCHMARKS["object"], WORLD, N_ITEMS, cache)
    samples = {int(it.extra["sample"]) for it in items}
    assert samples == set(range(N_ITEMS))  # every sample of split suite-object applies
    train_q = training_questions(WORLD, 30)
    assert not {q.question + str(q.options) for q in train_q} & {
        it.question + str(it.options) for it in items
    }


def test_parse_mc_prompt_round_trip() -> None:
    prompt = mc_prompt("Which?\nReally?", ["a", "b. c", "d", "e"])
    assert parse_mc_prompt(prompt) == ("Which?\nReally?", ["a", "b. c", "d", "e"])
    assert parse_mc_prompt(mc_prompt("Q", ["x", "y"])) == ("Q", ["x", "y"])


@pytest.mark.slow
def test_text_only_models_score_near_chance(cache: Path) -> None:
    """Option-frequency and n-gram models trained on training-split questions: ~25%."""
    train = training_questions(WORLD.model_copy(update={"doc_share": 0.3}), 1200)
    models = {"prior": OptionPrior(train), "ngram": NGramBlind(train)}
    accs: dict[str, list[float]] = {k: [] for k in models}
    for name in SUITES["default"]:
        items = load_items(BENCHMARKS[name], WORLD, N_ITEMS, cache)
        prompts = [mc_prompt(it.question, it.options) for it in items]
        truth = np.array([it.answer_index for it in items])
        for key, model in models.items():
            pred = model.score_choices(None, prompts).argmax(1).numpy()  # type: ignore[arg-type]
            accs[key].append(float(np.mean(pred == truth)))
    for key, per_bench in accs.items():
        overall = float(np.mean(per_bench))  # 800 items: standard error ~1.5 points
        assert abs(overall - 0.25) < 0.05, (key, overall)
        assert max(per_bench) < 0.55, (key, dict(zip(SUITES["default"], per_bench, strict=True)))
    # ...and not because it cannot learn: trained on the suite's own items it recalls them
    from encoderlab.suite.questions import Question

    seen = [
        Question(it.extra["qtype"], it.question, it.answers[0], it.options, it.answer_index)
        for name in SUITES["default"]
        for it in load_items(BENCHMARKS[name], WORLD, N_ITEMS, cache)
    ]
    recall = NGramBlind(seen, alpha=0.1)
    prompts = [mc_prompt(q.question, q.options) for q in seen]
    pred = recall.score_choices(None, prompts).argmax(1).numpy()  # type: ignore[arg-type]
    assert np.mean(pred == np.array([q.answer_index for q in seen])) > 0.5


def test_unsupported_world_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from encoderlab.errors import DataError
    from encoderlab.suite import benchmarks

    monkeypatch.setattr(benchmarks, "FIRST_SAMPLES", 5)
    monkeypatch.setattr(benchmarks, "generate", lambda *args: None)  # nothing ever applies
    with pytest.raises(DataError) as err:
        build_items(BENCHMARKS["spatial"], WORLD, 10)
    assert "'spatial'" in str(err.value) and "only 0 of 10 items" in str(err.value)
    assert "\n" not in str(err.value)

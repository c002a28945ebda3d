"""The harness with fake VLMs that follow the protocol: scores, reports, cache/resume, compare,
circular evaluation, VMCBench-style files and the CLI's bad-input messages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import encoderlab.cli.suite  # noqa: F401  (registers eval / compare, as cli/__init__ will)
from encoderlab.cli import main
from encoderlab.data.synthworld import WorldConfig
from encoderlab.errors import EncoderlabError
from encoderlab.suite.blind import parse_mc_prompt
from encoderlab.suite.compare import compare, compare_markdown
from encoderlab.suite.formats import write_table
from encoderlab.suite.harness import EvalConfig, evaluate
from encoderlab.suite.questions import LETTERS, SHORT_SUFFIX
from encoderlab.suite.registry import BENCHMARKS, SUITES

N = 8  # items per synthetic benchmark: enough to exercise everything, fast


def _key(image: np.ndarray, question: str) -> str:
    return hashlib.sha1(image.tobytes() + question.encode()).hexdigest()


class Oracle:
    """Answers from the items' metadata: it is told every (image, question) -> answer text."""

    checkpoint_hash = "oracle"

    def __init__(self, items) -> None:
        from encoderlab.suite.formats import decode_image

        self.answers = {_key(decode_image(it.image), it.question): it.answers[0] for it in items}
        self.calls = 0

    def _answer(self, image: torch.Tensor, question: str) -> str:
        return self.answers[_key(image.permute(1, 2, 0).numpy(), question)]

    def score_choices(self, images, prompts, letters=LETTERS) -> torch.Tensor:
        self.calls += 1
        out = torch.full((len(prompts), len(letters)), -9.0)
        for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            question, options = parse_mc_prompt(prompt)
            out[i, options.index(self._answer(image, question))] = -0.01
        return out

    def score_options(self, images, prompts, options) -> torch.Tensor:
        self.calls += 1
        out = torch.full((len(prompts), max(len(o) for o in options)), -9.0)
        for i, (image, prompt, opts) in enumerate(zip(images, prompts, options, strict=True)):
            out[i, list(opts).index(self._answer(image, prompt.removesuffix(SHORT_SUFFIX)))] = 0
        return out

    def generate(self, images, prompts, max_new_tokens=16) -> list[str]:
        self.calls += 1
        return [
            self._answer(im, p.removesuffix(SHORT_SUFFIX))
            for im, p in zip(images, prompts, strict=True)
        ]


class Random:
    """Deterministic per (image, prompt) random scores, whatever the batch."""

    def __init__(self, name: str = "random") -> None:
        self.checkpoint_hash = name
        self.calls = 0

    def score_choices(self, images, prompts, letters=LETTERS) -> torch.Tensor:
        self.calls += 1
        rows = []
        for image, prompt in zip(images, prompts, strict=True):
            digest = hashlib.sha1(image.numpy().tobytes() + prompt.encode()).digest()
            rows.append(np.random.default_rng(list(digest[:8])).normal(size=len(letters)))
        return torch.log_softmax(torch.tensor(np.array(rows)), dim=1)

    def generate(self, images, prompts, max_new_tokens=16) -> list[str]:
        self.calls += 1
        return ["red"] * len(prompts)


class AlwaysA(Random):
    def score_choices(self, images, prompts, letters=LETTERS) -> torch.Tensor:
        return torch.log_softmax(torch.tensor([[1.0, 0.0, 0.0, 0.0]] * len(prompts)), dim=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "suite-items"


@pytest.fixture(scope="module")
def oracle(cache: Path) -> Oracle:
    from encoderlab.suite.benchmarks import load_items, prepare

    world = WorldConfig()
    benches = [BENCHMARKS[n] for n in SUITES["default"]]
    prepare(benches, world, N, cache)
    return Oracle([it for b in benches for it in load_items(b, world, N, cache)])


def _cfg(**kw) -> EvalConfig:
    return EvalConfig(items=N, batch_size=16, bootstrap=200, **kw)


def test_oracle_is_perfect_everywhere(oracle: Oracle, cache: Path, tmp_path: Path) -> None:
    res = evaluate(oracle, _cfg(suite="default,open", circular=True), tmp_path, cache, progress=False)  # fmt: skip
    assert len(res["benchmarks"]) == 25
    for name, r in res["benchmarks"].items():
        assert r["score"] == 1.0, name
        if r["format"] == "mc":
            assert r["circular"]["score"] == 1.0
    assert res["benchmarks"]["pairs"]["n"] == N // 2  # pair accuracy counts pairs
    assert set(res["categories"]["vmc"]) == {"General", "Reasoning", "OCR", "Doc&Chart"}
    assert set(res["categories"]["cambrian"]) == {"General", "Knowledge", "OCR & Chart", "Vision-Centric"}  # fmt: skip
    assert res["overall"]["score"] == pytest.approx(1.0)
    for f in ("results.json", "results.csv", "results.md", "per_item.csv"):
        assert (tmp_path / f).is_file()
    md = (tmp_path / "results.md").read_text()
    assert "Cambrian-1 categories" in md and "| read_word_open |" in md
    csv = pd.read_csv(tmp_path / "results.csv")
    assert set(csv["level"]) == {"benchmark", "category", "overall"}


def test_cloze_scoring(oracle: Oracle, cache: Path, tmp_path: Path) -> None:
    """Cloze: each option's text scored as the short answer (no letters); its predictions are
    cached apart from the letter-scored ones of the same checkpoint."""
    cfg = _cfg(suite="count,colour", scoring="cloze")
    res = evaluate(oracle, cfg, tmp_path, cache, progress=False)
    assert res["overall"]["score"] == 1.0 and res["config"]["scoring"] == "cloze"
    letters = evaluate(oracle, _cfg(suite="count,colour"), tmp_path, cache, progress=False)
    assert letters["overall"]["score"] == 1.0
    rows = (tmp_path / "predictions" / "count.jsonl").read_text().splitlines()
    assert len(rows) == 2 * N and sum(":cloze" in r for r in rows) == N
    calls = oracle.calls
    evaluate(oracle, cfg, tmp_path, cache, progress=False)  # all cached: no model call
    assert oracle.calls == calls
    with pytest.raises(EncoderlabError, match="Random has no score_options"):
        evaluate(Random(), cfg, tmp_path / "r", cache, progress=False)
    with pytest.raises(ValueError, match="cloze scoring has none"):
        _cfg(scoring="cloze", circular=True)


def test_random_and_letter_biased_models(oracle: Oracle, cache: Path, tmp_path: Path) -> None:
    res = evaluate(Random(), _cfg(), tmp_path / "r", cache, progress=False)
    overall = res["overall"]
    assert 0.15 < overall["score"] < 0.35 and overall["lo"] < 0.25 < overall["hi"]
    biased = evaluate(AlwaysA(), _cfg(circular=True), tmp_path / "a", cache, progress=False)
    assert 0.1 < biased["overall"]["score"] < 0.4  # right whenever the answer is A
    assert all(r["circular"]["score"] == 0.0 for r in biased["benchmarks"].values())


def test_deterministic_and_batch_size_invariant(
    oracle: Oracle, cache: Path, tmp_path: Path
) -> None:
    a = evaluate(Random(), _cfg(suite="count,table"), tmp_path / "a", cache, progress=False)
    cfg = _cfg(suite="count,table").model_copy(update={"batch_size": 3})
    b = evaluate(Random(), cfg, tmp_path / "b", cache, progress=False)
    strip = lambda r: {k: v for k, v in r.items() if k != "config"}  # noqa: E731
    assert strip(a) == strip(b)
    assert (tmp_path / "a/per_item.csv").read_bytes() == (tmp_path / "b/per_item.csv").read_bytes()


class Crash(Random):
    """Dies after ``n`` batches, like an interrupted run."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def score_choices(self, images, prompts, letters=LETTERS):
        if self.calls >= self.n:
            raise KeyboardInterrupt
        return super().score_choices(images, prompts, letters)


def test_resume_after_interruption(oracle: Oracle, cache: Path, tmp_path: Path) -> None:
    cfg = _cfg(suite="colour,spatial,superclass").model_copy(update={"batch_size": 4})
    with pytest.raises(KeyboardInterrupt):
        evaluate(Crash(3), cfg, tmp_path / "run", cache, progress=False)
    resumed = Random()
    res = evaluate(resumed, cfg, tmp_path / "run", cache, progress=False)
    assert resumed.calls == 6 - 3  # 3 x 8 items in batches of 4: only the missing batches
    again = Random()
    assert evaluate(again, cfg, tmp_path / "run", cache, progress=False) == res
    assert again.calls == 0  # everything cached
    fresh = evaluate(Random(), cfg, tmp_path / "fresh", cache, progress=False)
    assert {k: v for k, v in fresh.items()} == res
    other = Random("another-checkpoint")  # a different checkpoint never reuses predictions
    evaluate(other, cfg, tmp_path / "run", cache, progress=False)
    assert other.calls == 6


def test_compare_is_paired_and_flags_real_differences(oracle: Oracle, cache: Path, tmp_path: Path) -> None:  # fmt: skip
    evaluate(oracle, _cfg(), tmp_path / "o", cache, progress=False)
    evaluate(Random(), _cfg(), tmp_path / "r", cache, progress=False)
    cmp = compare(tmp_path / "r", tmp_path / "o", n=300)
    assert cmp["overall"]["diff"] > 0.5 and cmp["overall"]["significant"]
    assert cmp["categories"]["vmc"]["OCR"]["diff"] > 0
    same = compare(tmp_path / "r", tmp_path / "r", n=300)
    assert same["overall"]["diff"] == 0 and not same["overall"]["significant"]
    assert "B - A" in compare_markdown(cmp)
    assert main(["compare", str(tmp_path / "r"), str(tmp_path / "o"), "--out", str(tmp_path / "c")]) is None  # fmt: skip
    assert json.loads((tmp_path / "c/compare.json").read_text())["overall"]["significant"]


def test_vmcbench_file_is_split_by_source_benchmark(oracle: Oracle, cache: Path, tmp_path: Path) -> None:  # fmt: skip
    from encoderlab.suite.benchmarks import load_items

    world = WorldConfig()
    items = load_items(BENCHMARKS["read_word"], world, N, cache)[:4]
    items += load_items(BENCHMARKS["object"], world, N, cache)[:4]
    for i, it in enumerate(items):
        it.index, it.category, it.extra = str(i), ("TextVQA" if i < 4 else "SEEDBench"), {}
    write_table(items, tmp_path / "VMCBench.tsv")
    res = evaluate(oracle, _cfg(suite=str(tmp_path / "VMCBench.tsv")), tmp_path / "out", cache, progress=False)  # fmt: skip
    assert set(res["benchmarks"]) == {"VMCBench/SEEDBench", "VMCBench/TextVQA"}
    assert res["benchmarks"]["VMCBench/TextVQA"]["vmc"] == "OCR"
    assert res["categories"]["cambrian"]["OCR & Chart"]["score"] == 1.0


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--suite", "nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown benchmark 'nope'" in err and "read_word" in err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert "no such VLM checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path), str(tmp_path)])
    assert "results.json: not found" in capsys.readouterr().err
    for bad, says in ((["--circular"], "cloze scoring has none"), (["--scoring", "x"], "scoring")):
        with pytest.raises(SystemExit):
            main(["eval", "blind", "--out", str(tmp_path / "o"), "--suite", "count", *bad])
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and says in err, err


def test_cli_eval_writes_tables(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    import types

    import encoderlab

    stub = types.SimpleNamespace(load=lambda path: Random(f"ckpt:{Path(path).name}"))
    monkeypatch.setitem(sys.modules, "encoderlab.vlm", stub)
    monkeypatch.setattr(encoderlab, "vlm", stub, raising=False)
    (tmp_path / "ckpt").mkdir()
    args = ["eval", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), "--suite", "colour,table"]  # fmt: skip
    with pytest.raises(SystemExit):  # the tiny preset scores cloze: Random cannot
        main([*args, "--items", str(N), "--cache", str(cache), "--quiet"])
    assert "Random has no score_options" in capsys.readouterr().err
    main([*args, "--items", str(N), "--cache", str(cache), "--quiet", "--scoring", "letter"])
    res = json.loads((tmp_path / "out/results.json").read_text())
    assert res["checkpoint"] == "ckpt:ckpt" and set(res["benchmarks"]) == {"colour", "table"}
    assert res["config"]["scoring"] == "letter"
    assert res["config"]["world"]["image_size"] == 64  # the tiny preset's world
    assert "| colour |" in capsys.readouterr().err

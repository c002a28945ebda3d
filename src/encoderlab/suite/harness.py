"""Score a VLM on a suite: batched inference, prediction cache with resume, tables with CIs.

The harness depends only on the VLM protocol below (``encoderlab.vlm`` checkpoints, the blind
baselines and test fakes all follow it). Predictions are appended to
``OUT/predictions/<benchmark>.jsonl`` after every batch, keyed by checkpoint hash and item (its
index plus a hash of its question, options and image), so an interrupted run resumes where it
stopped and a changed item is never served a stale prediction. Scores are deterministic: greedy
letters / answers, rule-based metrics, seeded bootstrap.

Outputs: ``results.json`` (everything), ``results.csv`` (one row per benchmark / category),
``results.md`` (tables per benchmark and per category in VMCBench's and Cambrian-1's views) and
``per_item.csv`` (the score of every scoring unit, used by ``suite.compare``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import Field, model_validator

from encoderlab.config import StrictModel
from encoderlab.data.synthworld import WorldConfig
from encoderlab.errors import EncoderlabError
from encoderlab.evaluate.stats import bootstrap_ci
from encoderlab.files import write_json
from encoderlab.progress import make_progress
from encoderlab.suite.benchmarks import load_items, prepare
from encoderlab.suite.formats import MCItem, images_to_tensor
from encoderlab.suite.metrics import OPEN_METRICS, circular_correct, circular_orders, pair_correct
from encoderlab.suite.questions import LETTERS, Scoring, mc_prompt, short_prompt
from encoderlab.suite.registry import (
    CAMBRIAN_CATEGORIES,
    REAL_CATEGORIES,
    VMC_CATEGORIES,
    Benchmark,
    resolve,
)

__all__ = ["EvalConfig", "VLMProtocol", "category_values", "evaluate", "item_key"]

PROMPT_VERSION = 1  # part of every prediction key: bump when prompts change


@runtime_checkable
class VLMProtocol(Protocol):
    """What the harness needs from a model (an optional ``image_size`` attribute sets the size
    images are resized to; cloze scoring also needs ``score_options(images, prompts,
    options) -> [B, max options]``, as ``encoderlab.vlm.VLM`` has)."""

    checkpoint_hash: str

    def score_choices(
        self, images: torch.Tensor, prompts: list[str], letters: Sequence[str] = LETTERS
    ) -> torch.Tensor: ...

    def generate(
        self, images: torch.Tensor, prompts: list[str], max_new_tokens: int = 16
    ) -> list[str]: ...


class EvalConfig(StrictModel):
    """One evaluation: which benchmarks, how many items, how to score."""

    suite: str = "default"  # suite names, benchmark names and table paths, comma-separated
    items: int = Field(200, ge=2)
    batch_size: int = Field(128, ge=1)  # the fastest on the 2-core CPU for the tiny VLM
    scoring: Scoring = Field(
        "letter",
        description="multiple choice: the likeliest option letter (VMCBench, lmms-eval) or the "
        "likeliest option text as the short answer (cloze, OLMES's rule for LMs that cannot "
        "answer with a letter, as the tiny embedded LM cannot). The one default of the scoring "
        "rule: a study's VLM checks (sanity, oracle) read its suite.scoring too",
    )
    check_questions: int = Field(
        1024,
        ge=8,
        description="held-out questions of a study's VLM checks (real vs blank image, the "
        "oracle's own vs another scene's tokens); one per scene, of a random type, so each "
        "question type gets about a twentieth of them",
    )
    circular: bool = False  # also MMBench circular evaluation (n passes per MC item)
    bootstrap: int = Field(1000, ge=100)
    seed: int = 0
    max_new_tokens: int = Field(16, ge=1)
    workers: int = Field(2, ge=1)  # processes that build missing item caches
    world: WorldConfig = Field(default_factory=WorldConfig)

    @model_validator(mode="after")
    def _circular_needs_letters(self) -> EvalConfig:
        if self.circular and self.scoring == "cloze":
            raise ValueError("circular evaluation rotates option letters; cloze scoring has none")
        return self


def item_key(item: MCItem, n_pass: int = 0, scoring: str | None = None) -> str:
    """Stable key of one item (and circular pass, and scoring): index + hash of what the model
    sees. Open answers and letter-scored passes (``scoring`` None or ``letter``) carry no
    scoring suffix, as before cloze existed, so their cached predictions stay valid."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{PROMPT_VERSION}|{item.hint}|{item.question}|{item.options}".encode())
    h.update(item.image)
    key = f"{item.index}:{h.hexdigest()[:12]}:{n_pass}"
    return key if scoring in (None, "letter") else f"{key}:{scoring}"


def _expand(bench: Benchmark, items: list[MCItem]) -> list[tuple[Benchmark, list[MCItem]]]:
    """A table whose ``category`` column names real benchmarks (VMCBench's single file) is
    scored per source benchmark, each in its own categories."""
    cats = {it.category for it in items}
    norm = {c: c.lower().replace(" ", "").replace("_", "") for c in cats}
    if bench.source != "file" or not cats or not all(n in REAL_CATEGORIES for n in norm.values()):
        return [(bench, items)]
    out = []
    for cat in sorted(cats):
        vmc, cambrian = REAL_CATEGORIES[norm[cat]]
        sub = bench.model_copy(update={"name": f"{bench.name}/{cat}", "vmc": vmc, "cambrian": cambrian})  # fmt: skip
        out.append((sub, [it for it in items if it.category == cat]))
    return out


class _PredictionCache:
    """Append-only JSONL of predictions for one benchmark, filtered to one checkpoint."""

    def __init__(self, path: Path, checkpoint: str) -> None:
        self.path = path
        self.checkpoint = checkpoint
        self.done: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption: that prediction is redone
                if rec.get("ckpt") == checkpoint:
                    self.done[rec["key"]] = rec

    def add(self, records: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for rec in records:
                rec = {"ckpt": self.checkpoint, **rec}
                self.done[rec["key"]] = rec
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _prompt(item: MCItem, order: Sequence[int] | None) -> str:
    question = f"Hint: {item.hint}\n{item.question}" if item.hint else item.question
    if order is None:
        return short_prompt(question)
    return mc_prompt(question, [item.options[i] for i in order])


def _run_mc(
    vlm: VLMProtocol,
    items: list[MCItem],
    cache: _PredictionCache,
    cfg: EvalConfig,
    size: int,
    progress: Any,
    task: Any,
) -> None:
    """Score every (item, pass) not yet cached, in batches: by option letter after the
    multiple-choice prompt, or (cloze) by option text after the short-answer prompt."""
    cloze = cfg.scoring == "cloze"
    if cloze and not hasattr(vlm, "score_options"):
        raise EncoderlabError(f"{type(vlm).__name__} has no score_options: it cannot score cloze")
    todo = []
    for it in items:
        n = len(it.options)
        orders = circular_orders(n) if cfg.circular else circular_orders(n)[:1]
        for r, order in enumerate(orders):
            if item_key(it, r, cfg.scoring) not in cache.done:
                todo.append((it, r, order))
    # Similar lengths in a batch waste less padding; results do not depend on the order.
    todo.sort(key=lambda t: len(_prompt(t[0], None if cloze else t[2])))
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start : start + cfg.batch_size]
        images = images_to_tensor([b[0] for b in batch], size)
        if cloze:
            prompts = [_prompt(it, None) for it, _, _ in batch]
            options = [[it.options[i] for i in order] for it, _, order in batch]
            scores = vlm.score_options(images, prompts, options)
        else:
            prompts = [_prompt(it, order) for it, _, order in batch]
            scores = vlm.score_choices(images, prompts, LETTERS)
        scores = scores.detach().float().cpu().numpy()
        records = []
        for (it, r, order), row in zip(batch, scores, strict=True):
            row = row[: len(order)]  # letters beyond this item's options do not exist
            shown = int(np.argmax(row))
            records.append(
                {
                    "key": item_key(it, r, cfg.scoring),
                    "pred": LETTERS[shown],
                    "scores": [round(float(s), 5) for s in row],
                    "correct": int(order[shown] == it.answer_index),
                }
            )
        cache.add(records)
        if progress is not None:
            progress.advance(task, len(batch))


def _run_open(
    vlm: VLMProtocol,
    items: list[MCItem],
    cache: _PredictionCache,
    cfg: EvalConfig,
    size: int,
    progress: Any,
    task: Any,
) -> None:
    todo = [it for it in items if item_key(it) not in cache.done]
    todo.sort(key=lambda it: len(_prompt(it, None)))
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start : start + cfg.batch_size]
        images = images_to_tensor(batch, size)
        answers = vlm.generate(images, [_prompt(it, None) for it in batch], cfg.max_new_tokens)
        cache.add([{"key": item_key(it), "pred": a} for it, a in zip(batch, answers, strict=True)])
        if progress is not None:
            progress.advance(task, len(batch))


def _units(
    bench: Benchmark,
    items: list[MCItem],
    done: dict[str, dict[str, Any]],
    circular: bool,
    scoring: str,
) -> dict[str, Any]:
    """Per-unit scores of a benchmark (units: items, or pairs for pair accuracy)."""
    if bench.format == "open":
        metric = OPEN_METRICS[bench.metric]
        # A synthetic item's answer is unanimous: VQA accuracy counts it as ten annotators.
        copies = 10 if bench.source == "generator" else 1
        scores = [
            metric(done[item_key(it)]["pred"], (it.answers or (it.answer,)) * copies)
            for it in items
        ]
        return {"units": [it.index for it in items], "score": np.array(scores)}
    correct = np.array([done[item_key(it, 0, scoring)]["correct"] for it in items], np.float64)
    out: dict[str, Any] = {"units": [it.index for it in items], "score": correct}
    if circular:
        passes = [
            [done[item_key(it, r)]["correct"] for r in range(len(it.options))] for it in items
        ]
        out["circular"] = circular_correct(np.array(passes))
    if bench.metric == "pair_accuracy":
        pairs = [str(it.extra.get("pair", it.index)) for it in items]
        out["item_accuracy"] = float(correct.mean())
        out["units"] = list(dict.fromkeys(pairs))
        out["score"] = pair_correct(correct, pairs)
        if circular:
            out["circular"] = pair_correct(out["circular"], pairs)
    return out


def _ci(values: np.ndarray, cfg: EvalConfig) -> dict[str, float]:
    mean, lo, hi = bootstrap_ci(values, n=cfg.bootstrap, seed=cfg.seed)
    return {"score": float(mean), "lo": float(lo), "hi": float(hi)}


def category_values(per_bench: dict[str, np.ndarray], members: Sequence[str]) -> np.ndarray:
    """Pool the units of a category's benchmarks, each weighted so that the pooled mean is the
    mean of the benchmarks' scores (the field's category score); bootstrapping the pooled,
    re-weighted units then gives its CI with any generic bootstrap."""
    parts = [per_bench[m] for m in members if len(per_bench[m])]
    total = sum(len(p) for p in parts)
    return np.concatenate([p * total / (len(p) * len(parts)) for p in parts]) if parts else np.array([])  # fmt: skip


def _aggregate(results: dict[str, Any], units: dict[str, np.ndarray], cfg: EvalConfig) -> None:
    benches = results["benchmarks"]
    views = {"vmc": VMC_CATEGORIES, "cambrian": CAMBRIAN_CATEGORIES}
    for view, names in views.items():
        results["categories"][view] = {}
        for cat in names:
            members = [b for b, r in benches.items() if r[view] == cat]
            if members:
                entry = _ci(category_values(units, members), cfg)
                results["categories"][view][cat] = {**entry, "benchmarks": members}
    results["overall"] = {**_ci(category_values(units, list(benches)), cfg), "benchmarks": len(benches)}  # fmt: skip


def evaluate(
    vlm: VLMProtocol,
    cfg: EvalConfig,
    out_dir: str | Path,
    cache_dir: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``vlm`` on ``cfg.suite``; write predictions and tables under ``out_dir``."""
    out_dir = Path(out_dir)
    benches = resolve(cfg.suite)
    size = int(getattr(vlm, "image_size", None) or cfg.world.image_size)
    prepare(benches, cfg.world, cfg.items, cache_dir, workers=cfg.workers)
    groups = [
        g for b in benches for g in _expand(b, load_items(b, cfg.world, cfg.items, cache_dir))
    ]
    checkpoint = str(vlm.checkpoint_hash)
    if not checkpoint:
        raise EncoderlabError("the model has no checkpoint_hash: its predictions cannot be cached")
    results: dict[str, Any] = {
        "checkpoint": checkpoint,
        "config": cfg.model_dump(mode="json"),
        "benchmarks": {},
        "categories": {},
    }
    units: dict[str, np.ndarray] = {}
    per_item: list[tuple[str, str, float, float | None]] = []
    passes = [
        sum(len(it.options) if cfg.circular and b.format == "mc" else 1 for it in its)
        for b, its in groups
    ]
    with make_progress(progress) as prog:
        task = prog.add_task("suite", total=sum(passes)) if prog is not None else None
        for bench, items in groups:
            if prog is not None:
                prog.update(task, description=f"suite {bench.name}")
            safe = bench.name.replace("/", "__")
            cache = _PredictionCache(out_dir / "predictions" / f"{safe}.jsonl", checkpoint)
            run = _run_mc if bench.format == "mc" else _run_open
            run(vlm, items, cache, cfg, size, prog, task)
            u = _units(bench, items, cache.done, cfg.circular and bench.format == "mc", cfg.scoring)
            units[bench.name] = u["score"]
            entry: dict[str, Any] = {
                "vmc": bench.vmc,
                "cambrian": bench.cambrian,
                "metric": bench.metric,
                "format": bench.format,
                "mirrors": bench.mirrors,
                "n": len(u["score"]),
                **_ci(u["score"], cfg),
            }
            if "item_accuracy" in u:
                entry["item_accuracy"] = u["item_accuracy"]
            if "circular" in u:
                entry["circular"] = _ci(u["circular"], cfg)
            results["benchmarks"][bench.name] = entry
            circ = u.get("circular")
            for i, unit in enumerate(u["units"]):
                c = None if circ is None else float(circ[i])
                per_item.append((bench.name, unit, float(u["score"][i]), c))
    _aggregate(results, units, cfg)
    write_reports(results, per_item, out_dir)
    return results


def write_reports(
    results: dict[str, Any], per_item: list[tuple[str, str, float, float | None]], out_dir: Path
) -> None:
    """``results.json``, ``results.csv``, ``results.md`` and ``per_item.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(results, out_dir / "results.json")
    rows = [
        {"level": "benchmark", "name": name, "view": "", **_row(r)}
        for name, r in results["benchmarks"].items()
    ]
    for view, cats in results["categories"].items():
        rows += [{"level": "category", "name": c, "view": view, **_row(r)} for c, r in cats.items()]
    rows.append({"level": "overall", "name": "overall", "view": "", **_row(results["overall"])})
    _write_text(out_dir / "results.csv", _csv(rows))
    _write_text(
        out_dir / "per_item.csv",
        _csv(
            [
                {"benchmark": b, "unit": u, "score": s, "circular": "" if c is None else c}
                for b, u, s, c in per_item
            ]
        ),
    )
    _write_text(out_dir / "results.md", markdown(results))


def _row(r: dict[str, Any]) -> dict[str, Any]:
    circ = r.get("circular", {})
    return {
        "metric": r.get("metric", "mean"),
        "n": r.get("n", ""),
        "score": round(r["score"], 6),
        "lo": round(r["lo"], 6),
        "hi": round(r["hi"], 6),
        "circular": round(circ["score"], 6) if circ else "",
    }


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['score']:.1f} [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def markdown(results: dict[str, Any]) -> str:
    """Markdown tables: benchmarks, then categories in both views (scores in %, 95% CI)."""
    circular = any("circular" in r for r in results["benchmarks"].values())
    head = "| benchmark | VMCBench | Cambrian-1 | metric | n | score [95% CI] |"
    rule = "|---|---|---|---|---:|---|"
    if circular:
        head, rule = head + " circular |", rule + "---|"
    lines = [f"# Suite results: checkpoint `{results['checkpoint']}`", "", head, rule]
    for name, r in results["benchmarks"].items():
        row = f"| {name} | {r['vmc']} | {r['cambrian']} | {r['metric']} | {r['n']} | {_pct(r)} |"
        if circular:
            row += f" {_pct(r['circular']) if 'circular' in r else ''} |"
        lines.append(row)
    titles = {"vmc": "VMCBench categories", "cambrian": "Cambrian-1 categories"}
    for view, cats in results["categories"].items():
        lines += ["", f"## {titles[view]}", "", "| category | benchmarks | score [95% CI] |"]
        lines.append("|---|---:|---|")
        lines += [f"| {c} | {len(r['benchmarks'])} | {_pct(r)} |" for c, r in cats.items()]
    lines += ["", f"**Overall** (mean of {results['overall']['benchmarks']} benchmarks): "
              f"{_pct(results['overall'])}", ""]  # fmt: skip
    return "\n".join(lines)

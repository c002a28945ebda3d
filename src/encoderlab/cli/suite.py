"""``encoderlab eval`` (score a VLM on the VQA suite) and ``encoderlab compare`` (two results)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from encoderlab.cli import app
from encoderlab.config import parse_config, preset_section
from encoderlab.errors import DataError
from encoderlab.progress import console


@app.command("eval")
def eval_cmd(
    ckpt: str = typer.Argument(..., help="VLM checkpoint directory, or 'blind' (text-only)"),
    out: Path = typer.Option(..., "--out", help="results directory (resumes cached predictions)"),
    suite: str = typer.Option(
        "default", help="suite / benchmark names and .tsv/.parquet tables, comma-separated"
    ),
    items: int = typer.Option(None, help="items per synthetic benchmark (default 200)"),
    preset: str = typer.Option("tiny", help="preset (its 'world' and 'suite' sections)"),
    batch_size: int = typer.Option(None, help="inference batch size"),
    circular: bool = typer.Option(False, help="also MMBench circular evaluation"),
    scoring: str = typer.Option(
        None, help="letter | cloze (multiple choice; default: the preset's, tiny: cloze)"
    ),
    cache: Path = typer.Option(None, help="item cache (default: OUT/../suite-items)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Score a VLM on a multiple-choice VQA suite; write JSON, CSV and markdown tables."""
    from encoderlab.data.synthworld import WorldConfig
    from encoderlab.suite.harness import EvalConfig, evaluate
    from encoderlab.suite.registry import resolve

    resolve(suite)  # unknown names fail here, before a model is loaded
    world = preset_section(preset, "world", WorldConfig)
    cfg = preset_section(preset, "suite", EvalConfig).model_copy(update={"world": world})
    updates = {
        "suite": suite,
        "items": items,
        "batch_size": batch_size,
        "circular": circular or None,  # the preset's unless asked for
        "scoring": scoring,
    }
    cfg = parse_config(
        EvalConfig,
        {**cfg.model_dump(), **{k: v for k, v in updates.items() if v is not None}},
        source="eval options",
    )
    if ckpt == "blind":
        from encoderlab.suite.blind import train_blind

        vlm = train_blind(world)
    else:
        if not Path(ckpt).exists():
            raise DataError(f"{ckpt}: no such VLM checkpoint")
        from encoderlab import vlm as vlm_mod

        vlm = vlm_mod.load(ckpt)
    start = time.perf_counter()
    results = evaluate(vlm, cfg, out, cache or out.parent / "suite-items", progress=not quiet)
    secs = time.perf_counter() - start
    console.print((out / "results.md").read_text(), highlight=False)
    console.print(f"scored {len(results['benchmarks'])} benchmarks in {secs:.1f} s -> {out}")


@app.command("compare")
def compare_cmd(
    results_a: Path = typer.Argument(..., help="results directory of model A"),
    results_b: Path = typer.Argument(..., help="results directory of model B"),
    out: Path = typer.Option(None, help="write compare.json and compare.md here"),
    n: int = typer.Option(1000, help="bootstrap resamples"),
    seed: int = typer.Option(0, help="bootstrap seed"),
) -> None:
    """Paired comparison B - A per benchmark and category, with paired-bootstrap 95% CIs."""
    from encoderlab.suite.compare import compare, compare_markdown

    cmp = compare(results_a, results_b, n=n, seed=seed)
    text = compare_markdown(cmp)
    console.print(text, highlight=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(cmp, indent=2, sort_keys=True))
        (out / "compare.md").write_text(text)

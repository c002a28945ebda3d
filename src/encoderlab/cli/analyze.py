"""``encoderlab analyze``: what each encoder's embeddings are sensitive to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from encoderlab.cli import app
from encoderlab.errors import EncoderlabError
from encoderlab.progress import console


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def load_encoders(specs: list[str]) -> dict[str, Any]:
    """Name -> encoder for run directories (named by objective) and ``KIND:MODEL=PATH``
    specs (named by model); clashing names fall back to the directory name, then a suffix."""
    from encoderlab.evaluate.external import is_external_spec, load_external
    from encoderlab.train.pretrain import load_encoder, run_objective, unique_name

    out: dict[str, Any] = {}
    for spec in specs:
        if is_external_spec(spec):
            enc = load_external(spec)
            candidates = [spec.split("=", 1)[0].split(":", 1)[1]]
        elif Path(spec).is_file():
            raise EncoderlabError(
                f"{spec}: a weights file needs its kind and model, e.g. "
                f"timm:vit_base_patch16_224={spec} or open_clip:ViT-B-32={spec}"
            )
        else:
            path = Path(spec)
            enc = load_encoder(path)
            candidates = [run_objective(path), path.resolve().name]
        out[unique_name(candidates, out)] = enc
    return out


def _world_from_runs(specs: list[str]) -> Any:
    """The SynthWorld config the first run directory was trained on (via its data manifest)."""
    from encoderlab.evaluate.imagesets import world_of

    for spec in specs:
        config = Path(spec) / "config.json"
        if config.is_file():
            data = json.loads(config.read_text()).get("data", {}).get("path")
            if data and Path(data).exists():
                world = world_of(Path(data))
                if world is not None:
                    return world
    return None


@app.command("analyze")
def analyze_cmd(
    encoders: list[str] = typer.Argument(
        ..., help="run directories, or KIND:MODEL=WEIGHTS (timm:NAME=FILE, open_clip:NAME=FILE)"
    ),
    out: Path = typer.Option(..., "--out", help="output directory"),
    scenes: int = typer.Option(2000, help="held-out SynthWorld scenes for sensitivity"),
    data: Path = typer.Option(
        None, help="labelled images: SynthWorld data set / shard dir, or a labels CSV"
    ),
    world: str = typer.Option(
        None, help="preset or YAML whose `world` section defines SynthWorld (default: the runs')"
    ),
    factors: str = typer.Option(None, help="comma-separated counterfactual factors (default all)"),
    attributes: str = typer.Option(
        None, help="comma-separated attributes / CSV columns for probes and pair mining"
    ),
    split: str = typer.Option("test", help="split, when --data is a data-set root"),
    max_images: int = typer.Option(None, help="use only the first N images of --data"),
    cache: Path = typer.Option(None, help="embedding cache directory (default OUT/cache)"),
    precision: str = typer.Option("auto", help="auto (bf16 where native) | bf16 | fp32"),
    device: str = typer.Option("auto", help="auto (cuda if available) | cpu | cuda[:N]"),
    batch_size: int = typer.Option(256),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Counterfactual sensitivity, pair mining, attribute probes and CKA of encoders."""
    from encoderlab.config import parse_config, preset_section
    from encoderlab.data.synthworld import WorldConfig
    from encoderlab.evaluate.analyze import AnalysisConfig, analyze
    from encoderlab.evaluate.sensitivity_table import is_highlight

    updates: dict[str, Any] = {
        "scenes": scenes,
        "data_split": split,
        "max_images": max_images,
        "precision": precision,
        "batch_size": batch_size,
        "seed": seed,
        "attributes": _csv(attributes),
    }
    if factors:
        updates["factors"] = _csv(factors)
    cfg = parse_config(AnalysisConfig, updates, source="encoderlab analyze")
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        target = torch.device(device)
    except RuntimeError:
        raise EncoderlabError(f"--device: unknown device {device!r}") from None
    models = {name: enc.to(target) for name, enc in load_encoders(encoders).items()}
    world_cfg = preset_section(world, "world", WorldConfig) if world else None
    if world_cfg is None and data is None:
        world_cfg = _world_from_runs(encoders) or WorldConfig()
    result = analyze(
        models,
        out,
        cfg,
        world=world_cfg,
        data=data,
        cache_dir=cache or out / "cache",
        progress=not quiet,
    )
    sens = result["sensitivity"]
    if "encoders" in sens:
        table = Table(title=f"sensitivity ({sens['scenes']} scenes; 1.0 = random pair)")
        table.add_column("factor")
        for name in sens["encoders"]:
            table.add_column(name, justify="right")
        for factor in sens["factors"]:
            table.add_row(
                factor,
                *(_fmt(sens["encoders"][n]["factors"][factor]["value"]) for n in sens["encoders"]),
            )
        console.print(table)
        for comp in sens["comparisons"]:
            if is_highlight(comp["a"], comp["b"]):
                sig = {f: d["value"] for f, d in comp["factors"].items() if d["significant"]}
                more_a = ", ".join(f for f, v in sig.items() if v > 0) or "none"
                more_b = ", ".join(f for f, v in sig.items() if v < 0) or "none"
                console.print(
                    f"significantly more sensitive: {comp['a']}: {more_a}; {comp['b']}: {more_b}"
                )
    else:
        console.print(f"sensitivity skipped: {sens['skipped']}")
    total = sum(result["timing"].values())
    console.print(
        f"wrote {out / 'analysis.json'}, {out / 'sensitivity.md'} and "
        f"{len(result['figures'])} figures in {total:.1f} s"
    )

"""``encoderlab pretrain`` and ``encoderlab probe``: train one encoder, check the control."""

from __future__ import annotations

from pathlib import Path

import typer

from encoderlab.cli import app
from encoderlab.config import preset_section
from encoderlab.errors import ConfigError, DataError
from encoderlab.progress import console


@app.command("pretrain")
def pretrain_cmd(
    objective: str = typer.Option(..., help="clip | siglip | clip-pretrained-text | dino"),
    data: Path = typer.Option(..., help="training shards (a split directory, e.g. DATA/train)"),
    out: Path = typer.Option(..., help="run directory (resumes if it holds a checkpoint)"),
    preset: str = typer.Option("tiny", help="preset name or YAML path"),
    samples: int = typer.Option(None, help="override the number of samples seen"),
    precision: str = typer.Option(None, help="bf16 | fp32"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Pretrain a ViT with one objective; every objective shares the preset's schedule.

    Runs under torchrun as is: `torchrun --nproc-per-node 2 -m encoderlab pretrain ...`.
    """
    from encoderlab.encoders.vit import EncoderConfig
    from encoderlab.objectives import OBJECTIVES, ObjectiveConfig
    from encoderlab.train.config import TrainConfig
    from encoderlab.train.pretrain import PretrainConfig, pretrain

    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if (data / "manifest.json").is_file():
        data = data / "train"
    if not data.exists():
        raise DataError(f"{data}: no such directory (generate it with `encoderlab data synth`)")
    cfg = PretrainConfig(
        encoder=preset_section(preset, "encoder", EncoderConfig),
        objective=preset_section(preset, "objective", ObjectiveConfig),
        train=preset_section(preset, "pretrain", TrainConfig),
    )
    updates = {k: v for k, v in {"samples": samples, "precision": precision}.items() if v}
    if updates:
        cfg.train = cfg.train.model_validate({**cfg.train.model_dump(), **updates})
    summary = pretrain(objective, cfg, data, out, progress=not quiet)
    final = summary["final"]
    console.print(
        f"{objective}: {summary['steps']} steps, loss {final.get('loss', float('nan')):.4f}, "
        f"{final.get('samples_per_s', 0):.0f} samples/s, {summary['seconds']:.0f} s -> {out}"
    )
    if summary["skipped"]:
        console.print(summary["skipped_summary"])


@app.command("probe")
def probe_cmd(
    runs: list[Path] = typer.Argument(..., help="finished pretraining run directories"),
    data: Path = typer.Option(
        ..., help="data-set root with train/ and test/ splits (or a study's data/ stage)"
    ),
    out: Path = typer.Option(Path("control"), help="where control.json / control.md go"),
    preset: str = typer.Option("tiny", help="preset whose `control` section to use"),
) -> None:
    """The control check: kNN, linear probe and zero-shot category accuracy per encoder."""
    from encoderlab.data.shards import dataset_root
    from encoderlab.evaluate.control import ControlConfig, control_check

    data = dataset_root(data)
    for split in ("train", "test"):
        if not (data / split).is_dir():
            raise DataError(f"{data}: no {split}/ split (pass a data-set root)")
    cfg = preset_section(preset, "control", ControlConfig)
    summary = control_check(runs, data / "train", data / "test", cfg, out)
    console.print((out / "control.md").read_text(), highlight=False)
    if summary.get("matched") is False:
        console.print("[yellow]warning:[/] CLIP and DINO are not matched on the control check")

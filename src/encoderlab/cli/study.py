"""``encoderlab study ...``: the whole controlled study from one config."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from encoderlab.cli import app
from encoderlab.progress import console

study_app = typer.Typer(help="Run a whole controlled study from one config.", no_args_is_help=True)
app.add_typer(study_app, name="study")


def _study(preset: str, out: Path | None, progress: bool = True):
    from encoderlab.study.config import load_study
    from encoderlab.study.pipeline import Study

    cfg = load_study(preset)
    return Study(cfg, out or Path("runs") / Path(preset).stem, progress=progress)


@study_app.command("run")
def run(
    preset: str = typer.Option("tiny", help="preset name or study YAML path"),
    out: Path = typer.Option(None, help="study directory (default runs/PRESET)"),
    only: list[str] = typer.Option(
        None, help="run just these stages (a name or prefix, e.g. pretrain/dino) and their inputs"
    ),
) -> None:
    """Run every stage that is not already done (cached by config hash; resumes)."""
    _study(preset, out).run(only=only or None)


@study_app.command("plan")
def plan(
    preset: str = typer.Option("tiny", help="preset name or study YAML path"),
    out: Path = typer.Option(None, help="study directory (default runs/PRESET)"),
) -> None:
    """Show each stage and whether a run would skip, resume or (re)run it."""
    table = Table("stage", "status", "hash", "directory")
    for stage, state in _study(preset, out).plan():
        table.add_row(stage.name, state, stage.key.hash, str(stage.directory))
    console.print(table)


@app.command("report")
def report(
    study_dir: Path = typer.Argument(..., help="a study directory (encoderlab study run --out)"),
) -> None:
    """(Re)build a study's HTML and markdown report from what its stages wrote."""
    from encoderlab.errors import DataError
    from encoderlab.report import build_report

    if not study_dir.is_dir():
        raise DataError(f"{study_dir}: no such study directory")
    console.print(f"wrote {build_report(study_dir)}")

"""``encoderlab vlm ...``: train a LLaVA-style VLM on one or two encoders, ask it a question."""

from __future__ import annotations

from pathlib import Path

import typer

from encoderlab.cli import app
from encoderlab.progress import console

vlm_app = typer.Typer(help="Train and query LLaVA-1.5-style VLMs.", no_args_is_help=True)
app.add_typer(vlm_app, name="vlm")


@vlm_app.command("train")
def train_cmd(
    encoder: list[Path] = typer.Option(
        ..., "--encoder", help="pretraining run directory; give it twice for a fused VLM"
    ),
    data: Path = typer.Option(..., help="training data: a data-set root or its train shards"),
    out: Path = typer.Option(..., help="VLM checkpoint directory (resumes if interrupted)"),
    preset: str = typer.Option("tiny", help="tiny | smoke | a study preset or YAML path"),
    lm: str = typer.Option(None, help="a local Hugging Face causal LM instead of the embedded one"),
    lm_cache: Path = typer.Option(None, help="stage-0 LM cache (default: OUT/../lm-cache)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Stage 0 (cached LM), stage 1 (projector) and stage 2 (projector + LM) on the encoder(s)."""
    from encoderlab.vlm import load_vlm_config, train_vlm

    cfg = load_vlm_config(preset)
    if lm is not None:
        cfg = cfg.model_copy(update={"lm_path": lm})
    record = train_vlm(encoder, data, out, cfg, lm_cache=lm_cache, progress=not quiet)
    for name, stage in record["stages"].items():
        loss = stage.get("final", {}).get("loss", float("nan"))
        console.print(
            f"{name}: {stage['steps']} steps, loss {loss:.4f}, "
            f"{stage['trainable_params']:,} trainable params, {stage['seconds']:.0f} s"
        )
    console.print(f"VLM {record['checkpoint_hash']} -> {out}")


@vlm_app.command("ask")
def ask_cmd(
    ckpt: Path = typer.Argument(..., help="VLM checkpoint directory"),
    image: Path = typer.Argument(..., help="image file"),
    question: str = typer.Argument(..., help="the question (add options and instructions freely)"),
    max_new_tokens: int = typer.Option(16, help="longest answer, in tokens"),
) -> None:
    """Answer one question about one image (greedy decoding)."""
    from encoderlab.vlm import load
    from encoderlab.vlm.vision import read_image

    vlm = load(ckpt)
    pixels = read_image(image, vlm.tower.image_size)
    print(vlm.generate(pixels[None], [question], max_new_tokens=max_new_tokens)[0])

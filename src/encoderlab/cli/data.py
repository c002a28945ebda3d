"""``encoderlab data ...``: generate SynthWorld, preview it, summarise any shard set."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from encoderlab.cli import app
from encoderlab.config import preset_section
from encoderlab.errors import DataError
from encoderlab.progress import console

data_app = typer.Typer(help="Generate, preview and inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _split_dir(path: Path, split: str) -> Path:
    """A data-set root (with a manifest) resolves to one split; a shard dir stays as is."""
    if not path.exists():
        raise DataError(f"{path}: no such directory")
    return path / split if (path / "manifest.json").is_file() else path


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="output directory"),
    preset: str = typer.Option("tiny", help="preset name or YAML path"),
    train: int = typer.Option(None, help="override the number of training samples"),
    workers: int = typer.Option(None, help="writer processes"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Generate a SynthWorld data set (train/val/test shards + manifest)."""
    from encoderlab.data.synth import DataConfig, is_current, synthesize
    from encoderlab.data.synthworld import WorldConfig

    world = preset_section(preset, "world", WorldConfig)
    data = preset_section(preset, "data", DataConfig)
    updates = {k: v for k, v in {"train": train, "workers": workers}.items() if v is not None}
    data = data.model_copy(update=updates)
    if is_current(out, world, data):
        console.print(f"{out}: already up to date")
        return
    start = time.perf_counter()
    synthesize(world, data, out, progress=not quiet)
    total = data.train + data.val + data.test
    secs = time.perf_counter() - start
    console.print(f"wrote {total} samples to {out} in {secs:.1f} s ({total / secs:.0f} samples/s)")


@data_app.command("preview")
def preview(
    path: Path = typer.Argument(..., help="data-set root, shard directory, .tar or labels .csv"),
    out: Path = typer.Option(None, help="PNG to write (default: PATH/preview.png)"),
    split: str = typer.Option("train", help="split, when PATH is a data-set root"),
    n: int = typer.Option(32, help="number of samples"),
    cols: int = typer.Option(8),
    scale: int = typer.Option(3, help="pixel upscaling"),
) -> None:
    """Write a PNG grid of the first N samples with their captions."""
    from encoderlab.data.preview import preview_source

    source = _split_dir(path, split) if path.is_dir() else path
    out = out or (path if path.is_dir() else path.parent) / "preview.png"
    preview_source(source, out, n=n, cols=cols, scale=scale)
    console.print(f"wrote {out}")


def _factor_counts(metas: list[dict]) -> dict[str, Counter]:
    """Distributions of the factors a SynthWorld sample records (primary object for objects);
    for other data sets, of every scalar metadata field (e.g. a labels CSV's columns)."""
    counts: dict[str, Counter] = {}

    def add(name: str, value: object) -> None:
        if isinstance(value, str | int | float | bool) or value is None:
            counts.setdefault(name, Counter())[value] += 1

    for meta in metas:
        if "kind" not in meta:  # not SynthWorld: count what is there
            for name, value in meta.items():
                add(name, value)
            continue
        add("kind", meta["kind"])
        if meta["kind"] != "objects":
            continue
        add("objects", meta.get("num_objects"))
        for factor in ("category", "superclass", "colour", "texture", "style", "size"):
            add(factor, meta["objects"][0].get(factor))
        add("background", (meta.get("background") or {}).get("style"))
        text = meta.get("text")
        add("text", text.get("kind") if text else "none")
    return counts


@data_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="data-set root, shard directory, .tar or labels .csv"),
    split: str = typer.Option(None, help="only this split of a data-set root"),
) -> None:
    """Counts per split, factor distributions, caption lengths and skipped samples."""
    from encoderlab.data.reader import SampleDataset, SkipReport, index_source

    if (path / "manifest.json").is_file():
        splits = [split] if split else sorted(p.name for p in path.iterdir() if p.is_dir())
        sources = {s: path / s for s in splits}
    else:
        sources = {path.name: _split_dir(path, "")}
    for name, source in sources.items():
        refs, skips = index_source(source, require_text=False)
        report = SkipReport()
        report.extend(skips)
        dataset = SampleDataset(refs)
        metas = [dataset._payload(r.meta) for r in refs]  # metadata only: no image decoding
        metas = [json.loads(m) if isinstance(m, bytes) else (m or {}) for m in metas]
        texts = [dataset._payload(r.text) for r in refs]
        lengths = [len((t.decode() if isinstance(t, bytes) else (t or "")).split()) for t in texts]
        table = Table(title=f"{name}: {len(refs)} samples", show_lines=False)
        table.add_column("factor")
        table.add_column("values (count)")
        for factor, counter in _factor_counts(metas).items():
            top = ", ".join(f"{k} ({v})" for k, v in counter.most_common(8))
            more = f" ... {len(counter)} values" if len(counter) > 8 else ""
            table.add_row(factor, top + more)
        if lengths:
            table.add_row(
                "caption words", f"mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}"
            )
        console.print(table)
        if len(report):
            console.print(report.summary())

"""``encoderlab data ...``: generate SynthWorld, import real images, preview and summarise any
shard set."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import typer
from pydantic import ValidationError
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


@data_app.command("import")
def import_(
    source: str = typer.Argument(
        ...,
        help="'openclipart' (the Debian package openclipart-png), a folder of category "
        "folders laid out like it, or a .csv / .jsonl of image paths, captions and labels",
    ),
    out: Path = typer.Option(..., "--out", help="output data-set directory"),
    images: Path = typer.Option(
        None, help="labels file only: the folder image paths are relative to (default: its own)"
    ),
    image_size: int = typer.Option(64, help="side of the stored square images"),
    aspect: str = typer.Option("pad", help="pad (whole image on white) or crop (centre crop)"),
    val: float = typer.Option(0.1, help="share of each category in val"),
    test: float = typer.Option(0.1, help="share of each category in test"),
    min_category: int = typer.Option(1, help="skip categories with fewer usable images"),
    max_per_category: int = typer.Option(None, help="keep at most N images per category"),
    seed: int = typer.Option(0, help="salt of the split hash"),
    workers: int = typer.Option(2, help="image-preparing processes"),
    vlm_files: bool = typer.Option(
        True,
        help="also write OUT/llava-train.json (stage-2 conversations, LLaVA format) and "
        "OUT/vmcbench-test.tsv (multiple-choice questions, VMCBench format)",
    ),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Import real images as train/val/test shards + manifest (what `data synth` writes).

    Every image is turned upright (EXIF), converted to RGB with alpha composited onto white,
    padded (or centre-cropped) to a square and resized; missing, empty, truncated, undecodable,
    tiny, blank and duplicate files are skipped and counted per reason (OUT/import.json).
    Splits are stratified by category. For openclipart, category = top-level folder; files in
    a folder named special, gradients, patterns, backgrounds, textures, examples, decorations,
    borders, shapes, stars, arrows, callouts, flowchart, jigsaw, diagrams, icons, buttons, led,
    logos, semaphore, unsorted or duplicates are not pictures of objects and are skipped
    ("not an object"; the rule is encoderlab.data.clipart.NON_OBJECT_FOLDERS).
    """
    from encoderlab.config import format_validation_error
    from encoderlab.data.importer import ImportConfig, format_counts, import_items

    try:
        cfg = ImportConfig(
            image_size=image_size,
            aspect=aspect,
            val=val,
            test=test,
            seed=seed,
            min_category=min_category,
            max_per_category=max_per_category,
            workers=workers,
        )
    except ValidationError as err:
        raise DataError(format_validation_error(err, "data import")) from None
    start = time.perf_counter()
    path = Path(source)
    if source == "openclipart" or path.is_dir():
        from encoderlab.data.clipart import OPENCLIPART_ROOT, scan_clipart

        root = OPENCLIPART_ROOT if source == "openclipart" else path
        items, skipped = scan_clipart(root)
        described = {"kind": "clipart", "root": str(root)}
    elif path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        from encoderlab.data.import_folder import scan_folder

        items, skipped = scan_folder(path, images)
        described = {"kind": "labels", "labels": str(path), "images": str(images or path.parent)}
    else:
        raise DataError(f"{source}: not 'openclipart', a directory, or a .csv / .jsonl labels file")
    result = import_items(items, out, cfg, described, skipped, progress=not quiet)
    result.seconds = time.perf_counter() - start  # the scan included
    console.print(format_counts(result), highlight=False)
    written = ["manifest.json", "import.json"]
    if vlm_files:
        from encoderlab.data.labelled_vqa import export_vmcbench
        from encoderlab.vlm.config import load_vlm_config
        from encoderlab.vlm.llava_json import export_llava

        recipe = load_vlm_config("tiny")  # the default study's stage-2 conversations
        llava = out / "llava-train.json"
        for name, export in (
            ("llava-train.json", lambda: export_llava(out / "train", llava, recipe)),
            ("vmcbench-test.tsv", lambda: export_vmcbench(out / "test", out / "vmcbench-test.tsv")),
        ):
            try:
                _, count = export()
            except DataError as err:  # e.g. fewer than 4 categories: nothing to ask
                console.print(f"not written: {name} ({err})", highlight=False)
            else:
                written.append(f"{name}: {count}")
    console.print(f"wrote {out} ({', '.join(written)})", highlight=False)


def _split_of(data: Path, split: str) -> Path:
    from encoderlab.data.shards import dataset_root

    root = dataset_root(data)
    if not root.exists():
        raise DataError(f"{data}: no such directory")
    if (root / "manifest.json").is_file():
        if not (root / split).is_dir():
            raise DataError(f"{root}: no split {split!r}")
        return root / split
    return root


@data_app.command("llava-json")
def llava_json(
    data: Path = typer.Argument(..., help="data-set root (SynthWorld or imported) or shard dir"),
    out: Path = typer.Option(None, help="JSON to write (default: DATA/llava-SPLIT.json)"),
    split: str = typer.Option("train", help="split, when DATA is a data-set root"),
    n: int = typer.Option(None, help="first N readable samples (default: all)"),
    preset: str = typer.Option(
        "tiny", help="preset whose VLM recipe sets the turns, multiple-choice share and seed"
    ),
    turns: int = typer.Option(None, help="question turns per conversation (default: preset's)"),
    mc_fraction: float = typer.Option(
        None, help="share of multiple-choice turns (default: the preset's)"
    ),
    seed: int = typer.Option(None, help="conversation seed (default: the preset's vlm.seed)"),
    export_images: bool = typer.Option(
        False, help="also write the images as files beside the JSON (for LLaVA's own trainer)"
    ),
) -> None:
    """LLaVA-format instruction JSON of a split: the stage-2 conversations encoderlab trains
    on under a preset's VLM recipe (SynthWorld's questions, or questions about a real set's
    labels: category, superclass). `vlm train --data FILE.json` trains stage 2 from such a
    file."""
    from encoderlab.config import parse_config
    from encoderlab.vlm.config import VLMConfig, load_vlm_config
    from encoderlab.vlm.llava_json import export_llava

    recipe = load_vlm_config(preset)
    given = {"n_turns": turns, "mc_fraction": mc_fraction, "seed": seed}
    updates = {k: v for k, v in given.items() if v is not None}
    if updates:  # validated as the preset's own keys are
        merged = {**recipe.model_dump(mode="json"), **updates}
        recipe = parse_config(VLMConfig, merged, source="llava-json options")
    source = _split_of(data, split)
    out = out or (source.parent / f"llava-{source.name}.json")
    path, count = export_llava(source, out, recipe, n, export_images)
    console.print(f"wrote {count} conversations to {path}", highlight=False)


@data_app.command("vmcbench-tsv")
def vmcbench_tsv(
    data: Path = typer.Argument(..., help="labelled data-set root (imported) or shard dir"),
    out: Path = typer.Option(None, help="TSV to write (default: DATA/vmcbench-SPLIT.tsv)"),
    split: str = typer.Option("test", help="split, when DATA is a data-set root"),
    n: int = typer.Option(None, help="first N readable samples (default: all)"),
    seed: int = typer.Option(0),
) -> None:
    """A VMCBench / VLMEvalKit TSV of multiple-choice questions about a labelled split ("What
    is shown in the image?", distractors from the other categories); score a VLM on it with
    `encoderlab eval CKPT --suite FILE.tsv`."""
    from encoderlab.data.labelled_vqa import export_vmcbench

    source = _split_of(data, split)
    out = out or (source.parent / f"vmcbench-{source.name}.tsv")
    path, count = export_vmcbench(source, out, n, seed)
    console.print(f"wrote {count} items to {path}", highlight=False)


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
    imported = path / "import.json"  # written by `data import`: files it left out, and why
    if imported.is_file():
        record = json.loads(imported.read_text())
        reasons = ", ".join(f"{k} {v}" for k, v in record.get("skipped", {}).items())
        console.print(
            f"import: {record.get('skipped_total', 0)} files skipped"
            + (f" ({reasons})" if reasons else ""),
            highlight=False,
        )

"""An image folder with a CSV or JSONL of captions and labels, as a source for the importer.

One row (CSV) or one JSON object per line (JSONL) per image:

- the image file: column / key ``image``, ``path``, ``file`` or ``filename`` (as for
  ``data.folder``), relative to the labels file's directory unless absolute;
- the caption: ``caption`` or ``text``; without such a column the caption is the
  ``category`` label; a row whose caption is empty is skipped (``no caption``);
- every other column / key is a label and goes to the sample's ``meta``. A classification set
  (a ``category`` label) is read as one object per image: ``superclass`` defaults to the
  category and ``num_objects`` to 1, the labels the control check reads.

The labels file must be UTF-8 (a BOM is allowed): anything else is a one-line error naming the
file, line and byte, as is a line that is not JSON, a missing image column or an empty file.
Rows are otherwise never fatal: an image that is missing is skipped and counted
(``missing file``), like an undecodable one; the same image listed twice is kept once
(``duplicate row``).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from encoderlab.data.folder import IMAGE_COLUMNS, TEXT_COLUMNS
from encoderlab.data.importer import ImportItem, safe_key
from encoderlab.errors import DataError

__all__ = ["read_labels", "scan_folder"]


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: not UTF-8 (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); re-encode the file as UTF-8"
        ) from None


def _native(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def read_labels(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a ``.csv`` or ``.jsonl`` labels file (errors: one line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {number}: not a JSON object")
            rows.append((number, row))
        if not rows:
            raise DataError(f"{path}: empty labels file")
        return rows
    if suffix != ".csv":
        raise DataError(f"{path}: unknown labels format {suffix!r}; expected .csv or .jsonl")
    try:
        table = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: unreadable CSV ({reason})") from None
    records = table.to_dict("records")
    return [(i + 2, {str(k): _native(v) for k, v in r.items()}) for i, r in enumerate(records)]


def scan_folder(
    labels: str | Path, images: str | Path | None = None
) -> tuple[list[ImportItem], list[tuple[str, str, str]]]:
    """Items of a labels file (images relative to ``images``, default the file's directory)
    and the rows skipped before any image is read, as ``(file, reason, detail)``."""
    labels = Path(labels)
    rows = read_labels(labels)
    root = Path(images) if images is not None else labels.parent
    columns = list(dict.fromkeys(k for _, row in rows for k in row))
    image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
    if image_col is None:
        raise DataError(f"{labels}: no image column (expected one of {', '.join(IMAGE_COLUMNS)})")
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_col is None and "category" not in columns:
        raise DataError(
            f"{labels}: no caption column ({' or '.join(TEXT_COLUMNS)}) and no 'category' "
            "label to caption the images with"
        )
    items: list[ImportItem] = []
    skipped: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for line, row in rows:
        name = row.get(image_col)
        where = f"{labels}: line {line}"
        if not isinstance(name, str) or not name.strip():
            skipped.append((where, "no image", f"empty {image_col!r}"))
            continue
        path = root / name
        caption = row.get(text_col) if text_col is not None else row.get("category")
        if caption is None or not str(caption).strip():
            skipped.append((str(path), "no caption", f"line {line}"))
            continue
        key = safe_key(Path(name).as_posix().lstrip("/"))
        if key in seen:
            skipped.append((str(path), "duplicate row", f"line {line}"))
            continue
        seen.add(key)
        meta = {k: v for k, v in row.items() if k not in (image_col, text_col)}
        if "category" in meta and meta["category"] is not None:
            meta.setdefault("superclass", meta["category"])
            meta.setdefault("num_objects", 1)
        meta["source"] = str(name)
        items.append(ImportItem(path, key, str(caption).strip(), meta))
    return items, skipped

"""Image folder + labels CSV as a data source for the shared reader.

The CSV has one row per image: a column naming the image file (``image``, ``path``, ``file``
or ``filename``; relative paths are relative to the CSV's directory), an optional caption
column (``caption`` or ``text``), and any other columns, which become the sample's ``meta``
(labels / factors). A row whose image file does not exist is an error naming the CSV line,
not a skip: a labelled evaluation set that silently loses rows would bias its scores. Images
that exist but cannot be decoded are skipped and reported at read time, as for shards.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from encoderlab.data.reader import Blob, SampleRef, SkipRecord
from encoderlab.errors import DataError

__all__ = ["IMAGE_COLUMNS", "TEXT_COLUMNS", "index_folder"]

IMAGE_COLUMNS = ("image", "path", "file", "filename")
TEXT_COLUMNS = ("caption", "text")


def _native(value: Any) -> Any:
    """A JSON-able Python value for a CSV cell (missing cells become None)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def index_folder(
    csv_path: str | Path, require_text: bool = True
) -> tuple[list[SampleRef], list[SkipRecord]]:
    """One ``SampleRef`` per CSV row, in row order, and the rows skipped for lack of a caption.

    A missing CSV, image column or image file is a one-line ``DataError``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such file")
    try:
        table = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{csv_path}: unreadable CSV ({reason})") from None
    columns = [str(c) for c in table.columns]
    image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
    if image_col is None:
        raise DataError(f"{csv_path}: no image column (expected one of {', '.join(IMAGE_COLUMNS)})")
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    if require_text and text_col is None:
        raise DataError(
            f"{csv_path}: no caption column ({' or '.join(TEXT_COLUMNS)}); "
            "pass require_text=False to read labels only"
        )
    label_cols = [c for c in columns if c not in (image_col, text_col)]
    root = csv_path.parent
    refs: list[SampleRef] = []
    skips: list[SkipRecord] = []
    for row_number, row in enumerate(table.to_dict("records")):
        line = row_number + 2  # 1-based, after the header line
        name = _native(row[image_col])
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{csv_path}: line {line}: empty {image_col!r}")
        image_path = root / name
        if not image_path.is_file():
            raise DataError(f"{csv_path}: line {line}: image {name!r} not found")
        text = _native(row[text_col]) if text_col is not None else None
        if require_text and (text is None or not str(text).strip()):
            skips.append(SkipRecord(str(csv_path), name, f"line {line}: no caption"))
            continue
        meta = {c: _native(row[c]) for c in label_cols}
        refs.append(
            SampleRef(
                file=str(csv_path),
                key=name,
                image=Blob(str(image_path), 0, -1),
                text=None if text is None else str(text),
                meta=meta,
            )
        )
    return refs, skips

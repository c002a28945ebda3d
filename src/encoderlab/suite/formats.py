"""Benchmark tables on disk: VLMEvalKit / VMCBench TSV (base64 images) and parquet.

One row per item with the columns ``index, question, A, B, C, D, answer, image`` and optionally
``hint`` and ``category``; any other column is kept in ``MCItem.extra``. The synthetic
benchmarks are cached in exactly this format, so a cache file is also an export that VLMEvalKit
reads. Rows whose image cell is the ``index`` of another row share that row's image (VLMEvalKit's
convention for repeated images).

Images are checked when the table is loaded (base64 decodes, PIL recognises the bytes) but kept
encoded: a real benchmark decoded at full resolution would not fit in memory.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from encoderlab.errors import DataError
from encoderlab.suite.questions import LETTERS

__all__ = [
    "REQUIRED_COLUMNS",
    "MCItem",
    "decode_image",
    "encode_image",
    "images_to_tensor",
    "load_table",
    "write_table",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("index", "question", "A", "B", "answer", "image")
_KNOWN = frozenset({*REQUIRED_COLUMNS, *LETTERS, "hint", "category"})


@dataclass
class MCItem:
    """One benchmark item. ``answer`` is the correct letter (multiple choice) or the answer text
    (open-ended tables); ``answers`` lists every accepted short answer for open-ended metrics."""

    index: str
    question: str
    options: tuple[str, ...]
    answer: str
    image: bytes  # encoded PNG / JPEG bytes
    hint: str = ""
    category: str = ""
    answers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)


def encode_image(image: Image.Image) -> bytes:
    """PNG bytes (fixed settings, so the same image always gives the same bytes)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_image(data: bytes, size: int | None = None) -> np.ndarray:
    """Encoded bytes -> uint8 ``[H, W, 3]``, resized (bicubic) to ``size x size`` if given."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image)


def images_to_tensor(items: Sequence[MCItem], size: int | None = None) -> torch.Tensor:
    """A batch of item images as uint8 ``[B, 3, H, W]`` (the VLM protocol's input)."""
    arrays = [decode_image(it.image, size) for it in items]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _cell(value: Any) -> str:
    """A table cell as text; missing values (NaN, None) become ""."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _image_bytes(value: Any, where: str) -> bytes:
    """Base64 text, raw bytes, or a Hugging Face ``{"bytes": ...}`` struct -> checked bytes."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    else:
        text = _cell(value).strip()
        if text.startswith("["):
            raise DataError(f"{where}: multi-image items are not supported")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{where}: not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DataError(f"{where}: not a decodable image") from None
    return data


def _answers(value: str) -> tuple[str, ...]:
    """An answer cell: one answer, or a Python list literal of answers (VLMEvalKit VQA tables)."""
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return (value,)
        if isinstance(parsed, list):
            return tuple(str(v) for v in parsed)
    return (value,)


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: benchmark file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".tsv":
            # dtype=str and no NA parsing: an option "None" or "NA" must stay text.
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable table ({str(err).splitlines()[0]})") from None
    raise DataError(f"{path}: unknown table format {suffix!r}; expected .tsv or .parquet")


def load_table(path: str | Path, mc: bool = True) -> list[MCItem]:
    """Read a benchmark table; errors name the file, the row (1-based, header = row 1) and column.

    ``mc=True``: ``answer`` must be one of the option letters present in that row.
    ``mc=False`` (open-ended): ``answer`` holds the answer text or a list literal of answers, and
    the option columns may be absent.
    """
    path = Path(path)
    frame = _read_frame(path)
    required = REQUIRED_COLUMNS if mc else ("index", "question", "answer", "image")
    for column in required:
        if column not in frame.columns:
            raise DataError(f"{path}: row 1 (header): missing column {column!r}")
    records = frame.to_dict(orient="records")
    image_by_index = {_cell(r["index"]): r["image"] for r in records}
    items: list[MCItem] = []
    seen: set[str] = set()
    for row, rec in enumerate(records, start=2):
        where = f"{path}: row {row}"
        index = _cell(rec["index"])
        if not index or index in seen:
            raise DataError(f"{where}, column 'index': {'empty' if not index else 'duplicate'}")
        seen.add(index)
        image_cell = rec["image"]
        if isinstance(image_cell, str) and image_cell in image_by_index and image_cell != index:
            image_cell = image_by_index[image_cell]  # VLMEvalKit: a reference to another row
        image = _image_bytes(image_cell, f"{where}, column 'image'")
        options = tuple(_cell(rec.get(letter)) for letter in LETTERS)
        n_opts = next((i for i, o in enumerate(options) if not o), len(options))
        options = options[:n_opts]
        answer = _cell(rec["answer"]).strip()
        if mc:
            if n_opts < 2:
                raise DataError(f"{where}, column 'B': a question needs at least 2 options")
            if any(_cell(rec.get(x)) for x in LETTERS[n_opts:]):
                raise DataError(f"{where}, column {LETTERS[n_opts]!r}: options must not skip")
            if answer not in LETTERS[:n_opts]:
                raise DataError(
                    f"{where}, column 'answer': {answer!r} is not one of {', '.join(LETTERS[:n_opts])}"
                )
        elif not answer:
            raise DataError(f"{where}, column 'answer': empty")
        extra = {str(k): v for k, v in rec.items() if k not in _KNOWN}
        answers = _answers(_cell(extra.pop("answers", ""))) if "answers" in extra else ()
        if not mc:
            answers = _answers(answer)
        items.append(
            MCItem(
                index=index,
                question=_cell(rec["question"]),
                options=options,
                answer=answer,
                image=image,
                hint=_cell(rec.get("hint")),
                category=_cell(rec.get("category")),
                answers=answers,
                extra=extra,
            )
        )
    return items


def write_table(items: Sequence[MCItem], path: str | Path) -> None:
    """Write items as a VLMEvalKit TSV or parquet (by suffix), atomically and deterministically.

    ``answers`` is written as a list literal column; ``extra`` values as their own columns.
    """
    path = Path(path)
    rows = []
    for it in items:
        row: dict[str, Any] = {"index": it.index, "question": it.question}
        for letter, option in zip(LETTERS, it.options, strict=False):
            row[letter] = option
        row.update(answer=it.answer, hint=it.hint, category=it.category)
        if it.answers:
            row["answers"] = repr(list(it.answers))
        row.update({k: v for k, v in it.extra.items()})
        row["image"] = base64.b64encode(it.image).decode("ascii")
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, sep="\t", index=False)
    tmp.replace(path)

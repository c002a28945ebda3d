"""VLMEvalKit TSV and parquet loaders: round trip, conventions, one-line errors naming row/column."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from encoderlab.errors import DataError
from encoderlab.suite.formats import (
    MCItem,
    decode_image,
    encode_image,
    images_to_tensor,
    load_table,
    write_table,
)


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    return encode_image(Image.new("RGB", (size, size), colour))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": list(range(n)),
            "question": [f"What colour is square {i}?" for i in range(n)],
            "A": ["red"] * n,
            "B": ["green"] * n,
            "C": ["blue"] * n,
            "D": ["None"] * n,  # must stay the text "None", not become a missing value
            "answer": ["A", "B", "C"][:n],
            "category": ["colour"] * n,
            "image": [_b64(_png(((255, 0, 0), (0, 255, 0), (0, 0, 255))[i % 3])) for i in range(n)],
        }
    )


def test_tsv_round_trip(tmp_path: Path) -> None:
    items = [
        MCItem(
            index=str(i),
            question="Q?\twith a tab",
            options=("x", "y", "z", "w"),
            answer="D",
            image=_png((i, 0, 0)),
            hint="look",
            category="c",
            answers=("w",),
            extra={"qtype": "t", "meta": '{"a": 1}'},
        )
        for i in range(3)
    ]
    path = tmp_path / "bench.tsv"
    write_table(items, path)
    first = path.read_bytes()
    write_table(items, path)
    assert path.read_bytes() == first  # deterministic bytes
    back = load_table(path)
    assert [(b.index, b.question, b.options, b.answer, b.hint, b.answers) for b in back] == [
        (a.index, a.question, a.options, a.answer, a.hint, a.answers) for a in items
    ]
    assert back[1].image == items[1].image and back[1].extra == {"qtype": "t", "meta": '{"a": 1}'}


def test_vlmevalkit_tsv_and_parquet_agree(tmp_path: Path) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    tsv, pq = load_table(tmp_path / "b.tsv"), load_table(tmp_path / "b.parquet")
    assert [t.options for t in tsv] == [p.options for p in pq] == [("red", "green", "blue", "None")] * 3  # fmt: skip
    assert [t.answer_index for t in tsv] == [0, 1, 2]
    assert [t.image for t in tsv] == [p.image for p in pq]
    batch = images_to_tensor(tsv, size=8)
    assert batch.shape == (3, 3, 8, 8) and batch.dtype.is_floating_point is False
    assert batch[1, :, 4, 4].tolist() == [0, 255, 0]


def test_parquet_image_structs_and_index_references(tmp_path: Path) -> None:
    frame = _frame()
    raw = [base64.b64decode(s) for s in frame["image"]]
    frame["image"] = [{"bytes": r, "path": None} for r in raw]  # Hugging Face Image feature
    frame.to_parquet(tmp_path / "hf.parquet", index=False)
    assert [it.image for it in load_table(tmp_path / "hf.parquet")] == raw
    frame["image"] = raw  # plain binary column
    frame.to_parquet(tmp_path / "raw.parquet", index=False)
    assert [it.image for it in load_table(tmp_path / "raw.parquet")] == raw
    # VLMEvalKit: an image cell holding another row's index reuses that row's image
    ref = _frame()
    ref.loc[2, "image"] = "0"
    ref.to_csv(tmp_path / "ref.tsv", sep="\t", index=False)
    assert load_table(tmp_path / "ref.tsv")[2].image == load_table(tmp_path / "ref.tsv")[0].image


def test_fewer_options_and_open_answers(tmp_path: Path) -> None:
    frame = _frame().drop(columns=["D"])
    frame.loc[0, "C"] = ""
    frame.loc[0, "answer"] = "B"
    frame.to_csv(tmp_path / "three.tsv", sep="\t", index=False)
    items = load_table(tmp_path / "three.tsv")
    assert items[0].options == ("red", "green") and items[1].options == ("red", "green", "blue")
    vqa = _frame()[["index", "question", "image"]].assign(answer=["['2', 'two']", "cat", "dog"])
    vqa.to_csv(tmp_path / "vqa.tsv", sep="\t", index=False)
    open_items = load_table(tmp_path / "vqa.tsv", mc=False)
    assert open_items[0].answers == ("2", "two") and open_items[1].answers == ("cat",)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["B"]), "row 1 (header): missing column 'B'"),
        (lambda f: f.drop(columns=["image"]), "row 1 (header): missing column 'image'"),
        (
            lambda f: f.assign(image=[f.image[0], "!!notbase64!!", f.image[2]]),
            "row 3, column 'image': not valid base64",
        ),
        (
            lambda f: f.assign(image=[f.image[0], f.image[1], _b64(b"not an image")]),
            "row 4, column 'image': not a decodable image",
        ),
        (
            lambda f: f.assign(answer=["A", "E", "C"]),
            "row 3, column 'answer': 'E' is not one of A, B, C, D",
        ),
        (lambda f: f.assign(index=[0, 1, 1]), "row 4, column 'index': duplicate"),
        (lambda f: f.assign(C=["blue", "", "blue"]), "row 3, column 'C': options must not skip"),
    ],
)
def test_bad_tables_name_row_and_column(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "bad.tsv"
    mutate(_frame()).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError) as err:
        load_table(path)
    assert str(err.value) == f"{path}: {message}"
    assert "\n" not in str(err.value)


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[1, "image"] = _b64(_png((1, 2, 3), size=64)[:60])
    frame.to_csv(tmp_path / "cut.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="row 3, column 'image'"):
        load_table(tmp_path / "cut.tsv")


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_table(tmp_path / "nope.tsv")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unknown table format"):
        load_table(tmp_path / "x.csv")


def test_decode_resizes() -> None:
    img = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert decode_image(buf.getvalue()).shape == (32, 32, 3)
    assert decode_image(buf.getvalue(), size=8).shape == (8, 8, 3)

"""`encoderlab data import`: real images (committed clip-art fixtures and generated bad files)
into the shards + manifest the trainer reads; what each bad input gives."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encoderlab.cli import main
from encoderlab.data.clipart import non_object_folder, scan_clipart, title_from_filename
from encoderlab.data.import_folder import scan_folder
from encoderlab.data.importer import IMPORT_JSON, ImportConfig, import_items, safe_key
from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.data.realimage import ImageSkip, load_image, prepare_image
from encoderlab.data.shards import read_manifest
from encoderlab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "clipart"
CFG = ImportConfig(image_size=32, workers=1)


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


# -- single images ----------------------------------------------------------------------------


def test_alpha_is_composited_onto_white_not_dropped() -> None:
    # transparent pixels that store black: dropping alpha would give a black square
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (10, 10, 30, 30))
    image = load_image(_png(rgba))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((20, 20)) == (200, 0, 0)
    # half-transparent red over white is pink
    half = Image.new("RGBA", (20, 20), (255, 0, 0, 128))
    r, g, b = load_image(_png(half)).getpixel((5, 5))
    assert r == 255 and 120 <= g <= 135 and g == b
    # greyscale with alpha (LA) and a palette with a transparent index
    la = Image.new("LA", (20, 20), (0, 0))
    assert load_image(_png(la)).getpixel((3, 3)) == (255, 255, 255)
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (0, 0, 10, 20))
    image = load_image(_png(pal, transparency=0))
    assert image.getpixel((2, 2)) == (0, 0, 255) and image.getpixel((15, 2)) == (255, 255, 255)


def test_cmyk_jpeg_and_16_bit_grey_become_rgb() -> None:
    cmyk = Image.new("CMYK", (24, 24), (0, 255, 255, 0))  # red in CMYK
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    r, g, b = load_image(buf.getvalue()).getpixel((12, 12))
    assert r > 200 and g < 60 and b < 60
    grey16 = Image.fromarray(np.full((10, 10), 32768, dtype=np.uint16))
    assert grey16.mode.startswith("I;16")
    assert load_image(_png(grey16)).getpixel((1, 1)) == (128, 128, 128)  # not clipped to 255


def test_exif_orientation_is_applied() -> None:
    # 40 wide x 20 high, red left half; Orientation 6 = "rotate 90 clockwise to display"
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    upright = load_image(buf.getvalue())
    assert upright.size == (20, 40)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_aspect_pad_keeps_the_whole_image_crop_is_the_readers() -> None:
    wide = Image.new("RGB", (80, 20), (0, 0, 0))
    wide.paste((255, 0, 0), (0, 0, 10, 20))  # a red strip at the far left
    padded = prepare_image(_png(wide), 32, "pad")
    cropped = prepare_image(_png(wide), 32, "crop")
    assert padded.size == cropped.size == (32, 32)
    assert padded.getpixel((16, 1)) == (255, 255, 255)  # white bands above and below
    assert padded.getpixel((0, 16))[0] > 200  # the red strip survives
    assert cropped.getpixel((0, 16)) == (0, 0, 0)  # the centre crop cuts it


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "undecodable"),
        ("truncated", "truncated"),
        ("tiny", "too small"),
        ("blank", "blank"),
    ],
)
def test_bad_files_raise_a_countable_skip(data: bytes | str, reason: str) -> None:
    if data == "truncated":
        noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        data = _png(Image.fromarray(noise))[:1500]
    elif data == "tiny":
        data = _png(Image.new("RGB", (8, 8), (0, 0, 0)))
    elif data == "blank":
        data = _png(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))
    with pytest.raises(ImageSkip) as skip:
        prepare_image(data, 32)
    assert skip.value.reason == reason


# -- labels ----------------------------------------------------------------------------------


def test_clipart_labels_and_the_curation_rule() -> None:
    assert title_from_filename("chemistry_flask_matthew__02.png") == "chemistry flask matthew"
    assert title_from_filename("mouth_-_body_part_nicu_b_06.png") == "mouth body part nicu b"
    assert title_from_filename("2.png") == "2"
    assert non_object_folder(Path("special/gradients/x.png")) == "special"
    assert non_object_folder(Path("shapes/stars/star.png")) == "shapes"
    assert non_object_folder(Path("animals/mammals/seal.png")) is None
    assert safe_key("animals/mammals/seal.png") == "animals--mammals--seal"
    assert safe_key("a b/c.d.jpg") == "a_b--c_d"
    items, skipped = scan_clipart(FIXTURES)
    assert len(items) == 24
    assert sorted((Path(f).name, r) for f, r, _ in skipped) == [
        ("gradient-peach.png", "not an object"),
        ("star_97pt04step.png", "not an object"),
    ]
    seal = next(it for it in items if it.key == "animals--mammals--seal")
    assert seal.text == "seal"
    assert seal.meta == {
        "category": "animals",
        "superclass": "living things",
        "subcategory": "animals/mammals",
        "title": "seal",
        "num_objects": 1,
        "source": "animals/mammals/seal.png",
    }


def test_labels_file_that_is_not_utf8_is_one_line_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("image,caption\na.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"labels\.csv: line 2: not UTF-8 \(byte 0xe9"):
        scan_folder(path)
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"image": "a.png", "caption": "x"}\n{"image": oops}\n')
    with pytest.raises(DataError, match=r"labels\.jsonl: line 2: not JSON"):
        scan_folder(jsonl)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("picture,caption\na.png,x\n")
    with pytest.raises(DataError, match="no image column"):
        scan_folder(nocol)


# -- whole imports ---------------------------------------------------------------------------


def test_import_fixtures_writes_the_shards_the_reader_reads(tmp_path: Path) -> None:
    items, skipped = scan_clipart(FIXTURES)
    result = import_items(items, tmp_path / "a", CFG, {"kind": "clipart"}, skipped, False)
    # stratified: every category in every split (6 images each: 4 train, 1 val, 1 test)
    assert result.counts == {
        "train": {"animals": 4, "food": 4, "tools": 4, "transportation": 4},
        "val": {"animals": 1, "food": 1, "tools": 1, "transportation": 1},
        "test": {"animals": 1, "food": 1, "tools": 1, "transportation": 1},
    }
    assert dict(result.skipped) == {"not an object": 2}
    manifest = read_manifest(tmp_path / "a")
    assert {s: i.num_samples for s, i in manifest.splits.items()} == {
        "train": 16,
        "val": 4,
        "test": 4,
    }
    assert manifest.config["source"] == {"kind": "clipart"}
    refs, skips = index_source(tmp_path / "a" / "train")
    assert len(refs) == 16 and not skips
    item = SampleDataset(refs)[0]
    assert tuple(item["image"].shape) == (3, 32, 32)
    assert item["meta"]["category"] in {"animals", "food", "tools", "transportation"}
    assert item["meta"]["num_objects"] == 1 and item["text"]
    record = json.loads((tmp_path / "a" / IMPORT_JSON).read_text())
    assert record["skipped"] == {"not an object": 2} and record["samples"]["train"] == 16
    # deterministic: the same input gives the same bytes
    again = import_items(*scan_clipart(FIXTURES)[:1], tmp_path / "b", CFG, {"kind": "clipart"})
    assert again.counts == result.counts

    def digests(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.tar"))
        }

    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_labels_import_counts_every_bad_file_and_never_stops(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["image,caption,category"]
    for i, src in enumerate(sorted(FIXTURES.glob("tools/*.png"))):
        (folder / f"t{i}.png").write_bytes(src.read_bytes())
        rows.append(f"images/t{i}.png,a tool,tool")
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (folder / "cut.png").write_bytes(_png(Image.fromarray(noise))[:1200])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "copy.png").write_bytes((folder / "t0.png").read_bytes())
    rows += [
        "images/cut.png,cut,tool",
        "images/zero.jpg,empty,tool",
        "images/copy.png,same pixels,tool",
        "images/nowhere.png,missing,tool",
        "images/t1.png,listed twice,tool",
        "images/t2.png,,tool",
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    items, skipped = scan_folder(tmp_path / "labels.csv")
    result = import_items(items, tmp_path / "out", CFG, {"kind": "labels"}, skipped, False)
    assert dict(result.skipped) == {
        "truncated": 1,
        "empty file": 1,
        "duplicate": 1,
        "missing file": 1,
        "duplicate row": 1,
        "no caption": 1,
    }
    assert result.total == 6
    refs, _ = index_source(tmp_path / "out" / "train")
    meta = SampleDataset(refs)[0]["meta"]
    # a classification set: superclass defaults to the category, one object per image
    assert meta["category"] == meta["superclass"] == "tool" and meta["num_objects"] == 1


def test_cli_import_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "clipart"
    main(["data", "import", str(FIXTURES), "--out", str(out), "--image-size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert "24 samples" in err and "not an object: 2" in err and "animals: 6 (4 / 1 / 1)" in err
    main(["data", "stats", str(out)])
    err = capsys.readouterr().err
    assert "train: 16 samples" in err and "category" in err
    assert "import: 2 files skipped (not an object 2)" in err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"image,caption\nx.png,\xff\xfe\n")
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", str(bad), "--out", str(tmp_path / "bad")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "bad.csv: line 2: not UTF-8" in lines[0]


# -- studies on real data ----------------------------------------------------------------------


def test_a_real_data_study_checks_labels_and_says_what_it_will_not_run(tmp_path: Path) -> None:
    from encoderlab.data.importer import check_study_data
    from encoderlab.data.synth import DataConfig, synthesize
    from encoderlab.data.synthworld import WorldConfig
    from encoderlab.study.config import load_study

    items, skipped = scan_clipart(FIXTURES)
    import_items(items, tmp_path / "clipart", CFG, {}, skipped, False)
    not_run = check_study_data(tmp_path / "clipart")
    assert len(not_run) == 3 and all(
        line.startswith("not run: needs ground-truth factors") for line in not_run
    )
    assert any("vlm/oracle" in line for line in not_run)
    # shards without the control's labels fail before any training, in one line
    small = DataConfig(train=8, val=4, test=4, shard_size=64, workers=1)
    synth = synthesize(WorldConfig(image_size=32), small, tmp_path / "synth", progress=False)
    with pytest.raises(DataError, match=r"test: no 'category' label .* data import"):
        check_study_data(synth)
    for preset, data in (
        ("clipart-smoke", "runs/clipart-smoke-data"),
        ("clipart", "runs/clipart-data"),
    ):
        cfg = load_study(preset)
        assert str(cfg.data_path) == data and cfg.suite.suite == f"{data}/vmcbench-test.tsv"
        assert str(cfg.vlm_data) == f"{data}/llava-train.json"  # stage 2 from LLaVA JSON
        assert cfg.analysis.attributes is not None and "category" in cfg.analysis.attributes

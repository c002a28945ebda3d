"""Shard writer and manifest: determinism, layout, atomicity, counts and hash."""

from __future__ import annotations

import functools
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from encoderlab.config import config_hash
from encoderlab.data.shards import (
    read_manifest,
    shard_name,
    write_manifest,
    write_split,
)
from encoderlab.errors import DataError


def make_sample(index: int, variant: int = 0, fail_at: int | None = None) -> dict:
    """A tiny deterministic sample whose pixels and caption depend on the index."""
    if index == fail_at:
        raise RuntimeError(f"renderer failed at {index}")
    color = ((index * 7 + variant) % 256, (index * 13) % 256, (index * 29) % 256)
    return {
        "__key__": f"{index:06d}",
        "image": Image.new("RGB", (8, 8), color),
        "text": f"a square of colour {color}",
        "meta": {"index": index, "color": list(color), "b": "z"},
    }


def shard_bytes(root: Path, split: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / split).glob("*.tar"))}


def test_same_inputs_give_identical_bytes_whatever_the_workers(tmp_path: Path) -> None:
    fn = functools.partial(make_sample, variant=0)
    a = write_split(tmp_path / "a", "train", 20, fn, 7, workers=2, progress=False)
    b = write_split(tmp_path / "b", "train", 20, fn, 7, workers=1, progress=False)
    assert a == b
    assert [s.num_samples for s in a.shards] == [7, 7, 6]
    bytes_a, bytes_b = shard_bytes(tmp_path / "a", "train"), shard_bytes(tmp_path / "b", "train")
    assert list(bytes_a) == [shard_name("train", i) for i in range(3)]
    assert bytes_a == bytes_b
    assert [s.num_bytes for s in a.shards] == [len(v) for v in bytes_a.values()]


def test_different_content_gives_different_bytes(tmp_path: Path) -> None:
    write_split(tmp_path / "a", "val", 6, make_sample, 6, workers=1, progress=False)
    fn = functools.partial(make_sample, variant=1)
    write_split(tmp_path / "b", "val", 6, fn, 6, workers=1, progress=False)
    assert shard_bytes(tmp_path / "a", "val") != shard_bytes(tmp_path / "b", "val")


def test_layout_is_datacomp_style_and_readable_by_webdataset(tmp_path: Path) -> None:
    write_split(tmp_path, "train", 5, make_sample, 5, workers=1, progress=False)
    shard = tmp_path / "train" / "train-00000.tar"
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:3] == ["000000.json", "000000.png", "000000.txt"]
        assert {m.mtime for m in members} == {0}
        assert json.loads(tar.extractfile("000002.json").read()) == {
            "b": "z",
            "color": [14, 26, 58],
            "index": 2,
        }
        # Sorted keys, compact separators: the JSON bytes are canonical.
        assert tar.extractfile("000002.json").read().startswith(b'{"b":"z","color"')
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(5)]
    assert samples[3]["txt"].decode() == make_sample(3)["text"]
    assert {"png", "txt", "json"} <= set(samples[0])


def test_jpeg_format(tmp_path: Path) -> None:
    info = write_split(tmp_path, "test", 3, make_sample, 2, image_format="jpg", progress=False)
    assert info.image_format == "jpg"
    with tarfile.open(tmp_path / "test" / "test-00000.tar") as tar:
        assert "000000.jpg" in tar.getnames()


def test_failed_shard_leaves_no_tar_and_rerun_clears_stale_shards(tmp_path: Path) -> None:
    write_split(tmp_path, "train", 12, make_sample, 4, workers=1, progress=False)
    assert len(shard_bytes(tmp_path, "train")) == 3
    fn = functools.partial(make_sample, fail_at=5)
    with pytest.raises(RuntimeError, match="renderer failed at 5"):
        write_split(tmp_path, "train", 12, fn, 4, workers=2, progress=False)
    names = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert "train-00001.tar" not in names  # the shard holding index 5 was never completed
    assert not [n for n in names if n.endswith(".tmp")]
    # A rerun with fewer samples leaves no shard of an earlier, larger run behind.
    info = write_split(tmp_path, "train", 4, make_sample, 4, workers=1, progress=False)
    assert [s.path for s in info.shards] == ["train/train-00000.tar"]
    assert list(shard_bytes(tmp_path, "train")) == ["train-00000.tar"]


def test_write_split_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_format"):
        write_split(tmp_path, "train", 2, make_sample, 2, image_format="bmp", progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        write_split(tmp_path, "train", 2, make_sample, 0, progress=False)

    def dotted(index: int) -> dict:
        return {**make_sample(index), "__key__": f"a.{index}"}

    with pytest.raises(ValueError, match=r"without '\.'"):
        write_split(tmp_path, "train", 2, dotted, 2, workers=1, progress=False)


def test_manifest_counts_and_hash(tmp_path: Path) -> None:
    config = {"seed": 3, "world": {"shapes": ["circle", "square"]}, "image_size": 8}
    splits = {
        "train": write_split(tmp_path, "train", 9, make_sample, 4, workers=1, progress=False),
        "val": write_split(tmp_path, "val", 3, make_sample, 4, workers=1, progress=False),
    }
    path = write_manifest(tmp_path, config, splits)
    assert path == tmp_path / "manifest.json"
    manifest = read_manifest(tmp_path)
    assert manifest.config == config
    assert manifest.config_hash == config_hash(config)
    assert manifest.config_hash != config_hash({**config, "seed": 4})
    assert manifest.splits["train"].num_samples == 9
    assert [s.num_samples for s in manifest.splits["train"].shards] == [4, 4, 1]
    assert [s.path for s in manifest.splits["val"].shards] == ["val/val-00000.tar"]
    for split in manifest.splits.values():
        for shard in split.shards:
            assert (tmp_path / shard.path).stat().st_size == shard.num_bytes
    # Same inputs, same manifest bytes.
    first = path.read_bytes()
    write_manifest(tmp_path, dict(reversed(config.items())), splits)
    assert path.read_bytes() == first


def test_read_manifest_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found") as err:
        read_manifest(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON") as err:
        read_manifest(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "config": {}}))
    with pytest.raises(DataError, match=r"manifest\.json: config_hash: Field required") as err:
        read_manifest(tmp_path)
    assert "\n" not in str(err.value)

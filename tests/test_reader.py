"""The reader: exact epochs across ranks and workers, resume, bad input, image folders."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from itertools import chain
from pathlib import Path

import pytest
import torch
from PIL import Image

from encoderlab.data import reader
from encoderlab.data.reader import EpochSampler, index_source, make_loader
from encoderlab.data.shards import write_manifest, write_split
from encoderlab.errors import DataError

N = 23  # samples in the fixture data set: not a multiple of any batch or world size used


def color_of(index: int) -> tuple[int, int, int]:
    return ((index * 7) % 256, (index * 13) % 256, (index * 29) % 256)


def make_sample(index: int) -> dict:
    return {
        "__key__": f"{index:06d}",
        "image": Image.new("RGB", (8, 6), color_of(index)),
        "text": f"sample {index}",
        "meta": {"index": index},
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_split(root, "train", N, make_sample, 5, workers=1, progress=False)
    return root / "train"


def check_batch_content(batch: reader.Batch) -> None:
    """Decoded pixels, caption and meta all belong to the sample named by the key."""
    assert batch.images.dtype == torch.uint8 and batch.indices.dtype == torch.int64
    for image, text, meta, key in zip(
        batch.images, batch.texts, batch.metas, batch.keys, strict=True
    ):
        i = int(key)
        assert meta == {"index": i} and text == f"sample {i}"
        assert image.shape == (3, 6, 8)
        assert tuple(image[:, 0, 0].tolist()) == color_of(i)


# --- sampler ---------------------------------------------------------------------------------


def test_sampler_exact_partition_and_order() -> None:
    ranks = [list(EpochSampler(N, seed=1, epoch=0, rank=r, world_size=3)) for r in range(3)]
    assert sorted(chain(*ranks)) == list(range(N))
    assert [len(r) for r in ranks] == [8, 8, 7]  # the uneven tail goes to the lower ranks
    assert [len(EpochSampler(N, 1, 0, r, 3)) for r in range(3)] == [8, 8, 7]
    e0 = list(EpochSampler(N, seed=1, epoch=0))
    assert e0 == list(EpochSampler(N, seed=1, epoch=0))
    assert e0 != list(EpochSampler(N, seed=1, epoch=1))
    assert e0 != list(EpochSampler(N, seed=2, epoch=0))
    assert sorted(list(EpochSampler(N, seed=1, epoch=1))) == list(range(N))
    assert list(EpochSampler(N, seed=1, shuffle=False)) == list(range(N))


def test_global_batches_do_not_depend_on_world_size() -> None:
    global_batch = 8

    def global_batches(world: int) -> list[set[int]]:
        local = global_batch // world
        per_rank = [list(EpochSampler(N, 5, 2, r, world)) for r in range(world)]
        steps = -(-N // global_batch)
        return [{i for r in per_rank for i in r[k * local : (k + 1) * local]} for k in range(steps)]

    reference = global_batches(1)
    assert len(reference) == 3 and sorted(len(b) for b in reference) == [7, 8, 8]
    assert global_batches(2) == reference
    assert global_batches(4) == reference


def test_start_resumes_exactly() -> None:
    full = EpochSampler(N, seed=9, epoch=4).global_order().tolist()
    world, local, steps_done = 2, 3, 2
    start = steps_done * world * local
    resumed = [list(EpochSampler(N, 9, 4, r, world, start=start)) for r in range(world)]
    assert resumed[0] == full[start::2] and resumed[1] == full[start + 1 :: 2]
    sampler = EpochSampler(N, 9, 4)
    sampler.set_epoch(4, start=N)
    assert list(sampler) == [] and len(sampler) == 0
    with pytest.raises(ValueError):
        EpochSampler(N, start=N + 1)
    with pytest.raises(ValueError):
        EpochSampler(N, rank=2, world_size=2)


# --- loader over shards ----------------------------------------------------------------------


def test_every_sample_once_across_ranks_and_workers(shards: Path) -> None:
    orders = {}
    for epoch in (0, 1):
        seen: list[int] = []
        for rank in (0, 1):
            loader = make_loader(
                shards, 3, seed=7, epoch=epoch, rank=rank, world_size=2, num_workers=2
            )
            batches = list(loader)
            for batch in batches:
                check_batch_content(batch)
                assert [int(k) for k in batch.keys] == batch.indices.tolist()
            indices = [i for b in batches for i in b.indices.tolist()]
            # Workers preserve the sampler's order.
            assert indices == list(EpochSampler(N, 7, epoch, rank, 2))
            seen += indices
            assert len(loader.skips) == 0 and loader.skips.summary() == "0 samples skipped"
        assert sorted(seen) == list(range(N))
        orders[epoch] = seen
    assert orders[0] != orders[1]


def test_same_seed_same_order_and_set_epoch_and_resume(shards: Path) -> None:
    a = make_loader(shards, 4, seed=3, epoch=0, num_workers=0)
    b = make_loader(shards, 4, seed=3, epoch=0, num_workers=2)
    first = [b.keys for b in a]
    assert first == [b.keys for b in b]
    b.set_epoch(1)
    second = [b.keys for b in b]
    assert second != first and sorted(chain(*second)) == sorted(chain(*first))
    # Resume epoch 0 after 2 steps of 4: the rest is exactly the tail of the epoch.
    resumed = make_loader(shards, 4, seed=3, epoch=0, start=8)
    flat = list(chain(*first))
    assert [b.keys for b in resumed] == [flat[8 + 4 * k : 12 + 4 * k] for k in range(4)]


def test_sequential_order_and_resize(shards: Path) -> None:
    loader = make_loader(shards, 10, shuffle=False, image_size=4)
    batches = list(loader)
    assert batches[0].indices.tolist() == list(range(10))
    assert batches[0].images.shape == (10, 3, 4, 4)
    assert batches[0].keys == [f"{i:06d}" for i in range(10)]
    # A list of tar files, in the order given.
    files = [shards / "train-00002.tar", shards / "train-00000.tar"]
    (batch,) = list(make_loader(files, 10, shuffle=False))
    assert batch.keys == [f"{i:06d}" for i in (*range(10, 15), *range(5))]


def test_index_is_cached_next_to_shards_and_invalidated(shards: Path, tmp_path: Path) -> None:
    data = tmp_path / "copy"
    shutil.copytree(shards, data)
    for cache in data.glob("*.idx.json"):
        cache.unlink()
    refs, _ = index_source(data)
    caches = sorted(p.name for p in data.glob("*.idx.json"))
    assert caches == [f"train-0000{i}.tar.idx.json" for i in range(5)]
    assert refs == index_source(data)[0]  # from the cache
    # Rewriting a shard (new size/mtime) makes its cache stale: it is rescanned.
    shutil.copy(data / "train-00004.tar", data / "train-00000.tar")
    keys = [r.key for r in index_source(data)[0]]
    assert keys[:3] == ["000020", "000021", "000022"] and len(keys) == N - 5 + 3


def test_read_only_directory_keeps_index_in_memory(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "ro"
    shutil.copytree(shards, data)
    for cache in data.glob("*.idx.json"):
        cache.unlink()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(reader.Path, "write_text", refuse)
    refs, skips = index_source(data)
    assert len(refs) == N and skips == []
    assert not list(data.glob("*.idx.json")) and not list(data.glob("*.tmp"))


def test_missing_or_empty_directory_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory") as err:
        make_loader(tmp_path / "nope", 4)
    assert str(tmp_path / "nope") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"no \.tar shards found") as err:
        make_loader(tmp_path, 4)
    assert "\n" not in str(err.value)


def test_data_set_root_is_refused_so_splits_do_not_mix(tmp_path: Path) -> None:
    splits = {s: write_split(tmp_path, s, 3, make_sample, 3, progress=False) for s in ("a", "b")}
    write_manifest(tmp_path, {"seed": 0}, splits)
    with pytest.raises(DataError, match="a data set with splits a, b; pass one split dir"):
        make_loader(tmp_path, 2)
    assert len(make_loader(tmp_path / "b", 2).dataset) == 3


# --- bad input -------------------------------------------------------------------------------


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    """A plain tarfile shard, as img2dataset writes them (float mtimes, PAX headers)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1234567890.5
            tar.addfile(info, io.BytesIO(data))


def test_bad_samples_are_skipped_counted_and_reported(shards: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad"
    (data / "sub").mkdir(parents=True)
    shutil.copy(shards / "train-00000.tar", data / "a-good.tar")  # keys 0..4
    raw = (shards / "train-00001.tar").read_bytes()  # keys 5..9
    # Cut inside the 4th sample's image data: samples 5, 6, 7 survive, 8 is cut off, 9 is lost.
    with tarfile.open(shards / "train-00001.tar") as tar:
        cut_at = tar.getmember("000008.png").offset_data + 10
    (data / "b-truncated.tar").write_bytes(raw[:cut_at])
    write_tar(
        data / "sub" / "c-handmade.tar",
        {
            "000100.jpg": png_bytes(color_of(100)),  # PNG bytes under .jpg: PIL sniffs content
            "000100.txt": b"sample 100",
            "000100.json": b'{"index": 100}',
            "000101.png": png_bytes(color_of(101)),  # no .txt
            "000101.json": b'{"index": 101}',
            "000102.png": b"\x89PNG\r\n\x1a\n not really a png",  # undecodable
            "000102.txt": b"sample 102",
            "000103.txt": b"sample 103",  # no image
            "000104.webp": _webp(color_of(104)),
            "000104.txt": b"sample 104",
            "000104.json": b'{"index": 104}',
        },
    )
    (data / "d-not-a-tar.tar").write_bytes(b"hello, I am not a tar file" * 40)

    loader = make_loader(data, 4, seed=0, num_workers=2, image_size=(6, 8))
    batches = list(loader)
    keys = sorted(k for b in batches for k in b.keys)
    assert keys == [f"{i:06d}" for i in (*range(8), 100, 104)]
    for batch in batches:
        for image, key in zip(batch.images, batch.keys, strict=True):
            if key != "000104":  # webp is lossy
                assert tuple(image[:, 0, 0].tolist()) == color_of(int(key))
    summary = loader.skips.summary()
    assert loader.skips.num_samples == 4
    lines = summary.splitlines()
    assert lines[0] == "4 samples skipped:"
    assert len(lines) == 1 + 4 + 2  # 4 samples, plus the truncated tail and the non-tar file
    expected = [
        ("b-truncated.tar key 000008", "cut off by truncation"),
        ("b-truncated.tar", "truncated tar"),
        ("c-handmade.tar key 000101", "no .txt"),
        ("c-handmade.tar key 000102", "undecodable image"),
        ("c-handmade.tar key 000103", "no image"),
        ("d-not-a-tar.tar", "not a readable tar file"),
    ]
    for where, why in expected:
        assert any(where in line and why in line for line in lines[1:]), (where, why, summary)
    # A second epoch meets the undecodable sample again; it is still counted once.
    loader.set_epoch(1)
    assert sorted(k for b in loader for k in b.keys) == keys
    assert loader.skips.num_samples == 4


def _webp(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="WEBP")
    return buf.getvalue()


def test_cut_header_and_optional_text(shards: Path, tmp_path: Path) -> None:
    raw = (shards / "train-00000.tar").read_bytes()
    with tarfile.open(shards / "train-00000.tar") as tar:
        header_at = tar.getmember("000003.json").offset  # a member header, cut in the middle
    (tmp_path / "cut.tar").write_bytes(raw[: header_at + 100])
    refs, skips = index_source(tmp_path)
    assert [r.key for r in refs] == ["000000", "000001", "000002"]
    assert [(s.key, s.reason.split(" at ")[0]) for s in skips] == [(None, "unreadable tar header")]
    # Cut inside the data of a sample's first member: that sample is named.
    with tarfile.open(shards / "train-00000.tar") as tar:
        data_at = tar.getmember("000003.json").offset_data
    (tmp_path / "cut.tar").write_bytes(raw[: data_at + 3])
    refs, skips = index_source(tmp_path)
    assert [r.key for r in refs] == ["000000", "000001", "000002"]
    assert (skips[0].key, skips[0].reason) == ("000003", "cut off by truncation")
    assert skips[1].key is None and skips[1].reason.startswith("truncated tar")

    write_tar(tmp_path / "notext.tar", {"000200.png": png_bytes(color_of(200))})
    # Nothing readable at all is a one-line error naming the source.
    with pytest.raises(DataError, match="no readable samples"):
        make_loader(tmp_path / "notext.tar", 2, require_text=True)
    labels_only = make_loader(tmp_path / "notext.tar", 2, require_text=False)
    (batch,) = list(labels_only)
    assert batch.texts == [""] and batch.metas == [{}] and batch.keys == ["000200"]


# --- image folder + CSV ----------------------------------------------------------------------


def make_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    (root / "img").mkdir(parents=True)
    rows = ["path,caption,shape,count"]
    for i, size in enumerate(sizes):
        Image.new("RGB", size, color_of(i)).save(root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,picture {i},{'circle' if i % 2 else 'square'},{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_image_folder_with_csv_labels(tmp_path: Path) -> None:
    csv = make_folder(tmp_path, [(8, 6), (16, 12), (8, 6)])
    loader = make_loader(csv, 3, shuffle=False, image_size=(6, 8), num_workers=0)
    (batch,) = list(loader)
    assert batch.keys == ["img/0.png", "img/1.png", "img/2.png"]
    assert batch.texts == ["picture 0", "picture 1", "picture 2"]
    assert batch.metas[1] == {"shape": "circle", "count": 1}
    assert isinstance(batch.metas[1]["count"], int)
    assert [tuple(im[:, 3, 4].tolist()) for im in batch.images] == [color_of(i) for i in range(3)]
    # Images of different sizes without image_size: one line asking for it.
    with pytest.raises(DataError, match=r"img/0\.png: \(6, 8\), img/1\.png: \(12, 16\)\); pass"):
        list(make_loader(csv, 3, shuffle=False, num_workers=1))


def test_csv_row_with_missing_image_names_the_line(tmp_path: Path) -> None:
    csv = make_folder(tmp_path, [(8, 6), (8, 6)])
    csv.write_text(csv.read_text() + "img/7.png,picture 7,square,7\n")
    with pytest.raises(DataError, match=r"labels.csv: line 4: image 'img/7.png' not found") as e:
        make_loader(csv, 2)
    assert "\n" not in str(e.value)
    csv.write_text("name,label\nimg/0.png,1\n")
    with pytest.raises(DataError, match="no image column"):
        make_loader(csv, 2)
    csv.write_text("image,label\nimg/0.png,1\n")
    with pytest.raises(DataError, match="no caption column"):
        make_loader(csv, 2)
    (batch,) = list(make_loader(csv, 2, require_text=False))
    assert batch.metas == [{"label": 1}] and batch.texts == [""]


def test_csv_undecodable_image_is_skipped(tmp_path: Path) -> None:
    csv = make_folder(tmp_path, [(8, 6), (8, 6), (8, 6)])
    (tmp_path / "img" / "1.png").write_bytes(b"garbage")
    loader = make_loader(csv, 3, shuffle=False)
    (batch,) = list(loader)
    assert batch.keys == ["img/0.png", "img/2.png"]
    assert loader.skips.num_samples == 1
    assert "labels.csv key img/1.png: undecodable image" in loader.skips.summary()
    assert json.dumps(batch.metas)  # labels are plain JSON-able values

"""Shard writing and reading throughput on this machine.

Writes N 64x64 samples (default 50,000) with a cheap synthetic ``sample_fn`` and, when the
SynthWorld renderer is importable, with the real one; then reads one epoch back through a
2-worker DataLoader, and times a cold index scan. Heavy on the cores: run it once or twice.
Peer: webdataset's own streaming loader (``wds.WebLoader``, the same shards, 2 workers, images
decoded to tensors), which reads in shard order; ours reads by offset in an exact global shuffle.

    .venv/bin/python bench/bench_shards.py [--num 50000] [--shard-size 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from encoderlab.data.reader import INDEX_SUFFIX, index_source, make_loader
from encoderlab.data.shards import SampleFn, write_split

SIZE = 64


def cheap_sample(index: int) -> dict[str, Any]:
    """A 64x64 image of a few seeded rectangles: writer overhead without a real renderer."""
    rng = np.random.default_rng(index)
    pixels = np.full((SIZE, SIZE, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    for x0, y0, w, h in rng.integers(0, SIZE // 2, (3, 4)):
        pixels[y0 : y0 + h + 4, x0 : x0 + w + 4] = rng.integers(0, 256, 3)
    return {
        "__key__": f"{index:08d}",
        "image": Image.fromarray(pixels),
        "text": f"three rectangles, sample {index}",
        "meta": {"index": index},
    }


def real_sample_fn() -> SampleFn | None:
    """``generate_sample`` bound to a default 64x64 world, or None if not importable yet."""
    try:
        from encoderlab.data.synthworld import WorldConfig, generate_sample
    except ImportError:
        return None
    fields = WorldConfig.model_fields
    cfg = WorldConfig(image_size=SIZE) if "image_size" in fields else WorldConfig()
    return functools.partial(generate_sample, cfg, "train")


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the writer's pool workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds, CPU seconds (robust to other load on the shared cores)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def webdataset_epoch(data: Path, batch_size: int) -> int:
    """One epoch through webdataset's streaming loader (the peer); returns samples read."""
    import webdataset as wds

    urls = sorted(str(p) for p in data.glob("*.tar"))
    dataset = (
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .decode("torchrgb")
        .to_tuple("png", "txt")
        .batched(batch_size)
    )
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=2)
    return sum(len(images) for images, _ in loader)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num", type=int, default=50_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    fns: dict[str, SampleFn] = {"cheap": cheap_sample}
    real = real_sample_fn()
    if real is None:
        print("encoderlab.data.synthworld.generate_sample not importable: cheap renderer only")
    else:
        fns["synthworld"] = real

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in fns.items():
            out = Path(tmp) / name
            info, secs, cpu = timed(
                lambda out=out, fn=fn: write_split(
                    out, "train", args.num, fn, args.shard_size, workers=args.workers
                )
            )
            mb = sum(s.num_bytes for s in info.shards) / 1e6
            rows.append((f"write {name}", args.num / secs, secs * 50_000 / args.num, cpu, mb))

        data = Path(tmp) / "cheap" / "train"
        for cache in data.glob(f"*{INDEX_SUFFIX}"):
            cache.unlink()
        for step in ("index scan (cold)", "index load (cached)"):
            _, secs, cpu = timed(lambda: index_source(data))
            rows.append((step, args.num / secs, secs * 50_000 / args.num, cpu, 0.0))

        loader = make_loader(data, args.batch_size, seed=0, num_workers=2)
        n, secs, _ = timed(lambda: sum(len(b) for b in loader))  # worker CPU not reaped yet
        assert n == args.num, (n, args.num)
        rows.append(("read 1 epoch, 2 workers", n / secs, secs * 50_000 / n, float("nan"), 0.0))
        n, secs, _ = timed(lambda: webdataset_epoch(data, args.batch_size))
        assert n == args.num, (n, args.num)
        rows.append(("peer: webdataset, 2 workers", n / secs, secs * 50_000 / n, float("nan"), 0.0))

    print(f"\n{'step':<26}{'samples/s':>11}{'s per 50k':>11}{'CPU ms/sample':>15}{'MB':>8}")
    for step, rate, per50k, cpu, mb in rows:
        cpu_ms = f"{cpu * 1e3 / args.num:.2f}" if cpu == cpu else "-"
        print(f"{step:<26}{rate:>11,.0f}{per50k:>11.1f}{cpu_ms:>15}{f'{mb:.1f}' if mb else '':>8}")


if __name__ == "__main__":
    main()

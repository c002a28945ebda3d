"""SynthWorld generation speed: image + caption + metadata per second (encoding excluded).

Usage: ``python bench/bench_synthworld.py [--n 4000] [--size 64] [--procs 2]``. Prints one row
per setting; the target is >= 1,200 images/s in one process at 64 px on a 2-core CPU. Peer: PIL
encoding the same images as PNG, which writing a shard pays anyway (generation should not cost
much more than storing its result).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import time

from encoderlab.data.synthworld import WorldConfig, generate_sample


def _run(args: tuple[WorldConfig, str, int, int]) -> int:
    cfg, split, start, stop = args
    for i in range(start, stop):
        generate_sample(cfg, split, i)
    return stop - start


def single(cfg: WorldConfig, n: int) -> tuple[float, float]:
    """Images/s in wall-clock and in CPU time (the two agree on an idle machine; on a shared
    one, CPU time shows what the code costs)."""
    _run((cfg, "warmup", 0, 200))  # fonts and caches
    wall, cpu = time.perf_counter(), time.process_time()
    _run((cfg, "train", 0, n))
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def multi(cfg: WorldConfig, n: int, procs: int) -> float:
    chunk = 250
    jobs = [(cfg, "train", s, min(n, s + chunk)) for s in range(0, n, chunk)]
    with mp.get_context("fork").Pool(procs) as pool:
        pool.map(_run, [(cfg, "warmup", 0, 200)] * procs)
        t = time.perf_counter()
        done = sum(pool.map(_run, jobs, chunksize=1))
    return done / (time.perf_counter() - t)


def png_cost(cfg: WorldConfig, n: int = 500) -> float:
    """Images/s of PNG encoding alone, for reference."""
    images = [generate_sample(cfg, "png", i)["image"] for i in range(n)]
    t = time.perf_counter()
    for img in images:
        img.save(io.BytesIO(), "png")
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--size", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    print("target: >= 1,200 images/s in 1 process at 64 px; peer: PIL's PNG encoder")
    print(f"{'size':>5} {'setting':<22} {'images/s':>10}")
    for size in args.size:
        cfg = WorldConfig(image_size=size)
        n = args.n if size <= 64 else max(500, args.n // 4)
        wall, cpu = single(cfg, n)
        print(f"{size:>5} {'1 process':<22} {wall:>10.0f}")
        print(f"{size:>5} {'1 process, CPU time':<22} {cpu:>10.0f}")
        print(f"{size:>5} {f'{args.procs} processes':<22} {multi(cfg, n, args.procs):>10.0f}")
        print(f"{size:>5} {'peer: PIL PNG encode':<22} {png_cost(cfg):>10.0f}")


if __name__ == "__main__":
    main()

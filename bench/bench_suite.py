"""VQA-suite speed: item generation (cold cache) and scoring per VLM (cached items).

Usage: ``python bench/bench_suite.py [--items 50] [--suite default] [--batch-size 128]``. Builds
the suite (20 benchmarks x ITEMS) into a fresh cache with 2 processes, then scores it with
(1) a free fake model (the harness's own overhead: decoding, prompts, caching, bootstrap) and
(2) a random-init VLM of the tiny preset's size (encoderlab.vlm pieces: tiny ViT, BPE tokenizer,
4-layer Llama), then re-runs (2) to show the prediction cache. Times are extrapolated linearly
to the acceptance size (20 x 200 items; target <= 180 s per VLM). Peer: the fake model, i.e.
the harness's own overhead, and the target. Inference is batched within a
benchmark, so with full batches cost is proportional to the number of items. For a faithful
extrapolation keep ITEMS at 200 and run a subset, e.g. ``--items 200 --suite
count,table,read_word``; short runs keep the shared 2 cores free.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from encoderlab.data.synthworld import WorldConfig
from encoderlab.suite.benchmarks import prepare
from encoderlab.suite.harness import EvalConfig, evaluate
from encoderlab.suite.questions import LETTERS
from encoderlab.suite.registry import resolve

OUT = Path(__file__).parent / "out" / "suite"
TARGET_ITEMS = 20 * 200


class FakeVLM:
    """Costs nothing: isolates the harness's overhead."""

    checkpoint_hash = "fake"

    def score_choices(self, images, prompts, letters=LETTERS):
        return torch.log_softmax(torch.randn(len(prompts), len(letters)), dim=1)

    def generate(self, images, prompts, max_new_tokens=16):
        return [""] * len(prompts)


def random_init_vlm(world: WorldConfig):
    """A tiny-preset-sized VLM with random weights (the VLM engineer's building blocks)."""
    from encoderlab.encoders.vit import EncoderConfig, build_encoder
    from encoderlab.suite.blind import training_questions
    from encoderlab.vlm.config import VLMConfig
    from encoderlab.vlm.lm import build_lm
    from encoderlab.vlm.model import VLM, build_model
    from encoderlab.vlm.tokenizer import train_tokenizer
    from encoderlab.vlm.vision import VisionTower

    cfg = VLMConfig()
    texts = [q.mc_prompt() for q in training_questions(world, 300)]
    tokenizer = train_tokenizer(texts, cfg.lm.vocab_size)
    enc = build_encoder(EncoderConfig(size="tiny", image_size=world.image_size, patch_size=8))
    tower = VisionTower([enc], tap_layer=cfg.tap_layer)
    model = build_model(tower, build_lm(cfg.lm, tokenizer), tokenizer, seed=0)
    return VLM(tower, model, tokenizer, cfg, info={"checkpoint_hash": "random-init-tiny"})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=50, help="items per benchmark")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-vlm", action="store_true", help="skip the random-init VLM")
    parser.add_argument("--suite", default="default", help="benchmarks to run (subset: faster)")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    world = WorldConfig()
    benches = resolve(args.suite)
    n_items = len(benches) * args.items
    scale = TARGET_ITEMS / n_items
    cfg = EvalConfig(suite=args.suite, items=args.items, batch_size=args.batch_size)
    rows: list[tuple[str, float, float]] = []

    def timed(name: str, fn, *a, **kw):
        # CPU seconds of this process next to wall seconds: on a shared, busy machine the wall
        # time overstates what a quiet 2-core machine needs (about CPU seconds / threads).
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        rows.append((name, time.perf_counter() - t, time.process_time() - c))
        return out

    timed("build items (2 procs, cold)", prepare, benches, world, args.items, OUT / "items")
    torch.manual_seed(0)
    timed("score: fake model (harness only)", evaluate, FakeVLM(), cfg, OUT / "fake", OUT / "items", progress=False)  # fmt: skip
    if not args.no_vlm:
        vlm = timed("build random-init tiny VLM", random_init_vlm, world)
        res = timed("score: random-init tiny VLM", evaluate, vlm, cfg, OUT / "vlm", OUT / "items", progress=False)  # fmt: skip
        timed("score again (predictions cached)", evaluate, vlm, cfg, OUT / "vlm", OUT / "items", progress=False)  # fmt: skip
        print(f"random-init VLM overall: {100 * res['overall']['score']:.1f}% (chance 25%)")

    threads = torch.get_num_threads()
    print(f"\n{n_items} items ({args.items} x {len(benches)} benchmarks), batch "
          f"{args.batch_size}, torch threads {threads}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("peer: a free fake model (the harness's own overhead); target <= 180 s per VLM at 20x200")
    print(f"{'step':<36} {'wall s':>7} {'cpu s':>7} {'items/s':>8} {'@20x200 wall':>13} "
          f"{'@20x200 cpu/threads':>20}")  # fmt: skip
    for name, wall, cpu in rows:
        per = n_items / wall if wall > 0 else np.inf
        print(f"{name:<36} {wall:>7.1f} {cpu:>7.1f} {per:>8.0f} {wall * scale:>13.1f} "
              f"{cpu / threads * scale:>20.1f}")  # fmt: skip


if __name__ == "__main__":
    main()

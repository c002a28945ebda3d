"""A stage-2 training step of the tiny VLM as encoderlab takes it (conversations packed into
rows, the LM head on answer positions only) against a padded batch and Hugging Face's own
causal-LM loss (the peer: the head and log-softmax over every position).

Usage: ``python bench/bench_vlm_step.py [--preset tiny] [--data DIR] [--row-tokens N]``.

All run the same model (the preset's LM shape, random init: speed does not depend on the
weights), the same batches of the preset's stage-2 conversations on oracle tokens (the
study encoder's grid), packed into rows of ``--row-tokens`` (default: the preset's
``vlm.packed_row_tokens``, 256 where it pads) or padded, and the same AdamW step. Timed in alternating blocks of ``--steps``
steps; the table gives the median ms per step, conversations/s, the ratio to the peer, the
FLOPs each method executes per step (``torch.utils.flop_counter``) and its FLOP utilisation
against this CPU's fp32 GEMM rate measured in the same run (a 1024^3 matmul). Figures:
docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from encoderlab.study.config import load_study
from encoderlab.vlm.config import load_vlm_config
from encoderlab.vlm.data import (
    ExampleDataset,
    PackCollate,
    PadCollate,
    corpus_texts,
    instruction_examples,
    lm_corpus,
    read_world,
    train_split,
)
from encoderlab.vlm.lm import build_lm
from encoderlab.vlm.model import answer_loss, model_for_features
from encoderlab.vlm.oracle import OracleTokens, oracle_grid
from encoderlab.vlm.template import Template
from encoderlab.vlm.tokenizer import train_tokenizer


def gemm_gflops(n: int = 1024, reps: int = 10) -> float:
    """This CPU's fp32 matmul rate (GFLOP/s): the reference for FLOP utilisation."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--pairs", type=int, default=5, help="alternating block pairs")
    parser.add_argument(
        "--row-tokens", type=int, default=None, help="packed row length (the preset's)"
    )
    args = parser.parse_args()

    cfg = load_vlm_config(args.preset)
    study = load_study(args.preset)
    grid = oracle_grid(study.encoder, cfg.pool_tokens)
    n_images = 512
    world = read_world(train_split(args.data), n_images, None, images=False)
    texts = corpus_texts(
        *lm_corpus(world, n_images, cfg.question_mix, cfg.seed),
        cfg.template,
    )
    tok = train_tokenizer(texts, cfg.lm.vocab_size)
    oracle = OracleTokens(grid)
    features = oracle.features(world.metas)
    template = Template(tok, oracle.num_tokens, cfg.max_text_tokens, style=cfg.template)
    examples, images = instruction_examples(
        template, world, n_images, cfg.question_mix, cfg.seed, per_image=cfg.conversations_per_image
    )
    data = ExampleDataset(examples, images)
    pad_id = int(tok.pad_token_id)
    collates = {
        "packed": PackCollate(pad_id, args.row_tokens or cfg.packed_row_tokens or 256),
        "padded": PadCollate(pad_id),
    }
    batch_size = cfg.stage2.train.batch_size
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    batches: dict[str, list[dict]] = {name: [] for name in collates}
    for start in range(0, len(order) - batch_size + 1, batch_size):
        for name, collate in collates.items():
            b = collate([data[i] for i in order[start : start + batch_size]])
            keys = ("input_ids", "attention_mask", "position_ids", "labels")
            inputs = {k: b[k] for k in keys if k in b}
            inputs["features"] = features[b["image"]]
            batches[name].append(inputs)

    base = model_for_features(oracle.dim, 1, build_lm(cfg.lm, tok), tok, cfg.seed)
    peer = "padded, every position (Hugging Face)"
    methods = {  # name: (batches, loss)
        "packed, answer positions (ours)": ("packed", lambda m, x: answer_loss(m, **x)),
        "padded, answer positions": ("padded", lambda m, x: answer_loss(m, **x)),
        peer: ("padded", lambda m, x: m(**x, use_cache=False).loss),
    }
    models = {name: copy.deepcopy(base) for name in methods}
    optims = {
        name: torch.optim.AdamW(m.parameters(), lr=cfg.stage2.train.lr, fused=True)
        for name, m in models.items()
    }

    def step(name: str, i: int) -> None:
        kind, fn = methods[name]
        loss = fn(models[name], batches[kind][i % len(batches[kind])])
        loss.backward()
        optims[name].step()
        optims[name].zero_grad(set_to_none=True)

    flops = {}
    for name in methods:
        with FlopCounterMode(display=False) as counter:
            step(name, 0)
        flops[name] = counter.get_total_flops()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for pair in range(args.pairs):
        for name in methods:
            start = time.perf_counter()
            for i in range(args.steps):
                step(name, pair * args.steps + i)
            times[name].append((time.perf_counter() - start) / args.steps)
    peak = gemm_gflops()

    real = statistics.mean(int(b["attention_mask"].sum()) for b in batches["padded"])
    answers = statistics.mean(int((b["labels"][:, 1:] != -100).sum()) for b in batches["padded"])
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"stage-2 batches of {batch_size} conversations: {real:.0f} tokens, {answers:.0f} of "
        f"them answers; fp32 GEMM {peak:.0f} GFLOP/s"
    )
    peer_time = statistics.median(times[peer])
    print(
        "| batch, loss on | tokens/step | ms/step | conversations/s | speed vs peer "
        "| GFLOP/step | FLOP util. |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (kind, _) in methods.items():
        t = statistics.median(times[name])
        width = statistics.mean(b["input_ids"].numel() for b in batches[kind])
        util = flops[name] / t / 1e9 / peak
        print(
            f"| {name} | {width:.0f} | {1000 * t:.0f} | {batch_size / t:.0f} | "
            f"{peer_time / t:.2f}x | {flops[name] / 1e9:.1f} | {100 * util:.0f}% |"
        )


if __name__ == "__main__":
    main()

"""Host and device memory per rank for VLM stage 2 at LLaVA-665k scale with a 7B LM, from the
code's own sizes: the paper preset's encoder and VLM recipe, Vicuna-7B's config (built on the
meta device: exact parameter counts, no weights), the tower's token count and width, the
projector ``build_model`` makes, the feature cache's dtype. Writes the tables of docs/memory.md.

    python bench/memory_table.py            # markdown on stdout
    python bench/memory_table.py --ranks 8 --gpu-gib 80

The model is arithmetic, not a measurement: activations are estimated per token from the
shapes (gradient checkpointing keeps one hidden state per layer and recomputes one layer at a
time), allocator overhead is a flat allowance. Measured numbers belong in docs/memory.md next
to it, with the GPU that gave them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

GIB = 2**30
# Vicuna-7B v1.5 = Llama-2-7B's config.json
VICUNA_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=4096,
)
CUDA_OVERHEAD = 3.0 * GIB  # CUDA context, NCCL buffers, allocator fragmentation
REF_BYTES = 512  # a SampleRef (shard path, key, offsets) in Python objects, generously
ENCODE_BATCH = 128  # shared_features' batch: the decoded images a rank holds at once


@dataclass
class Scale:
    examples: int  # stage-2 conversations (LLaVA-665k)
    image_examples: int  # images whose features stages 1 and 2 read
    global_batch: int
    ranks: int
    text_tokens: int  # tokens per example besides the image's (max_text_tokens)
    image_tokens: int
    vision_dim: int
    vision_params: int
    image_side: int
    lm_params: int
    lm_layers: int
    lm_hidden: int
    lm_intermediate: int
    vocab: int
    projector_params: int


def code_sizes(ranks: int) -> Scale:
    """The sizes the code would use for the paper preset with Vicuna-7B."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from encoderlab.encoders.vit import build_encoder
    from encoderlab.study.config import load_study
    from encoderlab.vlm.projector import build_projector, projector_kind
    from encoderlab.vlm.vision import VisionTower

    cfg = load_study("paper")
    with torch.device("meta"):
        lm = LlamaForCausalLM(LlamaConfig(**VICUNA_7B))
        encoder = build_encoder(cfg.encoder)
        tower = VisionTower([encoder], cfg.vlm.tap_layer, cfg.vlm.pool_tokens)
        projector = build_projector(projector_kind(1), tower.dim, VICUNA_7B["hidden_size"])
    vlm = cfg.vlm
    return Scale(
        examples=vlm.stage2.examples,
        image_examples=vlm.image_examples,
        global_batch=vlm.stage2.train.batch_size,
        ranks=ranks,
        text_tokens=vlm.max_text_tokens,
        image_tokens=tower.num_tokens,
        vision_dim=tower.dim,
        vision_params=sum(p.numel() for p in encoder.parameters()),
        image_side=cfg.encoder.image_size,
        lm_params=sum(p.numel() for p in lm.parameters()),
        lm_layers=VICUNA_7B["num_hidden_layers"],
        lm_hidden=VICUNA_7B["hidden_size"],
        lm_intermediate=VICUNA_7B["intermediate_size"],
        vocab=VICUNA_7B["vocab_size"],
        projector_params=sum(p.numel() for p in projector.parameters()),
    )


def host_rows(s: Scale) -> list[tuple[str, float, float]]:
    """(what, GiB per rank before #20 (decoded images and fp32 features on every rank), GiB per
    rank now: images as shard references decoded a batch at a time where they are encoded
    (``vlm.data.ShardImages``), features in one memory-mapped file per node
    (``vlm.pipeline.shared_features``), a step's rows resident)."""
    images = s.image_examples * 3 * s.image_side**2  # uint8, every image decoded
    streamed = s.image_examples * REF_BYTES + ENCODE_BATCH * 3 * s.image_side**2
    lm = s.lm_params * 4  # load_lm: fp32 on the host; fsdp keeps it there (train.sharding)
    features = s.image_examples * s.image_tokens * s.vision_dim * 4  # fp32, encode_images
    # ExampleDataset keeps Python lists of ints: ~36 bytes per token (int object + pointer),
    # ids and labels
    tokens = s.examples * s.text_tokens * 0.5 * 36 * 2  # conversations fill ~half the budget
    batch_features = s.global_batch // s.ranks * s.image_tokens * s.vision_dim * 4
    return [
        ("images (before: all decoded; now: references + one batch)", images / GIB, streamed / GIB),
        ("the LM as loaded (fp32; fsdp's replica is filled from it)", lm / GIB, lm / GIB),
        ("image features (fp32 [N, T, D], every rank)", features / GIB, batch_features / GIB),
        ("tokenised conversations (Python lists)", tokens / GIB, tokens / GIB),
    ]


def device_rows(s: Scale, strategy: str) -> list[tuple[str, float]]:
    """Device GiB per rank for stage 2 (LM + projector trained, vision frozen)."""
    trained = s.lm_params + s.projector_params
    w = s.ranks if strategy.startswith("fsdp") else 1
    micro = s.global_batch // s.ranks
    seq = s.image_tokens + s.text_tokens
    h, layers = s.lm_hidden, s.lm_layers
    rows: list[tuple[str, float]] = []
    if strategy == "ddp-fp32":  # the trainer today: fp32 weights, autocast bf16 compute
        rows.append(("fp32 weights + grads + AdamW (16 B/param)", 16 * trained / GIB))
        rows.append(
            ("autocast's bf16 casts of the weights (kept through forward)", 2 * trained / GIB)
        )
        act_per_layer = micro * seq * (h * 16 + s.lm_intermediate * 3) * 2  # all saved
        rows.append(("activations, no checkpointing (bf16)", layers * act_per_layer / GIB))
    else:  # FSDP2 fully_shard: fp32 master sharded, bf16 compute params, checkpointing
        rows.append(
            ("fp32 weights + grads + AdamW, sharded (16 B/param / W)", 16 * trained / w / GIB)
        )
        per_layer = trained / layers
        rows.append(("bf16 all-gathered layers (current + prefetched)", 2 * per_layer * 2 / GIB))
        rows.append(
            ("checkpointed hidden states (one per layer, bf16)", layers * micro * seq * h * 2 / GIB)
        )
        recompute = micro * seq * (h * 16 + s.lm_intermediate * 3) * 2
        rows.append(("one layer recomputed in backward (bf16)", recompute / GIB))
    rows.append(
        ("logits + their gradient (fp32, B x L x V, x2)", 2 * micro * seq * s.vocab * 4 / GIB)
    )
    rows.append(("frozen vision tower (fp32)", s.vision_params * 4 / GIB))
    rows.append(("CUDA context, NCCL, fragmentation", CUDA_OVERHEAD / GIB))
    return rows


def table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    total = [sum(r[i] for r in rows) for i in range(1, len(header))]
    lines.append("| **total** | " + " | ".join(f"**{t:,.1f}**" for t in total) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Peer: LLaVA-1.5's own 7B recipe (DeepSpeed ZeRO-3, bf16, 8 x 80 GB); measured "
        "peaks on a GPU belong next to these figures in docs/memory.md.",
    )
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--gpu-gib", type=float, default=80.0)
    args = parser.parse_args(argv)
    s = code_sizes(args.ranks)
    out = [
        f"Sizes from the code: LM {s.lm_params / 1e9:.2f}B parameters (Vicuna-7B's config), "
        f"projector {s.projector_params / 1e6:.1f}M, ViT {s.vision_params / 1e6:.1f}M; "
        f"{s.image_tokens} image tokens x {s.vision_dim} channels per image at {s.image_side} px; "
        f"{s.examples:,} stage-2 examples over {s.image_examples:,} images; global batch "
        f"{s.global_batch} over {s.ranks} ranks ({s.global_batch // s.ranks} per rank), "
        f"{s.image_tokens + s.text_tokens} tokens per sequence at most.",
        "",
        "Host memory per rank (GiB):",
        "",
        table(host_rows(s), ("what", "before", "now")),
        "",
    ]
    for strategy, title in (
        ("ddp-fp32", "`sharding: ddp`, fp32 weights, bf16 autocast"),
        (
            "fsdp2",
            "`sharding: fsdp` (FSDP2 fully_shard, bf16 compute, fp32 sharded master), "
            "`gradient_checkpointing: true`",
        ),
    ):
        rows = device_rows(s, strategy)
        total = sum(r[1] for r in rows)
        fits = "fits" if total <= args.gpu_gib else "does NOT fit"
        out += [
            f"Device memory per rank, {title}: {fits} in {args.gpu_gib:.0f} GiB:",
            "",
            table(rows, ("what", "GiB")),
            "",
        ]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()

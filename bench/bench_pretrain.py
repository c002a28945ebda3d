"""Pretraining throughput of every objective at the tiny preset, beside OpenCLIP's own trainer.

    .venv/bin/python bench/bench_pretrain.py [--steps 25] [--repeats 3] [--data DATA/train]

Runs, one after the other on the same machine: a bf16 matmul to measure the machine's peak;
our trainer (real shards, real data loading) for each objective; OpenCLIP's trainer
(`python -m open_clip_train.main --dataset-type synthetic`) on the identical CLIP model config
(built from the preset: its ViT size, patch and image size, the clip objective's text tower and
embed size; the preset's batch size, amp_bf16 where bf16 is native else fp32, no loader
workers). Peer: OpenCLIP's trainer. OpenCLIP and our clip run ``--repeats`` times, alternately,
and the headline ratio is the median of the pairs' ratios (single pairs drift on a shared
machine). Prints pairs/s, the ratio to OpenCLIP and the FLOP utilisation (model FLOPs per sample,
counted with torch's FlopCounterMode, times samples/s, over the measured matmul rate).

Our trainer keeps freed host memory in the process (``encoderlab.train.host_memory``); a
last OpenCLIP row runs it with the same glibc settings (``MALLOC_*_`` environment variables),
to show how much of the ratio that is.

The side-by-side rows run on the identical model, for each backbone in ``--archs`` (default:
the shipped preset's and the ViT): a timm CNN goes into OpenCLIP through its model config
(``vision_cfg.timm_model_name``, average pool, linear projection without bias: our
``forward_head`` + ``image_proj``); the ViT is the tiny preset's with the plain patchify stem
(OpenCLIP's ViT has no conv stem). Both sides use OpenCLIP's 49,408-token tokenizer there
(OpenCLIP's synthetic captions come from it). A last row times the preset as shipped (its
stem, its text tokenizer) with our trainer, to show what those cost or save.

    .venv/bin/python bench/bench_pretrain.py --archs convnext_atto --objectives clip
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from encoderlab.config import load_preset
from encoderlab.data.reader import SampleDataset, collate, index_source
from encoderlab.encoders.vit import NAMED_SIZES, EncoderConfig, build_encoder
from encoderlab.objectives import ObjectiveConfig, build_objective
from encoderlab.precision import autocast, resolve_precision
from encoderlab.train.config import TrainConfig
from encoderlab.train.host_memory import MALLOC_SETTINGS
from encoderlab.train.pretrain import PretrainConfig, fit_text_tokenizer, pretrain

OBJECTIVES = ("clip", "siglip", "clip-pretrained-text", "dino")
OPENCLIP_RUNNER = """
import sys, open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
main(sys.argv[2:])
"""


TEXT_KEYS = ("width", "layers", "heads", "context_length", "vocab_size")


def openclip_config(preset: dict) -> dict:
    """OpenCLIP's model config for the preset's CLIP: the same image tower and text tower."""
    enc = EncoderConfig(**preset["encoder"])
    clip = ObjectiveConfig(**preset["objective"]).clip
    if clip.text.tokenizer != "openclip":
        raise ValueError(
            "OpenCLIP's trainer tokenises with its own BPE: compare on tokenizer openclip"
        )
    if enc.arch != "vit":
        if enc.timm_kwargs:
            raise ValueError("OpenCLIP's timm tower takes no timm_kwargs")
        vision = {"timm_model_name": enc.arch, "timm_model_pretrained": False}
        vision.update(timm_pool="avg", timm_proj="linear", timm_proj_bias=False)
        vision.update(image_size=enc.image_size)
    else:
        width, layers, heads = NAMED_SIZES[enc.size]
        vision = {"image_size": enc.image_size, "patch_size": enc.patch_size, "layers": layers}
        vision.update(width=width, head_width=width // heads)
    text = clip.text.model_dump()
    return {
        "embed_dim": clip.embed_dim,
        "vision_cfg": vision,
        "text_cfg": {k: text[k] for k in TEXT_KEYS},
    }


def comparable(shipped: dict, arch: str) -> dict:
    """The shipped preset on ``arch`` as OpenCLIP can build it too: the ViT with the patchify
    stem, OpenCLIP's tokenizer for the from-scratch text towers."""
    encoder = {"image_size": shipped["encoder"]["image_size"], "seed": 0}
    if arch == "vit":
        vit = shipped["encoder"] if shipped["encoder"].get("arch", "vit") == "vit" else {}
        encoder.update(size=vit.get("size", "tiny"), patch_size=vit.get("patch_size", 8))
        encoder.update(stem="patch")
    else:
        encoder.update(arch=arch)
        if arch.startswith("resnet"):
            encoder.update(norm="batch")  # OpenCLIP's timm ResNet keeps timm's BatchNorm
    objective = {**shipped["objective"]}
    for name in ("clip", "siglip"):
        text = {**objective.get(name, {}).get("text", {})}
        text.update(tokenizer="openclip", vocab_size=49408)
        objective[name] = {**objective.get(name, {}), "text": text}
    return {**shipped, "encoder": encoder, "objective": objective}


def matmul_peak(seconds: float = 1.0, sizes: tuple[int, ...] = (1024, 2048)) -> float:
    """Best matmul GFLOP/s over a few sizes and trials (all threads torch uses), in the
    precision training uses: bf16 where native, else fp32. The best of several, because one
    short timing on a shared or frequency-scaling CPU under-reads the peak."""
    dtype = (
        torch.bfloat16
        if resolve_precision("auto", torch.device("cpu")) == "bf16"
        else torch.float32
    )
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(3):
            a @ b
        for _ in range(3):
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                a @ b
                count += 1
            best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_sample(objective: str, preset: dict, data: Path, batch: int) -> float:
    """Training FLOPs (forward + backward) per sample of one step, counted by torch."""
    refs, _ = index_source(data)
    ds = SampleDataset(refs[:batch], image_size=preset["encoder"]["image_size"])
    sample = collate([ds[i] for i in range(batch)])
    task = build_objective(
        objective,
        build_encoder(EncoderConfig(**preset["encoder"])),
        ObjectiveConfig(**preset["objective"]),
    )
    fit_text_tokenizer(task, SampleDataset(refs), None)
    inputs = task.prepare_batch(sample, 0)
    counter = FlopCounterMode(display=False)
    with counter, autocast("auto", torch.device("cpu")):
        task(inputs)["loss"].backward()
    return counter.get_total_flops() / batch


def openclip_flops_per_sample(config: Path, batch: int) -> float:
    """OpenCLIP's training FLOPs per sample on its own model and synthetic batch (its full
    forward: every row of the last blocks, captions padded to the context length)."""
    import open_clip
    from open_clip.loss import ClipLoss

    open_clip.add_model_config(config)
    model = open_clip.create_model(config.stem)  # random init (it logs "no pretrained weights")
    size = model.visual.image_size
    images = (
        torch.randn(batch, 3, *size)
        if isinstance(size, tuple)
        else torch.randn(batch, 3, size, size)
    )
    text = open_clip.get_tokenizer(config.stem)(["Dummy caption"] * batch)
    counter = FlopCounterMode(display=False)
    with counter:
        image_features, text_features, logit_scale = model(images, text)
        ClipLoss()(image_features, text_features, logit_scale).backward()
    return counter.get_total_flops() / batch


def ours(objective: str, preset: dict, data: Path, steps: int, out: Path) -> float:
    """Samples/s of our trainer after the first logging window (warm-up) is dropped."""
    batch = preset["pretrain"]["batch_size"]
    train = {**preset["pretrain"], "samples": batch * steps, "log_every": 5}
    train.update(checkpoint_every=10**6, num_workers=0)
    cfg = PretrainConfig(
        encoder=EncoderConfig(**preset["encoder"]),
        objective=ObjectiveConfig(**preset["objective"]),
        train=TrainConfig(**train),
    )
    pretrain(objective, cfg, data, out / objective, progress=False)
    rows = [json.loads(r) for r in (out / objective / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows[1:]]
    return sum(rates) / len(rates)


# keep_freed_memory's mallopt settings, as glibc reads them from the environment at start-up
SAME_MALLOC = {f"MALLOC_{name}_": str(value) for name, value in MALLOC_SETTINGS.items()}


def openclip(steps: int, preset: dict, out: Path, env: dict[str, str] | None = None) -> float:
    """Samples/s that OpenCLIP's trainer logs (mean over its log lines after the first)."""
    # The same precision ours resolves to: amp_bf16 where bf16 is native, else fp32 (emulated
    # bf16 would make OpenCLIP many times slower and the comparison meaningless).
    precision = "amp_bf16" if resolve_precision("auto", torch.device("cpu")) == "bf16" else "fp32"
    batch = preset["pretrain"]["batch_size"]
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "encoderlab-tiny.json"
    cfg.write_text(json.dumps(openclip_config(preset)))
    runner = out / "run_openclip.py"
    runner.write_text(OPENCLIP_RUNNER)
    args = [
        "--dataset-type", "synthetic", "--train-num-samples", str(batch * steps), "--batch-size", str(batch),
        "--epochs", "1", "--model", "encoderlab-tiny", "--precision", precision, "--workers", "0",
        "--lr", "5e-4", "--wd", "0.05", "--beta2", "0.98", "--eps", "1e-6", "--warmup", "2",
        "--grad-clip-norm", "3.0", "--local-loss", "--gather-with-grad", "--log-every-n-steps", "5",
        "--report-to", "", "--save-frequency", "0", "--logs", str(out / "logs"), "--name", "bench",
        "--seed", "0",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(runner), str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, **(env or {})},
    )
    log = proc.stdout + proc.stderr
    rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s", log)]
    if proc.returncode != 0 or len(rates) < 2:
        raise RuntimeError(f"OpenCLIP run failed:\n{log[-3000:]}")
    return sum(rates[1:]) / len(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards/train"))
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="OpenCLIP / our clip pairs, run alternately: the ratio is their median (this "
        "machine's throughput drifts by 10-15%% between runs)",
    )
    parser.add_argument(
        "--archs",
        default=None,
        help="backbones compared with OpenCLIP, comma-separated (default: the shipped preset's "
        "encoder.arch, then vit)",
    )
    args = parser.parse_args()
    shipped = load_preset("tiny")
    own = shipped["encoder"].get("arch", "vit")
    archs = args.archs.split(",") if args.archs else list(dict.fromkeys([own, "vit"]))
    peak = matmul_peak()
    prec = resolve_precision("auto", torch.device("cpu"))
    batch = shipped["pretrain"]["batch_size"]
    print(
        f"{prec} matmul peak: {peak:.0f} GFLOP/s ({torch.get_num_threads()} threads), batch {batch}"
    )
    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for arch in archs:
            preset = comparable(shipped, arch)
            label = "ViT, patchify" if arch == "vit" else arch
            pairs = []  # alternate the two trainers, so a drift of the machine hits both alike
            for r in range(args.repeats):
                pairs.append(
                    (
                        openclip(args.steps, preset, out / f"openclip-{arch}{r}"),
                        ours("clip", preset, args.data, args.steps, out / f"clip-{arch}{r}"),
                    )
                )
            ratios = sorted(c / o for o, c in pairs)
            oc = statistics.median(o for o, _ in pairs)
            oc_cfg = out / f"openclip-{arch}0" / "encoderlab-tiny.json"
            oc_flops = openclip_flops_per_sample(oc_cfg, batch)
            rows.append((f"[{label}] OpenCLIP trainer (clip)", oc, oc_flops, oc))
            for name in args.objectives.split(","):
                if name == "clip":
                    rate = statistics.median(c for _, c in pairs)
                else:
                    rate = ours(name, preset, args.data, args.steps, out / arch)
                flops = flops_per_sample(name, preset, args.data, batch)
                rows.append((f"[{label}] encoderlab {name}", rate, flops, oc))
            rate = openclip(args.steps, preset, out / f"openclip-malloc-{arch}", env=SAME_MALLOC)
            rows.append((f"[{label}] OpenCLIP, our malloc", rate, oc_flops, oc))
            summaries.append(
                f"[{label}] clip / OpenCLIP over {len(ratios)} alternating pairs: median "
                f"{statistics.median(ratios):.2f}x (each: {', '.join(f'{x:.2f}' for x in ratios)})"
            )
            if arch == own and comparable(shipped, arch) != shipped:
                rate = ours("clip", shipped, args.data, args.steps, out / f"shipped-{arch}")
                flops = flops_per_sample("clip", shipped, args.data, batch)
                rows.append((f"[{label}] encoderlab clip, shipped preset", rate, flops, oc))
    print(
        f"\n{'trainer':48} {'samples/s':>10} {'vs OpenCLIP':>12} {'GFLOP/sample':>13} {'util':>6}"
    )
    for name, rate, flops, oc in rows:
        util = rate * flops / 1e9 / peak
        print(f"{name:48} {rate:10.1f} {rate / oc:11.2f}x {flops / 1e9:13.2f} {100 * util:5.1f}%")
    print()
    for line in summaries:
        print(line + "; OpenCLIP and clip rows show the medians")


if __name__ == "__main__":
    main()

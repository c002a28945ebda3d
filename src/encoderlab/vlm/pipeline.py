"""Train a VLM end to end: (cached) stage 0, features, stage 1, stage 2, checkpoint.

Everything but the encoder is fixed by the ``VLMConfig`` and the data: same LM, same examples
in the same order, same steps and hyper-parameters, so two VLMs differ only by their encoder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from encoderlab.errors import ConfigError
from encoderlab.files import write_json
from encoderlab.precision import precision_record
from encoderlab.progress import console, make_progress
from encoderlab.train.distributed import DistInfo, barrier, init_distributed
from encoderlab.train.pretrain import load_encoder
from encoderlab.train.trainer import Trainer
from encoderlab.vlm.checkpoint import VLM_JSON, save_vlm, verify_vlm
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.data import (
    ConversationFn,
    ExampleDataset,
    PackCollate,
    PadCollate,
    TrainWorld,
    caption_examples,
    instruction_examples,
    read_world,
    train_split,
)
from encoderlab.vlm.lm import lm_info, load_lm, pretrain_lm
from encoderlab.vlm.model import VLMModel, build_model
from encoderlab.vlm.tasks import VLMStageTask
from encoderlab.vlm.template import Template
from encoderlab.vlm.vision import VisionTower, feature_stats, standardize

__all__ = ["train_stages", "train_vlm"]


def _finished(out: Path, cfg: VLMConfig, encoder_dirs: list[Path]) -> dict[str, Any] | None:
    path = out / VLM_JSON
    if not path.is_file():
        return None
    damage = verify_vlm(out)
    if damage is not None:  # retrain: the stages resume from their own intact checkpoints
        console.print(f"warning: {out}: damaged VLM checkpoint ({damage}); rebuilding it")
        return None
    record = json.loads(path.read_text())
    same = record.get("config") == cfg.model_dump(mode="json") and [
        e.get("run_dir") for e in record.get("encoders", [])
    ] == [str(d) for d in encoder_dirs]
    return record if same else None


FEATURES = "features.npy"  # the feature cache of a VLM being trained (removed when done)


@torch.no_grad()
def shared_features(
    tower: VisionTower,
    images: Sequence[torch.Tensor],
    path: Path,
    dist: DistInfo,
    progress: bool = True,
    batch_size: int = 128,
) -> torch.Tensor:
    """The tower's features ``[N, T, D]`` (fp32) of ``images``, in one memory-mapped file.

    Rank ``r`` of ``W`` encodes images ``r, r+W, ...`` (in batches of ``batch_size``; one
    process encodes them in order, as ``encode_images``) into ``path``; then every rank maps
    the whole file copy-on-write. The features are computed once per node instead of once per
    rank, and held once, by the page cache, instead of in every rank's memory. ``images`` may
    decode on access (``vlm.data.ShardImages``): a rank then decodes only its own rows, one
    batch at a time."""
    shape = (len(images), tower.num_tokens, tower.dim)
    if dist.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape).flush()
    barrier()
    rows = np.load(path, mmap_mode="r+")
    mine = list(range(dist.rank, len(images), dist.world_size))
    with make_progress(progress and dist.is_main) as bar:
        task = bar.add_task("image features", total=len(mine)) if bar is not None else None
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            batch = torch.stack([images[i] for i in chunk])
            rows[chunk] = tower(batch).float().cpu().numpy()
            if bar is not None:
                bar.update(task, advance=len(chunk))
    rows.flush()
    del rows
    barrier()  # every rank's rows are on disk
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def _last_metrics(run_dir: Path) -> dict[str, Any]:
    """The last logged metrics of a stage (when a resumed stage had nothing left to do)."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def train_stages(
    model: VLMModel,
    features: torch.Tensor,
    template: Template,
    world: TrainWorld,
    cfg: VLMConfig,
    out: Path,
    dist: DistInfo,
    progress: bool = True,
    conversation_fn: ConversationFn | None = None,
    vision: nn.Module | None = None,
) -> dict[str, Any]:
    """Stages 1 and 2 on ``features`` ``[N, T, D]`` (row i: the world's sample i), each in
    ``out/stageK`` through the shared trainer; returns each stage's summary. Separate from
    ``train_vlm`` so features that no encoder made (``bench/vlm_oracle.py``'s ground-truth
    tokens) train exactly as an encoder's do."""
    pad_id = int(template.tok.pad_token_id)
    collate = (
        PadCollate(pad_id)
        if cfg.packed_row_tokens is None
        else PackCollate(pad_id, cfg.packed_row_tokens)
    )
    stage_data = {
        1: caption_examples(template, world, cfg.stage1.examples),
        2: instruction_examples(
            template,
            world,
            cfg.stage2.examples,
            cfg.question_mix,
            cfg.seed,
            per_image=cfg.conversations_per_image,
            fn=conversation_fn,
        ),
    }
    stages: dict[str, Any] = {}
    for stage, stage_cfg in ((1, cfg.stage1), (2, cfg.stage2)):
        examples, images = stage_data[stage]
        lr_scale = cfg.stage2_projector_lr_scale if stage == 2 else 1.0
        task = VLMStageTask(model, features, stage, projector_lr_scale=lr_scale)
        summary = task.summary(vision=vision)
        if dist.is_main and progress:
            console.print(
                f"stage {stage}: trains {', '.join(summary['trainable'])} "
                f"({summary['trainable_params']:,} params); frozen: {', '.join(summary['frozen'])} "
                f"({summary['frozen_params']:,} params); {len(examples)} examples"
            )
        trainer = Trainer(
            task,
            ExampleDataset(examples, images),
            collate,
            stage_cfg.train,
            out / f"stage{stage}",
            dist_info=dist,
            progress=progress,
            description=f"vlm stage {stage}",
        )
        if dist.is_main:
            (out / f"stage{stage}").mkdir(parents=True, exist_ok=True)
            write_json(summary, out / f"stage{stage}" / "stage.json")
        t0 = time.perf_counter()
        last = trainer.fit() or _last_metrics(out / f"stage{stage}")
        stages[f"stage{stage}"] = {
            **summary,
            "examples": len(examples),
            "steps": stage_cfg.train.total_steps,
            "final": last,
            "seconds": time.perf_counter() - t0,
            "precision": precision_record(stage_cfg.train.precision, dist.device),
        }
    return stages


def train_vlm(
    encoder_dirs: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    cfg: VLMConfig,
    lm_cache: str | Path | None = None,
    progress: bool = True,
    conversation_fn: ConversationFn | None = None,
    dist_info: DistInfo | None = None,
) -> dict[str, Any]:
    """Train a VLM on one or two encoder runs and the training split of ``data``.

    Stage 0's LM is cached under ``lm_cache`` (default: ``OUT/../lm-cache``, shared by the
    sibling VLMs of a study). Interrupted runs resume; a finished ``out`` is returned as is.
    Returns the checkpoint's ``vlm.json`` record.
    """
    out = Path(out)
    dirs = [Path(d) for d in encoder_dirs]
    done = _finished(out, cfg, dirs)
    if done is not None:
        return done
    dist = dist_info or init_distributed()
    start = time.perf_counter()
    names = [str(d) for d in dirs]
    tower = VisionTower([load_encoder(d) for d in dirs], cfg.tap_layer, cfg.pool_tokens, names)
    tower.to(dist.device)
    if cfg.lm_path is not None:  # a given LM: checked before reading any data
        lm_dir, lm_record = Path(cfg.lm_path), {"source": cfg.lm_path}
        lm, tokenizer = load_lm(lm_dir)
    need = max(cfg.image_examples, cfg.stage0.examples if cfg.lm_path is None else 0)
    world = read_world(train_split(data), need, image_size=tower.image_size)
    world.images = world.images[: cfg.image_examples]
    if cfg.lm_path is None:
        root = pretrain_lm(
            cfg, world, Path(lm_cache or out.parent / "lm-cache"), progress, dist, conversation_fn
        )
        lm_dir, lm_record = root / "lm", {"source": str(root), **lm_info(root)}
        lm, tokenizer = load_lm(lm_dir)
    limit = getattr(lm.config, "max_position_embeddings", None)
    if limit is not None and tower.num_tokens + cfg.max_text_tokens > limit:
        raise ConfigError(
            f"{lm_dir}: {tower.num_tokens} image + {cfg.max_text_tokens} text tokens exceed the "
            f"LM's {limit} positions (lower max_text_tokens or set pool_tokens)"
        )
    template = Template(tokenizer, tower.num_tokens, cfg.max_text_tokens, style=cfg.template)
    model = build_model(tower, lm, tokenizer, cfg.seed)
    features = shared_features(tower, world.images, out / FEATURES, dist, progress)
    world.images = []  # the features are all the stages read (the images were references)
    if cfg.standardize_features:
        tower.set_feature_stats(*feature_stats(features))
        features = standardize(features, tower.feature_mean, tower.feature_std)
    stages = train_stages(
        model, features, template, world, cfg, out, dist, progress, conversation_fn, tower
    )
    model.requires_grad_(False)
    info = {
        "lm": lm_record,
        "stages": stages,
        "data": {"source": world.source, "samples": len(world)},
        "seconds": time.perf_counter() - start,
    }
    record: dict[str, Any] = {}
    if dist.is_main:
        record = save_vlm(out, dirs, model, tokenizer, cfg, info, tower)
    barrier()
    if dist.is_main:  # a resumed run encodes again; a finished one never needs them
        (out / FEATURES).unlink(missing_ok=True)
    return record or json.loads((out / VLM_JSON).read_text())

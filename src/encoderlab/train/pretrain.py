"""Pretraining runs: one encoder, one objective, the shared trainer, artefacts on disk.

A finished run directory holds ``config.json`` (everything that defines the run),
``encoder.safetensors`` + ``encoder.json`` (the encoder used downstream: for DINO the EMA
teacher's backbone, as DINO evaluates it), ``objective.safetensors`` (the whole objective, with
text towers for zero-shot), ``metrics.jsonl``, ``siblings.json``, ``snapshots/`` (the encoder
at a few points of training, for learning curves: ``train.snapshots``) and, written last,
``run.json``. Its presence marks the run complete.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import Field
from safetensors.torch import load_file

from encoderlab.config import StrictModel, config_hash
from encoderlab.data.reader import SampleDataset, collate, index_source
from encoderlab.encoders.vit import EncoderConfig, VisionEncoder, build_encoder
from encoderlab.errors import EncoderlabError
from encoderlab.files import save_weights, write_json, write_text
from encoderlab.objectives import Objective, ObjectiveConfig, build_objective
from encoderlab.precision import precision_record
from encoderlab.train.config import TrainConfig
from encoderlab.train.distributed import DistInfo, barrier, init_distributed
from encoderlab.train.runs import record_sibling_diffs
from encoderlab.train.snapshots import list_snapshots, save_snapshot, snapshot_every
from encoderlab.train.trainer import Trainer

DONE = "run.json"
TOKENIZER = "text_tokenizer.json"  # a text tokenizer fitted on the run's captions, if any


class PretrainConfig(StrictModel):
    """Everything a pretraining run needs besides its data and objective name."""

    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def _data_identity(data: Path) -> dict[str, Any]:
    manifest = data.parent / "manifest.json"
    ident: dict[str, Any] = {"path": str(data.resolve())}
    if manifest.is_file():
        ident["manifest_hash"] = json.loads(manifest.read_text()).get("config_hash")
    return ident


def run_config(objective: str, cfg: PretrainConfig, data: Path) -> dict[str, Any]:
    """The JSON that defines a run (and that sibling runs are compared on)."""
    return {
        "objective": objective,
        "encoder": cfg.encoder.model_dump(mode="json"),
        "objective_config": cfg.objective.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json"),
        "data": _data_identity(data),
    }


def pretrain(
    objective: str,
    cfg: PretrainConfig,
    data: Path,
    run_dir: Path,
    progress: bool = True,
    max_steps: int | None = None,
    dist_info: DistInfo | None = None,
) -> dict[str, Any]:
    """Train ``objective`` on the shards under ``data``; resume if ``run_dir`` has a checkpoint.

    Returns the run summary (also written to ``run.json`` when the run completes).
    """
    run_dir = Path(run_dir)
    dist_info = dist_info or init_distributed()
    refs, index_skips = index_source(data)
    # equal batches on every rank: a bad sample is replaced by the next readable one
    dataset = SampleDataset(refs, image_size=cfg.encoder.image_size, refill=True)
    encoder = build_encoder(cfg.encoder)
    task = build_objective(objective, encoder, cfg.objective)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_config(objective, cfg, data), run_dir / "config.json")
        record_sibling_diffs(run_dir)
    fit_text_tokenizer(task, dataset, run_dir if dist_info.is_main else None)
    every = snapshot_every(cfg.train.total_steps, cfg.train.checkpoint_every)

    def snapshot(step: int) -> None:  # the encoder alone, for the learning curves
        if step % every == 0 and step < cfg.train.total_steps:
            save_snapshot(task.downstream_encoder, run_dir, step)

    if dist_info.is_main and not any(step == 0 for step, _ in list_snapshots(run_dir)):
        save_snapshot(task.downstream_encoder, run_dir, 0)  # the shared initialisation
    trainer = Trainer(
        task,
        dataset,
        collate,
        cfg.train,
        run_dir,
        dist_info=dist_info,
        progress=progress,
        description=f"pretrain {objective}",
        on_checkpoint=snapshot,
    )
    trainer.skips.extend(index_skips)
    start = time.perf_counter()
    last = trainer.fit(max_steps=max_steps)
    summary = {
        "objective": objective,
        "config_hash": config_hash(run_config(objective, cfg, data)),
        "steps": cfg.train.total_steps,
        "samples_seen": cfg.train.total_steps * cfg.train.batch_size,
        "final": last,
        "seconds": time.perf_counter() - start,
        "skipped": len(trainer.skips),
        "skipped_summary": trainer.skips.summary() if len(trainer.skips) else "",
        "precision": precision_record(cfg.train.precision, dist_info.device),
    }
    if dist_info.is_main and trainer.finished:
        save_weights(task.downstream_encoder.state_dict(), run_dir / "encoder.safetensors")
        write_json(cfg.encoder.model_dump(mode="json"), run_dir / "encoder.json")
        save_weights(task.state_dict(), run_dir / "objective.safetensors")
        write_json(summary, run_dir / DONE)
    barrier()  # no rank leaves before the main rank has written the run's weights
    return summary


def fit_text_tokenizer(task: Objective, dataset: SampleDataset, run_dir: Path | None) -> None:
    """Fit the text tokenizer on the first training captions where the objective asks for it
    (``text.tokenizer: world``), on every rank alike (training is deterministic), and keep it in
    ``run_dir`` for ``load_objective``; a resumed run must rebuild the very same one."""
    n = min(task.tokenizer_captions, len(dataset))
    if n == 0:
        return
    task.fit_tokenizer([dataset.caption(i) for i in range(n)])
    state = task.tokenizer_json()
    if run_dir is None or state is None:
        return
    path = run_dir / TOKENIZER
    if path.is_file() and path.read_text() != state:
        raise EncoderlabError(f"{path}: the run's tokenizer differs from the one its data gives")
    write_text(path, state)  # atomic, under a temporary name of this process: ranks race


def _require_run(run_dir: Path, needs: str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EncoderlabError(f"{run_dir}: run directory not found")
    if not (run_dir / needs).is_file():
        raise EncoderlabError(f"{run_dir}: not a finished encoderlab run (no {needs})")
    return run_dir


def load_encoder(run_dir: Path) -> VisionEncoder:
    """The trained encoder of a finished run, frozen and in eval mode."""
    run_dir = _require_run(run_dir, "encoder.safetensors")
    cfg = EncoderConfig.model_validate(json.loads((run_dir / "encoder.json").read_text()))
    encoder = build_encoder(cfg.model_copy(update={"drop_path": 0.0}))
    encoder.load_state_dict(load_file(str(run_dir / "encoder.safetensors")))
    encoder.requires_grad_(False)
    return encoder.eval()


def load_objective(run_dir: Path) -> Objective:
    """The whole trained objective of a finished run (text towers included), in eval mode."""
    run_dir = _require_run(run_dir, "objective.safetensors")
    conf = json.loads((run_dir / "config.json").read_text())
    enc_cfg = EncoderConfig.model_validate(conf["encoder"])
    obj_cfg = ObjectiveConfig.model_validate(conf["objective_config"])
    task = build_objective(conf["objective"], build_encoder(enc_cfg), obj_cfg)
    task.load_state_dict(load_file(str(run_dir / "objective.safetensors")))
    if (run_dir / TOKENIZER).is_file():
        task.load_tokenizer((run_dir / TOKENIZER).read_text())
    task.requires_grad_(False)
    return task.eval()


def run_objective(run_dir: Path) -> str:
    """The objective name recorded in a run directory."""
    run_dir = _require_run(run_dir, "config.json")
    return json.loads((run_dir / "config.json").read_text())["objective"]


def unique_name(candidates: list[str], taken: Collection[str]) -> str:
    """The first candidate not in ``taken``, else the first one numbered (``clip-2``, ...):
    how encoders are labelled when two runs share an objective."""
    numbered = (f"{candidates[0]}-{k}" for k in itertools.count(2))
    return next(c for c in itertools.chain(candidates, numbered) if c not in taken)


def run_names(runs: list[Path]) -> list[str]:
    """A label per run directory: its objective, or its directory name when two runs share
    an objective (e.g. two CLIP runs of different studies)."""
    names: list[str] = []
    for run in runs:
        names.append(unique_name([run_objective(run), Path(run).resolve().name], names))
    return names

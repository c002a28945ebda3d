"""Encoder-only snapshots of a pretraining run, for learning curves.

Full checkpoints (``train.checkpoint``) hold the whole training state (every tower, the AdamW
moments, RNG) and are pruned to ``keep_checkpoints`` as training goes, since only the newest
is needed to resume. A learning curve needs the encoder at several points of training, and
only the encoder: the run keeps it as ``snapshots/step_<step>.safetensors`` (the downstream
encoder's weights, as ``encoder.safetensors`` holds them at the end; for DINO the EMA
teacher's backbone). That is a fraction of a checkpoint (tiny preset: 11 MB against ~70 MB),
and snapshots are never pruned.

When: at the shared initialisation (step 0: every objective starts from the same encoder
weights, so this point is the same for all of them) and at checkpoint steps, at most
``CURVE_POINTS`` evenly spaced ones, so a long run (the paper preset: 156 checkpoints) keeps a
handful, not one per checkpoint. The final encoder is the run's own ``encoder.safetensors``.
A snapshot is written before the checkpoint of its step, so a run resumed from that checkpoint
has it (a resumed run replays the same steps bit for bit, so a snapshot rewritten is the same).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from encoderlab.files import save_weights

__all__ = [
    "CURVE_POINTS",
    "SNAPSHOTS",
    "list_snapshots",
    "load_snapshot",
    "save_snapshot",
    "snapshot_every",
]

SNAPSHOTS = "snapshots"
CURVE_POINTS = 8  # snapshots at checkpoint steps, at most (plus step 0 and the final encoder)
_NAME = re.compile(r"step_(\d+)\.safetensors")


def snapshot_every(total_steps: int, checkpoint_every: int, points: int = CURVE_POINTS) -> int:
    """Steps between snapshots: a multiple of ``checkpoint_every`` that leaves at most
    ``points`` snapshots before the final step."""
    checkpoints = math.ceil(total_steps / checkpoint_every)
    return checkpoint_every * max(1, math.ceil(checkpoints / points))


def save_snapshot(encoder: nn.Module, run_dir: Path, step: int) -> Path:
    """Write the encoder's weights as the snapshot of ``step``."""
    path = Path(run_dir) / SNAPSHOTS / f"step_{step:08d}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(encoder.state_dict(), path, {"step": step})
    return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every snapshot of a run, by step."""
    found = []
    for path in (Path(run_dir) / SNAPSHOTS).glob("step_*.safetensors"):
        if m := _NAME.fullmatch(path.name):
            found.append((int(m.group(1)), path))
    return sorted(found)


def load_snapshot(run_dir: Path, path: Path) -> nn.Module:
    """The encoder of a finished run (its ``encoder.json``) with a snapshot's weights, frozen
    and in eval mode, like ``pretrain.load_encoder``."""
    from encoderlab.encoders.vit import EncoderConfig, build_encoder

    cfg = EncoderConfig.model_validate(json.loads((Path(run_dir) / "encoder.json").read_text()))
    encoder = build_encoder(cfg.model_copy(update={"drop_path": 0.0}))
    encoder.load_state_dict(load_file(str(path)))
    encoder.requires_grad_(False)
    return encoder.eval()

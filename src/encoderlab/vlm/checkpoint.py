"""VLM checkpoints: a self-contained directory that ``encoderlab.vlm.load`` opens.

Layout::

    vlm.json                  config, encoders (source run, config hash), LM, stages, hash
    projector.safetensors
    feature_stats.safetensors the tower's standardisation (mean [T, D], std [D]), if the recipe has it
    lm/                       the LM and its tokenizer (``save_pretrained``)
    encoders/0/               copy of the encoder: encoder.safetensors + encoder.json
                              (the layout of a pretraining run, so ``load_encoder`` reads it)

``vlm.json`` is written last, so a directory without it is not a finished checkpoint. It records
the size and sha256 of every other file (``files``), checked by ``load`` and ``verify_vlm``: a
damaged checkpoint is reported in one line instead of failing somewhere inside a loader. Every
file gets the umask's mode (``save_pretrained`` writes ``0600`` weights).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from encoderlab.config import config_hash, parse_config
from encoderlab.encoders.vit import EncoderConfig, build_encoder
from encoderlab.errors import EncoderlabError
from encoderlab.files import (
    check_records,
    file_records,
    make_readable,
    save_weights,
    tensor_bytes,
    write_json,
)
from encoderlab.train.pretrain import load_encoder
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.lm import load_lm, quiet_hf
from encoderlab.vlm.model import VLM, VLMModel, build_model
from encoderlab.vlm.projector import projector_kind
from encoderlab.vlm.vision import VisionTower

__all__ = [
    "FORMAT_VERSION",
    "VLM_JSON",
    "copy_encoder",
    "load",
    "save_vlm",
    "verify_vlm",
    "weights_hash",
    "write_encoder_run",
]

FORMAT_VERSION = 1
VLM_JSON = "vlm.json"
FEATURE_STATS = "feature_stats.safetensors"  # the tower's standardisation, when the recipe has it
ENCODER_FILES = ("encoder.safetensors", "encoder.json")


def weights_hash(*state_dicts: dict[str, torch.Tensor], config: Any = None) -> str:
    """sha256 over names, shapes, dtypes and bytes of the tensors (and the config)."""
    h = hashlib.sha256()
    for sd in state_dicts:
        for name in sorted(sd):
            t = sd[name].detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(tensor_bytes(t))
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def copy_encoder(run_dir: Path, dest: Path) -> dict[str, Any]:
    """Copy a run's encoder files into ``dest``; return where it came from."""
    run_dir = Path(run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ENCODER_FILES:
        shutil.copyfile(run_dir / name, dest / name)
    source: dict[str, Any] = {"run_dir": str(run_dir)}
    config = run_dir / "config.json"
    if config.is_file():
        run_config = json.loads(config.read_text())
        source["objective"] = run_config.get("objective")
        source["config_hash"] = config_hash(run_config)
    source["encoder"] = json.loads((run_dir / "encoder.json").read_text())
    return source


def write_encoder_run(cfg: EncoderConfig, run_dir: Path, objective: str = "random-init") -> Path:
    """A freshly initialised encoder in a pretraining run's layout, for benchmarks and tests
    that need encoder runs without pretraining any."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(build_encoder(cfg).state_dict(), run_dir / "encoder.safetensors")
    write_json(cfg.model_dump(mode="json"), run_dir / "encoder.json")
    write_json(
        {"objective": objective, "encoder": cfg.model_dump(mode="json")}, run_dir / "config.json"
    )
    return run_dir


def save_vlm(
    out: Path,
    encoder_dirs: list[Path],
    model: VLMModel,
    tokenizer: Any,
    cfg: VLMConfig,
    info: dict[str, Any],
    tower: VisionTower,
) -> dict[str, Any]:
    """Write the checkpoint directory ``out``; return the ``vlm.json`` content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / VLM_JSON).unlink(missing_ok=True)
    encoders = [copy_encoder(d, out / "encoders" / str(i)) for i, d in enumerate(encoder_dirs)]
    save_weights(model.projector.state_dict(), out / "projector.safetensors")
    if tower.feature_mean is not None:
        stats = {"mean": tower.feature_mean, "std": tower.feature_std}
        save_weights(stats, out / FEATURE_STATS)
    with quiet_hf():
        model.lm.save_pretrained(out / "lm")
        tokenizer.save_pretrained(out / "lm")
    record = {
        "format_version": FORMAT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "encoders": encoders,
        "projector": projector_kind(len(encoder_dirs)),
        "num_image_tokens": tower.num_tokens,
        **info,
    }
    record["checkpoint_hash"] = weights_hash(
        tower.state_dict(),
        model.projector.state_dict(),
        model.lm.state_dict(),
        config={k: v for k, v in record.items() if k in ("config", "encoders")},
    )
    make_readable(out)
    # the checkpoint's own files: not the training stages' checkpoints or a study's markers
    # (stage.pending.json), which live in the same directory and go away later
    members = {"encoders", "lm", "projector.safetensors", FEATURE_STATS}
    record["files"] = file_records(out, include=members)
    write_json(record, out / VLM_JSON)
    return record


def verify_vlm(path: str | Path) -> str | None:
    """Why the VLM checkpoint ``path`` is damaged or incomplete (one line), or None if every
    file matches the record in its ``vlm.json`` (checkpoints from before records: sizes
    unchecked)."""
    path = Path(path)
    try:
        record = json.loads((path / VLM_JSON).read_text())
    except FileNotFoundError:
        return f"no {VLM_JSON} (unfinished)"
    except (ValueError, UnicodeDecodeError) as err:
        return f"{VLM_JSON} is not valid JSON ({type(err).__name__})"
    if not isinstance(record, dict):
        return f"{VLM_JSON} is not a record"
    return check_records(path, record.get("files") or {})


def load(path: str | Path) -> VLM:
    """Open a VLM checkpoint directory for inference (fp32, eval mode, frozen)."""
    path = Path(path)
    if not (path / VLM_JSON).is_file():
        raise EncoderlabError(f"{path}: not a VLM checkpoint (no {VLM_JSON})")
    try:
        record = json.loads((path / VLM_JSON).read_text())
    except json.JSONDecodeError as err:
        raise EncoderlabError(f"{path / VLM_JSON}: invalid JSON ({err})") from None
    damage = check_records(path, record.get("files") or {})
    if damage is not None:
        raise EncoderlabError(f"{path}: damaged VLM checkpoint ({damage})")
    cfg = parse_config(
        VLMConfig, record.get("config"), source=str(path / VLM_JSON), prefix="config"
    )
    dirs = [path / "encoders" / str(i) for i in range(len(record.get("encoders", [])))]
    tower = VisionTower(
        [load_encoder(d) for d in dirs],
        cfg.tap_layer,
        cfg.pool_tokens,
        names=[str(d) for d in dirs],
    )
    if cfg.standardize_features:
        stats = path / FEATURE_STATS
        if not stats.is_file():
            raise EncoderlabError(f"{stats}: missing (the VLM standardises its features)")
        tower.set_feature_stats(**load_file(str(stats)))
    lm, tokenizer = load_lm(path / "lm")
    model = build_model(tower, lm, tokenizer, cfg.seed)
    weights = path / "projector.safetensors"
    try:
        model.projector.load_state_dict(load_file(str(weights)))
    except (OSError, SafetensorError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise EncoderlabError(f"{weights}: does not fit this VLM's encoders ({first})") from None
    return VLM(tower, model, tokenizer, cfg, record)

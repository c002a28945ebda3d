"""Checkpoints: safetensors for every tensor, JSON for everything else; written atomically and
verified on load.

A checkpoint directory ``step_XXXXXXXX`` holds ``model.safetensors`` (the task's full state
dict: student, teacher, centre, logit scale...), ``optimizer.safetensors`` (AdamW moments),
``rng.safetensors``, ``state.json`` (step, data position, optimizer hyper-parameters) and,
written last, ``manifest.json``: the size and sha256 of every other file. It is written to a
temporary directory and renamed into place (``latest`` is a pointer for people; resume does not
need it), so a run killed at any moment leaves the previous checkpoints and at most a temporary
directory, which the next save removes.

Resume takes the newest checkpoint that verifies against its manifest; a damaged one (bit rot,
a truncated copy, a disk that lied) is reported in one line and skipped, and, once training
has passed its step again, moved to ``checkpoints/damaged/``. If none verifies,
``CheckpointError`` says so and nothing is touched. A full disk or an unwritable directory
during a save raises ``OutputError`` (the path, the space needed and free) after removing the
temporary directory: the previous checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors

from encoderlab.errors import EncoderlabError
from encoderlab.files import (
    OutputError,
    output_error,
    save_weights,  # noqa: F401  (re-exported: it used to live here)
    weights_bytes,
    write_bytes,
    write_json,
)

LATEST = "latest"
MANIFEST = "manifest.json"
DAMAGED = "damaged"
WEIGHT_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
STATE = "state.json"


class CheckpointError(EncoderlabError):
    """A checkpoint is damaged or incomplete (and, on resume, no intact one is left)."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step_"))


def checkpoint_dirs(ckpt_root: Path) -> list[Path]:
    """Every ``step_*`` directory under ``ckpt_root``, newest first."""
    if not ckpt_root.is_dir():
        return []
    dirs = [p for p in ckpt_root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(dirs, key=_step, reverse=True)


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt_state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Save the full training state after ``step`` steps; prune to the ``keep`` newest.

    Raises ``OutputError`` (one line) if the disk is full or ``ckpt_root`` is not writable;
    the temporary directory is removed and the previous checkpoints are kept.
    """
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".step_{step:08d}.tmp"
    opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    state = {"step": step, "optimizer": opt_info, **extra}
    files = {
        "model.safetensors": weights_bytes(model.state_dict()),
        "optimizer.safetensors": weights_bytes(opt_tensors),
        "rng.safetensors": weights_bytes(rng),
        STATE: json.dumps(state, indent=2, sort_keys=True, default=str).encode(),
    }
    manifest = {
        "step": step,
        "files": {
            name: {"bytes": len(data), "sha256": _digest(data)} for name, data in files.items()
        },
    }
    needed = sum(len(d) for d in files.values())
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_root.glob(".*.tmp"):  # left by a killed save (a step, `latest`)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        tmp.mkdir()
        for name, data in files.items():
            write_bytes(tmp / name, data)
        write_json(manifest, tmp / MANIFEST)  # last: a checkpoint without it is incomplete
        if final.exists():  # only a damaged one that resume skipped: its step was replayed
            _set_aside(final)
        os.replace(tmp, final)
    except (OSError, OutputError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _save_error(err, final, needed, ckpt_root) from None
    write_json({"path": final.name, "step": step}, ckpt_root / LATEST)
    _prune(ckpt_root, step, keep)
    return final


def _save_error(err: OSError | OutputError, final: Path, needed: int, root: Path) -> OutputError:
    """One line: the checkpoint that could not be written, why, the space it needs, and which
    checkpoint is kept."""
    if err.errno:
        base = str(output_error(OSError(err.errno, os.strerror(err.errno)), final, needed))
    else:
        base = f"cannot write {final}: {err}"
    kept = next((p for p in checkpoint_dirs(root) if p != final), None)
    tail = f"; kept the last checkpoint {kept.name}" if kept else "; no earlier checkpoint"
    return OutputError(base + tail, err.errno, final)


def _set_aside(path: Path) -> None:
    """Move a damaged checkpoint to ``damaged/`` (kept for inspection, out of resume's way)."""
    aside = path.parent / DAMAGED / path.name
    shutil.rmtree(aside, ignore_errors=True)
    aside.parent.mkdir(exist_ok=True)
    os.replace(path, aside)


def _prune(ckpt_root: Path, step: int, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints up to ``step``. Newer ones can only be damaged ones
    that resume skipped (their steps were just replayed): they move to ``damaged/``."""
    dirs = checkpoint_dirs(ckpt_root)
    for newer in (d for d in dirs if _step(d) > step):
        _set_aside(newer)
    for old in [d for d in dirs if _step(d) <= step][keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _read_verified(path: Path) -> dict[str, bytes]:
    """Every file of checkpoint ``path``, checked against its manifest; ``CheckpointError``
    naming the first problem otherwise. Checkpoints from before manifests are checked by
    parsing instead."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return _read_legacy(path)
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"]
        step = manifest["step"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{MANIFEST} unreadable ({type(err).__name__})") from None
    if step != _step(path):
        raise CheckpointError(f"{MANIFEST} is for step {step}")
    out: dict[str, bytes] = {}
    for name in (*WEIGHT_FILES, STATE):
        file = path / name
        if name not in expected:
            raise CheckpointError(f"{name} is not in {MANIFEST}")
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{name} is missing") from None
        want = expected[name]
        if len(data) != want.get("bytes"):
            raise CheckpointError(f"{name} has {len(data)} bytes, {want.get('bytes')} expected")
        if _digest(data) != want.get("sha256"):
            raise CheckpointError(f"{name} fails its checksum")
        out[name] = data
    return out


def _read_legacy(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in (*WEIGHT_FILES, STATE):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"incomplete (no {MANIFEST}, no {name})")
        out[name] = file.read_bytes()
        try:
            if name == STATE:
                json.loads(out[name])
            else:
                with safe_open(str(file), framework="pt") as f:
                    list(f.keys())
        except (ValueError, SafetensorError, UnicodeDecodeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{name} is damaged ({first})") from None
    return out


def verify_checkpoint(path: Path) -> str | None:
    """Why checkpoint ``path`` is damaged or incomplete (one line), or None if it is intact."""
    try:
        _read_verified(path)
    except CheckpointError as err:
        return str(err)
    return None


def find_checkpoint(ckpt_root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest intact checkpoint (or None) and the damaged ones newer than it, with why."""
    damaged: list[tuple[Path, str]] = []
    for path in checkpoint_dirs(ckpt_root):
        reason = verify_checkpoint(path)
        if reason is None:
            return path, damaged
        damaged.append((path, reason))
    return None, damaged


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest intact checkpoint, or None."""
    return find_checkpoint(ckpt_root)[0]


def resume_checkpoint(ckpt_root: Path) -> tuple[Path | None, str | None]:
    """The checkpoint to resume from and a one-line notice when damaged ones were skipped.

    Raises ``CheckpointError`` when checkpoints exist but none is intact (nothing is deleted).
    """
    path, damaged = find_checkpoint(ckpt_root)
    unverified = path is not None and not (path / MANIFEST).is_file()
    if not damaged:
        if unverified:  # from before manifests, or its manifest was lost: say so
            return path, (
                f"checkpoint {path.name} in {ckpt_root} has no {MANIFEST} (older encoderlab, "
                f"or damaged); its files parse, resuming from it"
            )
        return path, None
    why = ", ".join(f"{d.name} ({reason})" for d, reason in damaged)
    if path is None:
        raise CheckpointError(
            f"no intact checkpoint in {ckpt_root}: {why}; nothing was deleted: move the "
            "directory aside to train from scratch"
        )
    return path, f"damaged checkpoint {why} in {ckpt_root}; resuming from {path.name}"


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``path`` (verified first); return the JSON state."""
    try:
        files = _read_verified(path)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    state = json.loads(files[STATE])
    model.load_state_dict(load_safetensors(files["model.safetensors"]))
    if optimizer is not None:
        tensors = load_safetensors(files["optimizer.safetensors"])
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    rng = load_safetensors(files["rng.safetensors"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state


def checkpoint_step(path: Path) -> int:
    """The step a (verified) checkpoint was saved after."""
    return int(json.loads(_read_verified(path)[STATE])["step"])

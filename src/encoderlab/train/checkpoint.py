"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint directory holds ``model.safetensors`` (the task's full state dict: student, teacher,
centre, logit scale...), ``optimizer.safetensors`` (AdamW moments), ``rng.safetensors`` and
``state.json`` (step, data position, optimizer hyper-parameters). It is written to a temporary
directory and renamed into place, and ``latest`` is replaced atomically after it, so a run killed
at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from encoderlab.files import save_weights, write_json  # noqa: F401  (re-exported)

LATEST = "latest"


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; checkpoints are small, so copy.
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


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
    """Save the full training state after ``step`` steps; prune to the ``keep`` newest."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
    opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
    save_file(_tensors(opt_tensors), str(tmp / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(_tensors(rng), str(tmp / "rng.safetensors"))
    write_json({"step": step, "optimizer": opt_info, **extra}, tmp / "state.json")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json({"path": final.name, "step": step}, ckpt_root / LATEST)
    for old in sorted(ckpt_root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    pointer = ckpt_root / LATEST
    if not pointer.is_file():
        return None
    path = ckpt_root / json.loads(pointer.read_text())["path"]
    return path if (path / "state.json").is_file() else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``path``; return the JSON state."""
    state = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    if optimizer is not None:
        tensors = load_file(str(path / "optimizer.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state

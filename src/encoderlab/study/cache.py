"""Stage caching: a stage's directory is reused only if it was finished with the same hash.

A stage writes ``stage.json`` (its hash, config and input hashes) as the very last thing it
does. Before running, the pipeline compares hashes: the same hash and a ``stage.json`` means
done (skip); the same hash without it means interrupted (run again: trainers resume from their
checkpoints); another hash means stale (the directory is wiped first, so nothing half-written or
out of date is ever taken as done).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderlab.config import config_hash
from encoderlab.files import write_json

DONE = "stage.json"
PENDING = "stage.pending.json"


@dataclass(frozen=True)
class StageKey:
    """What identifies a stage's result: its own config and the hashes of its inputs."""

    name: str
    config: dict[str, Any]
    inputs: dict[str, str]

    @property
    def hash(self) -> str:
        return config_hash({"name": self.name, "config": self.config, "inputs": self.inputs})


def status(directory: Path, key: StageKey) -> str:
    """``done``, ``resume`` (interrupted with the same hash), ``stale`` or ``new``."""
    done, pending = directory / DONE, directory / PENDING
    if done.is_file():
        return "done" if json.loads(done.read_text()).get("hash") == key.hash else "stale"
    if pending.is_file():
        return "resume" if json.loads(pending.read_text()).get("hash") == key.hash else "stale"
    return "stale" if directory.exists() and any(directory.iterdir()) else "new"


def _record(key: StageKey, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "hash": key.hash,
        "name": key.name,
        "config": key.config,
        "inputs": key.inputs,
        **(extra or {}),
    }


def begin(directory: Path, key: StageKey) -> str:
    """Prepare ``directory`` for ``key``; return the status it had."""
    state = status(directory, key)
    if state == "stale":
        shutil.rmtree(directory)
    if state != "done":
        directory.mkdir(parents=True, exist_ok=True)
        write_json(_record(key), directory / PENDING)
    return state


def finish(directory: Path, key: StageKey, summary: dict[str, Any] | None = None) -> None:
    """Mark the stage done (atomically) and drop the pending marker."""
    write_json(_record(key, {"summary": summary or {}}), directory / DONE)
    (directory / PENDING).unlink(missing_ok=True)


def stage_hash(directory: Path) -> str | None:
    """Hash of a finished stage (input of the stages that depend on it)."""
    done = directory / DONE
    return json.loads(done.read_text())["hash"] if done.is_file() else None

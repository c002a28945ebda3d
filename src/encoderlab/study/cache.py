"""Stage caching: a stage's directory is reused only if it was finished with the same hash.

A stage writes ``stage.json`` (its hash, config and input hashes) as the very last thing it
does. Before running, the pipeline compares hashes: the same hash and a ``stage.json`` means
done (skip); the same hash without it means interrupted (run again: trainers resume from their
checkpoints); another hash means stale (the directory is wiped first, so nothing half-written or
out of date is ever taken as done).

One study runs per directory: ``study_lock`` holds an exclusive ``flock`` on ``study.lock`` for
the whole run, so a second ``study run`` on the same directory refuses in one line naming the
process that holds it. The kernel drops the lock when its process dies, so a killed run never
leaves a lock that blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderlab.config import config_hash
from encoderlab.errors import EncoderlabError
from encoderlab.files import check_writable, write_json

DONE = "stage.json"
PENDING = "stage.pending.json"
LOCK = "study.lock"


class StudyLocked(EncoderlabError):
    """Another process is running a study in the same directory."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet"


@contextmanager
def study_lock(directory: Path) -> Iterator[Path]:
    """Hold ``directory``'s study lock for the duration; raise ``StudyLocked`` (one line,
    naming the holder's pid) if another process holds it."""
    directory = check_writable(directory)
    path = directory / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyLocked(
                f"{directory}: another study run ({_holder(path)}) is using this directory; "
                "wait for it to finish or pass another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race a waiter)


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

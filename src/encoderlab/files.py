"""Writing output files: atomically, readable like every other output, one line when it fails.

Every artefact goes through ``write_bytes`` (JSON, text, safetensors): the bytes go to a
temporary file next to the target, which is renamed over it only once complete, so a reader or
a killed run sees the old file or the new one, never half of one. Files are created through
``open``, so their mode is ``0666`` less the umask like any other output (safetensors'
own writer creates ``0600`` files). A full disk or an unwritable directory raises
``OutputError``: one line naming the path (and, for a full disk, the space needed and free),
with the temporary file already removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoderlab.errors import EncoderlabError

if TYPE_CHECKING:
    import torch

__all__ = [
    "OutputError",
    "check_records",
    "check_writable",
    "file_records",
    "human_bytes",
    "is_output_error",
    "make_readable",
    "output_error",
    "save_weights",
    "tensor_bytes",
    "weights_bytes",
    "write_bytes",
    "write_json",
    "write_text",
]

# errnos that mean "this output cannot be written here", as opposed to a bug
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
OUTPUT_ERRNOS = _NO_SPACE | _NOT_WRITABLE
_CHUNK = 16 << 20


class OutputError(EncoderlabError):
    """An output could not be written: disk full, read-only file system, no permission."""

    def __init__(self, message: str, errno: int | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _free_bytes(path: Path) -> int | None:
    for parent in (path, *path.parents):
        try:
            return shutil.disk_usage(parent).free
        except OSError:
            continue
    return None


def output_error(err: OSError, path: Path | str, needed: int | None = None) -> OutputError:
    """The one-line ``OutputError`` for an ``OSError`` met while writing ``path``."""
    path = Path(path)
    reason = err.strerror or os.strerror(err.errno or 0) or str(err)
    if err.errno in _NO_SPACE:
        free = _free_bytes(path.parent)
        room = []
        if needed is not None:
            room.append(f"needs {human_bytes(needed)}")
        if free is not None:
            room.append(f"{human_bytes(free)} free")
        detail = f" ({', '.join(room)})" if room else ""
        return OutputError(f"cannot write {path}: {reason.lower()}{detail}", err.errno, path)
    return OutputError(f"cannot write {path}: {reason.lower()}", err.errno, path)


def is_output_error(err: BaseException) -> bool:
    """Whether ``err`` is an ``OSError`` that a user fixes (space, permissions), not a bug."""
    return isinstance(err, OSError) and err.errno in OUTPUT_ERRNOS


def _tmp_name(path: Path) -> Path:
    # per-process name: two writers (DDP ranks, two commands) never share a temporary file
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_stream(f: Any, data: bytes | memoryview) -> None:
    """Write ``data`` to the open file ``f`` in chunks (the single place bytes reach disk, so
    tests inject a full disk here)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _CHUNK):
        f.write(view[start : start + _CHUNK])


def write_bytes(path: Path | str, data: bytes | memoryview, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename), mode per the umask.

    Raises ``OutputError`` (one line: path, reason, space needed) when the disk is full or the
    directory is not writable; the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            _write_stream(f, data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if is_output_error(err):
            raise output_error(err, path, len(memoryview(data).cast("B"))) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; see ``write_bytes``."""
    write_bytes(path, text.encode())


def write_json(obj: Any, path: Path | str) -> None:
    """Write JSON atomically (temporary file + rename); see ``write_bytes``."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def weights_bytes(state: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A state dict serialised as safetensors (copies: shared or strided storage is fine)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's raw bytes for hashing, 0-dim included (a BatchNorm's ``num_batches_tracked``
    is a 0-dim int64, which ``view(torch.uint8)`` refuses)."""
    import torch

    t = tensor.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def save_weights(
    state: dict[str, torch.Tensor], path: Path | str, metadata: dict | None = None
) -> None:
    """Write a state dict as safetensors, atomically, mode per the umask."""
    write_bytes(path, weights_bytes(state, metadata))


def check_writable(directory: Path | str) -> Path:
    """Create ``directory`` if needed and make sure files can be created in it; raise
    ``OutputError`` (one line) if not. Run before long work whose output would be lost."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        if is_output_error(err) or isinstance(err, (FileExistsError, NotADirectoryError)):
            raise output_error(err, Path(err.filename or directory)) from None
        raise
    return directory


def umask_mode() -> int:
    """The mode ``open`` gives a new file: ``0666`` less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def make_readable(root: Path | str) -> None:
    """Give every file under ``root`` the umask's mode: for outputs of writers that create
    ``0600`` files (safetensors' ``save_file``, so Hugging Face's ``save_pretrained``)."""
    mode = umask_mode()
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_records(
    root: Path | str, exclude: tuple[str, ...] = (), include: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``root`` (by relative path; only under the top-level
    names ``include`` if given), for a record written last that ``check_records`` verifies."""
    root = Path(root)
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if include is not None and rel.split("/", 1)[0] not in include:
            continue
        if path.is_file() and rel not in exclude:
            records[rel] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    return records


def check_records(root: Path | str, records: dict[str, dict[str, Any]]) -> str | None:
    """Why the files under ``root`` do not match ``records`` (one line), or None if they do."""
    root = Path(root)
    for rel, want in records.items():
        path = root / rel
        if not path.is_file():
            return f"{rel}: missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{rel}: {size} bytes, {want.get('bytes')} expected"
        if _sha256(path) != want.get("sha256"):
            return f"{rel}: checksum mismatch"
    return None

"""Typed configs shared by every stage.

Each subsystem defines its own pydantic model next to its code (``WorldConfig`` in
``encoderlab.data.synthworld``, ``TrainConfig`` in ``encoderlab.train``...). This module holds
what they share: a strict base model (unknown keys are errors), YAML loading with one-line
errors that name the offending key path, preset lookup, and the config hash that names cached
results.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from encoderlab.errors import ConfigError

__all__ = [
    "ConfigError",
    "StrictModel",
    "config_hash",
    "format_validation_error",
    "list_presets",
    "load_preset",
    "load_yaml",
    "merge_sections",
    "parse_config",
    "preset_section",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line naming the first bad key path, e.g. ``study.yaml: pretrain.lr: ...``."""
    first = err.errors()[0]
    path = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path}: {msg}{more}"


def parse_config(model: type[M], data: Any, source: str = "<config>", prefix: str = "") -> M:
    """Validate ``data`` as ``model``; raise a one-line ``ConfigError`` on failure.

    ``prefix`` is the key path of ``data`` inside its file, so errors name the full path.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, prefix)) from None


def preset_section(preset: str, section: str, model: type[M]) -> M:
    """Section ``section`` of a preset (a shipped name or a YAML path), validated as ``model``."""
    data = load_preset(preset).get(section) or {}
    return parse_config(model, data, source=preset, prefix=section)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a syntax error is a one-line ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def list_presets(group: str | None = None) -> list[str]:
    """Names of the presets shipped with the package: ``presets/*.yaml`` (``tiny``), or with
    ``group`` those of ``presets/<group>/*.yaml`` (``experiments/mini-1200``)."""
    root = resources.files("encoderlab") / "presets"
    if group is not None:
        root = root / group
        if not root.is_dir():
            return []
    prefix = f"{group}/" if group else ""
    return sorted(prefix + p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """Load a shipped preset by name (``tiny``, ``experiments/mini-1200``), or a YAML file by
    path (``my.yaml``, ``configs/x.yml``)."""
    if name.endswith((".yaml", ".yml")):
        return load_yaml(name)
    shipped = resources.files("encoderlab") / "presets" / f"{name}.yaml"
    if ".." not in name.split("/") and shipped.is_file():
        return yaml.safe_load(shipped.read_text()) or {}
    if "/" in name:
        group = name.split("/")[0]
        known = list_presets(group)
        if known:
            raise ConfigError(f"unknown preset {name!r}; known in {group}/: {', '.join(known)}")
        return load_yaml(name)
    known = list_presets()
    raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(known)}")


def merge_sections(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` overridden key by key by ``over``, nested sections merged, not replaced (how a
    preset's section overrides the defaults it builds on). Neither input is modified."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_sections(out[key], value)
        else:
            out[key] = value
    return out


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a config (a pydantic model or JSON-able data).

    Keys are sorted so that the hash depends only on values, not on field order.
    """
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]

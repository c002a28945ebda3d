"""Numeric precision: bf16 where the hardware computes it natively, fp32 elsewhere.

Why not bf16 everywhere: on a CPU without AVX-512-BF16 or AMX, oneDNN emulates bf16 matmuls
and runs them far *slower* than fp32 (measured on an AVX2-only build machine: 0.9 vs 141
GFLOP/s for a 1024^2 matmul); on CPUs with native bf16 it is the faster choice, and on GPUs the
usual one. ``auto`` picks per machine, so one preset serves laptops, CI and clusters.

Because ``auto`` makes results depend on the CPU, the environment variable
``ENCODERLAB_NATIVE_BF16`` (``1`` or ``0``) overrides the detection for the CPU: the test suite
uses it to run as if on the other kind of machine (``pytest --native-bf16``), so a change is
checked on AVX2 and on AVX-512-BF16 behaviour from either. Outputs record the precision a stage
actually ran in (``precision_record``), since results differ between the two.
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

from encoderlab.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]

NATIVE_BF16_ENV = "ENCODERLAB_NATIVE_BF16"


def _cpu_override() -> bool | None:
    """``ENCODERLAB_NATIVE_BF16``: ``1``/``0`` forces the CPU answer; unset (or empty) detects."""
    value = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ConfigError(f"{NATIVE_BF16_ENV}={value!r}: expected 1 or 0 (or unset)")


def cpu_has_native_bf16() -> bool:
    """What the CPU itself reports: AVX-512-BF16 or AMX tiles (ignores the override)."""
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (CPUs: unless overridden, see above)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    override = _cpu_override()
    return cpu_has_native_bf16() if override is None else override


def resolve_precision(precision: Precision, device: torch.device) -> Literal["bf16", "fp32"]:
    """``auto`` -> ``bf16`` where native, else ``fp32``; explicit choices are kept."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16`` (after resolving ``auto``), nothing for ``fp32``."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_record(precision: Precision, device: torch.device) -> dict[str, str]:
    """What a stage writes into its outputs: the precision asked for and the one it ran in."""
    record = {
        "requested": precision,
        "resolved": resolve_precision(precision, device),
        "device": device.type,
    }
    if device.type == "cpu":
        record["cpu_native_bf16"] = "yes" if cpu_has_native_bf16() else "no"
        if _cpu_override() is not None:
            record["forced_native_bf16"] = "yes" if _cpu_override() else "no"
    return record

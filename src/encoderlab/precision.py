"""Numeric precision: bf16 where the hardware computes it natively, fp32 elsewhere.

Why not bf16 everywhere: on a CPU without AVX-512-BF16 or AMX, oneDNN emulates bf16 matmuls
and runs them far *slower* than fp32 (measured on an AVX2-only build machine: 0.9 vs 141
GFLOP/s for a 1024^2 matmul); on CPUs with native bf16 it is the faster choice, and on GPUs the
usual one. ``auto`` picks per machine, so one preset serves laptops, CI and clusters.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


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

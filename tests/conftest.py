"""Shared test settings.

The test models are tiny: one thread is fastest for them, and it avoids OpenMP's stalls when
the two cores are shared (two threads of one process waiting on each other while another
process holds a core made steps 10-50x slower here). Subprocesses (CLI, torchrun) inherit it.
The model files the tests use ship with PyPI packages: nothing is fetched from a hub.

``--native-bf16 yes|no`` runs the suite as if the CPU had (or lacked) native bf16: ``precision:
auto`` then resolves to bf16 (or fp32) everywhere, subprocesses included, through
``ENCODERLAB_NATIVE_BF16``. ``.ci/run`` runs the suite once as the machine is and once as the
other kind, so a change is checked on both kinds of CPU from either.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from encoderlab.precision import NATIVE_BF16_ENV, cpu_has_native_bf16, native_bf16

torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--native-bf16",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run as if the CPU had (yes) or lacked (no) native bf16; auto: as it is",
    )


def pytest_configure(config: pytest.Config) -> None:
    choice = config.getoption("--native-bf16")
    if choice != "auto":
        os.environ[NATIVE_BF16_ENV] = "1" if choice == "yes" else "0"


def pytest_report_header(config: pytest.Config) -> str:
    cpu = "AVX-512-BF16/AMX" if cpu_has_native_bf16() else "no native bf16 (AVX2 or older)"
    mode = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    return f"encoderlab: CPU {cpu}; precision auto runs in {mode} for this session"

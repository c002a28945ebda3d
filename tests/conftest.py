"""Shared test settings.

The test models are tiny: one thread is fastest for them, and it avoids OpenMP's stalls when
the two cores are shared (two threads of one process waiting on each other while another
process holds a core made steps 10-50x slower here). Subprocesses (CLI, torchrun) inherit it.
The model files the tests use ship with PyPI packages: nothing is fetched from a hub.

``--native-bf16 yes|no`` runs the suite as if the CPU had (or lacked) native bf16: ``precision:
auto`` then resolves to bf16 (or fp32) everywhere, subprocesses included, through
``ENCODERLAB_NATIVE_BF16``. ``.ci/run`` runs the suite once as the machine is and once as the
other kind, so a change is checked on both kinds of CPU from either. Tests marked
``any_cpu_kind`` (nothing in them trains in ``auto`` precision: one-line errors, ``--help``
of the benchmarks, evaluation in fp32, a real-data study whose training paths the smoke study
checks on both kinds) run in one of the two passes only: ``--any-kind-share 0|1`` keeps the
half whose id hashes to it (``all``, the default, keeps every test).
"""

from __future__ import annotations

import os
import zlib

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
    parser.addoption(
        "--any-kind-share",
        choices=("all", "0", "1"),
        default="all",
        help="of the tests marked any_cpu_kind, run only those whose id hashes to this half",
    )


def pytest_configure(config: pytest.Config) -> None:
    choice = config.getoption("--native-bf16")
    if choice != "auto":
        os.environ[NATIVE_BF16_ENV] = "1" if choice == "yes" else "0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    share = config.getoption("--any-kind-share")
    if share == "all":
        return
    other = [
        item
        for item in items
        if item.get_closest_marker("any_cpu_kind") is not None
        and zlib.crc32(item.nodeid.encode()) % 2 != int(share)
    ]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]


def pytest_report_header(config: pytest.Config) -> str:
    cpu = "AVX-512-BF16/AMX" if cpu_has_native_bf16() else "no native bf16 (AVX2 or older)"
    mode = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    return f"encoderlab: CPU {cpu}; precision auto runs in {mode} for this session"

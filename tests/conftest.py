"""Shared test settings.

The test models are tiny: one thread is fastest for them, and it avoids OpenMP's stalls when
the two cores are shared (two threads of one process waiting on each other while another
process holds a core made steps 10-50x slower here). Subprocesses (CLI, torchrun) inherit it.
The model files the tests use ship with PyPI packages: nothing is fetched from a hub.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

torch.set_num_threads(1)

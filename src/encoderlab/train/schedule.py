"""Learning-rate schedule: linear warm-up then cosine decay (OpenCLIP's and DINO's shape).

A pure function of the step, so resuming needs only the step number.
"""

from __future__ import annotations

import math


def cosine_with_warmup(
    step: int, total_steps: int, base: float, warmup_steps: int, final: float = 0.0
) -> float:
    """Value at ``step`` (0-based) of a warm-up + cosine schedule from ``base`` to ``final``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * progress))


def cosine(start: float, end: float, step: int, total_steps: int) -> float:
    """DINO's ``cosine_scheduler`` without warm-up: ``start`` at step 0, reaching ``end`` at
    ``total_steps`` (DINO's teacher momentum and weight-decay schedules)."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))

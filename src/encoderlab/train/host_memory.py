"""Keep freed host memory in the process, so a CPU training step does not re-fault its pages.

Why: glibc's malloc serves large blocks (activations, gradients, the 38 MB gradient of a
49,408-token embedding) with ``mmap`` and hands them back with ``munmap`` or heap trimming; the
next step then takes a page fault and a zeroing per 4 KiB page (~45,000 faults per step of the
tiny CLIP here, 10-20% of its time). PyTorch's CPU tuning guide fixes this by preloading
jemalloc or tcmalloc; glibc's own ``mallopt`` does the same in-process, with no package or
``LD_PRELOAD`` (written by hand: no library wraps it). The price is that the process keeps its
peak heap until it exits, as PyTorch's CUDA caching allocator does on a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MALLOC_SETTINGS", "OPT_OUT_ENV", "keep_freed_memory"]

OPT_OUT_ENV = "ENCODERLAB_SYSTEM_MALLOC"  # set to 1 to leave malloc as the system set it
# glibc's tunables by the names of its MALLOC_<NAME>_ environment variables. MMAP_THRESHOLD is
# glibc's largest (blocks above it are still mapped and unmapped each time; a fixed value also
# turns off its dynamic threshold); TOP_PAD grows the heap in 256 MB steps, so big blocks fit in
# it rather than in mmaps; TRIM_THRESHOLD at its maximum: never hand the heap back.
MALLOC_SETTINGS = {"MMAP_THRESHOLD": 32 << 20, "TRIM_THRESHOLD": 2**31 - 1, "TOP_PAD": 256 << 20}
_MALLOPT_OPTION = {"TRIM_THRESHOLD": -1, "TOP_PAD": -2, "MMAP_THRESHOLD": -3}  # glibc's malloc.h
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks of up to 32 MB from its heap (grown in 256 MB steps) and never
    to trim it; True if it took effect.

    Process-wide and idempotent; a no-op (False) off Linux/glibc or with ``OPT_OUT_ENV`` set.
    """
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and os.environ.get(OPT_OUT_ENV, "") in ("", "0"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl or another libc without mallopt
                return False
            _done = all(mallopt(_MALLOPT_OPTION[k], v) for k, v in MALLOC_SETTINGS.items())
    return _done

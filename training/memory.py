"""glibc's allocator, set for a process that holds one large table and trains on it.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so the batch- and
activation-sized blocks of training (hundreds of KiB to a few MiB) move into the heap, where
fragmentation keeps them: on a 2 M-row table one epoch grew the heap by ~230 MB that was never
handed back (bench/tables_memory.py). A fixed threshold keeps such blocks mapped, and unmapped when
freed. Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 8 << 20
"""Blocks of 8 MiB and more are mapped on their own (glibc's default starts at 128 KiB, then moves up to
32 MiB). Measured on 2 M rows (bench/tables_memory.py, bench/allocator.py): 1 MiB kept the peak as low
but mapped every 4 MiB activation of a 4,096-row batch afresh (training 1.6x slower); 16 MiB let the
16 MiB evaluation chunks fragment the heap again."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (and so stop its dynamic growth); False where libc is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done

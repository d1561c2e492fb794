"""The decoder process's heap: freed batch memory is kept for the next batch (glibc malloc).

Why: torch's CPU tensors come from malloc. A joint-decoder batch allocates activations of a few
MiB each, and glibc, by default, serves blocks that large with fresh ``mmap`` pages, unmaps them on
free, and gives the top of the heap back to the OS past its trim threshold. Every batch then
faults its activations in again as zeroed pages. On the project's 2-core VM ecg-synth-quick's
batches of 32 and 64 windows ran ×1.2–2.3 faster with the memory kept, smaller ones and
ecg-12lead's about the same (``python benchmarks/decoder_heap.py``; docs/serving.md). The cost is
the heap's high-water mark staying resident: the same peak RSS in that benchmark.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("ndsc.decoder")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): larger blocks
#: (whole 1080p stereo frames) are still mapped and unmapped each time.
MMAP_THRESHOLD_MAX = 32 << 20
#: the most MiB that can be kept: malloc takes the trim threshold in bytes as a C int
MAX_KEEP_MIB = (2**31 - 1) >> 20


def keep_freed_memory(mib: int) -> bool:
    """Keep up to ``mib`` MiB of freed memory in the heap (trim threshold) and serve blocks below
    min(``mib`` MiB, 32 MiB) from it rather than from ``mmap``; ``mib`` 0 leaves malloc as it is
    (at most :data:`MAX_KEEP_MIB`, 2047: malloc takes bytes as a C int).
    Returns whether glibc took both settings (False on other C libraries: nothing changes).

    Process-wide, so only the decoder's entry point calls it, once, before the model is loaded.
    """
    if mib <= 0:
        return False
    if mib > MAX_KEEP_MIB:
        raise ValueError(f"{mib} MiB of heap to keep does not fit malloc's int of bytes (at most {MAX_KEEP_MIB})")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own allocator, left alone
        log.info("malloc settings left alone: no glibc mallopt here")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    size = mib << 20
    took = (mallopt(_M_MMAP_THRESHOLD, min(size, MMAP_THRESHOLD_MAX)) == 1
            and mallopt(_M_TRIM_THRESHOLD, size) == 1)
    if not took:
        log.warning("malloc refused the heap settings for %d MiB (not glibc?); its defaults stay", mib)
    return took

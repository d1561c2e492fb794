"""The decoder's heap keeps freed batch memory: large blocks come from the heap, not fresh mmaps."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from fusion_decoder.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")

# A child process (malloc's settings are per process and cannot be undone): allocate 8 MiB, a batch
# activation's size, and report how many mmapped blocks glibc held while it lived (mallinfo2).
_PROBE = """
import ctypes, sys
from fusion_decoder.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
took = keep_freed_memory(int(sys.argv[1]))
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
during = libc.mallinfo2().hblks
libc.free(block)
print(took, during - before)
"""


def _mapped_blocks_for_8_mib(mib: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(mib)], check=True, capture_output=True, text=True)
    took, mapped = out.stdout.split()
    return took, int(mapped)


def test_with_the_heap_kept_a_batch_sized_block_comes_from_the_heap_and_with_defaults_from_mmap():
    assert _mapped_blocks_for_8_mib(256) == ("True", 0)
    assert _mapped_blocks_for_8_mib(0) == ("False", 1)  # glibc's default: a fresh mapping each time


def test_zero_leaves_malloc_alone_and_more_than_a_c_int_of_bytes_is_refused():
    assert keep_freed_memory(0) is False
    with pytest.raises(ValueError, match="at most 2047"):
        keep_freed_memory(2048)


def test_the_decoder_setting_is_bounded_to_what_malloc_takes():
    from fusion_decoder.settings import DecoderSettings

    assert DecoderSettings(bundle="b").validate().heap_keep_mib == 256
    with pytest.raises(ValueError, match="heap_keep_mib"):
        DecoderSettings(bundle="b", heap_keep_mib=2048).validate()

"""Keep glibc's freed tensor memory in the process instead of giving it back to the kernel.

glibc serves every allocation above its mmap threshold (32 MiB at most) with fresh ``mmap`` pages
and unmaps them again on ``free``. A CPU forward pass over a batch of pockets allocates dozens of
such buffers (per-edge vector features of a 32-complex FEP batch are ~190 MiB each), so every
step page-faults them in anew and the kernel zeroes each page: on a 2-core CPU, batched
prediction ran 4x slower at batch size 32 than at batch size 1, most of it system time
(``bench/README.md``). Serving large blocks from the heap and never trimming it makes the next
step reuse the pages, as ``MALLOC_MMAP_MAX_=0`` would if set before start-up, which a Python
entry point cannot do for itself. The cost: the resident size stays at its peak until exit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes: free heap top is kept up to 2 GiB


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and keep freed heap memory.

    Returns whether it took effect; ``False`` on a platform without glibc (macOS, musl), where
    the allocator is left as it is.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        log.debug("no C library found; allocator left as it is")
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        log.debug("%s is not glibc; allocator left as it is", name)
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))

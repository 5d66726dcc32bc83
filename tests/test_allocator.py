"""plgraph.runtime.allocator: large tensor buffers are reused instead of page-faulted in on every
step."""

from __future__ import annotations

import subprocess
import sys

import pytest

# 40 allocations of a 64 MiB tensor, each written and freed, after 5 warming up (imports, the
# heap's first growth): the minor page faults the 40 cost.
FAULTS = """
import resource, sys, torch
from plgraph.runtime.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(5):
    torch.ones(2**24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    torch.ones(2**24).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                            check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.slow  # two Python processes with torch, 80 tensors of 64 MiB
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    default, kept = page_faults("default"), page_faults("keep")
    pages_per_tensor = 2**26 // 4096
    assert default > 30 * pages_per_tensor  # glibc maps and unmaps each one
    # Reused: a few tensors' worth at most (the heap settling), not one per tensor.
    assert kept < 5 * pages_per_tensor, (default, kept)

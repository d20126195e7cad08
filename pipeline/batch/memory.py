"""The peak memory a batch run reports: an instrument the caller injects, so that what is measured (and what it
costs) is the caller's choice.

    OwnPeakRss         what ``modcascade batch`` reports: the batch process's own peak RSS as the kernel keeps it
                       (``getrusage``): one system call at the end, no sampling task, no dependency. Processes it
                       started are not in it, and the vLLM engine core is one: the report says so.
    ProcessTreeRss     the benchmark's (:mod:`pipeline.bench.batch`, psutil, the ``bench`` extra): a process and all
                       its descendants, sampled.

Without an instrument the report says that memory was not measured.
"""

from __future__ import annotations

import resource
import sys
from typing import Protocol


class PeakMemory(Protocol):
    scope: str
    """What the figure covers, for the report (``"the batch process; ..."``)."""

    def peak_bytes(self) -> int:
        """The peak resident memory so far, in bytes."""
        ...


class OwnPeakRss:
    """The peak RSS of this process, from the kernel's own accounting (no sampling)."""

    scope = "the batch process; processes it started, such as the vLLM engine core, not counted"

    def peak_bytes(self) -> int:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux

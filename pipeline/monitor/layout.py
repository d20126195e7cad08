"""What a running monitor can take from an edited policy, and what needs a restart.

The monitor hot-reloads its policy like the workers do: thresholds (``psi_max``, the rate factors and maxima, the
minimum counts) and the ``guard:`` section apply from the next evaluated window. The window table's shape is fixed
when the app starts: the window length and lateness, how many windows it keeps (``trailing_windows``), the score
bins, the reference (and its baseline file, read once) and the taxonomy whose categories are counted. An edit that
changes any of those is rejected, the last good policy stays, and the error names the field and the fix.
"""

from __future__ import annotations

from pipeline.errors import PolicyError, PolicyIssue
from pipeline.policy import Policy
from pipeline.policy.store import Accept

FIXED_MONITOR_FIELDS = ("window_s", "lateness_s", "trailing_windows", "score_bins", "reference", "baseline")
"""The ``monitor:`` fields the window table is built from when the monitor starts."""


def layout_changes(running: Policy, edited: Policy, *, file: str) -> list[PolicyIssue]:
    """One issue per field of ``edited`` that a running monitor built from ``running`` cannot take."""
    issues = []
    fix = "restart the monitor to apply it (its window tables are built at start), or undo the edit"
    for name in FIXED_MONITOR_FIELDS:
        before, after = getattr(running.monitor, name), getattr(edited.monitor, name)
        if before != after:
            issues.append(PolicyIssue(file, f"monitor.{name}", f"changed from {before!r} to {after!r} while the "
                                      f"monitor runs: {fix}"))
    if running.taxonomy.categories != edited.taxonomy.categories or running.taxonomy.safe != edited.taxonomy.safe:
        issues.append(PolicyIssue(file, "taxonomy", f"the categories changed while the monitor runs: {fix}"))
    return issues


def fixed_layout(file: str) -> Accept:
    """A :class:`~pipeline.policy.PolicyStore` ``accept`` hook: the first policy it sees sets the layout; a later
    one that changes it raises :class:`PolicyError` (the store keeps the last good policy)."""
    first: list[Policy] = []

    def accept(policy: Policy) -> None:
        if not first:
            first.append(policy)
            return
        if issues := layout_changes(first[0], policy, file=file):
            raise PolicyError(issues)

    return accept

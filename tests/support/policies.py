"""Policy files for tests: the default policy with some of its sections replaced."""

from __future__ import annotations

from pathlib import Path

from tests.support import REPO


def default_policy_with_monitor(tmp_path: Path, monitor: dict[str, object]) -> Path:
    """A copy of policies/default.yaml in ``tmp_path`` whose ``monitor:`` section holds exactly ``monitor``
    (e.g. windows of seconds for a test)."""
    text = (REPO / "policies" / "default.yaml").read_text("utf-8")
    head, rest = text.split("\nmonitor:", 1)
    section = "\nmonitor:\n" + "".join(f"  {key}: {value}\n" for key, value in monitor.items())
    path = tmp_path / "policy.yaml"
    path.write_text(head + section + "\n" + rest.split("\n\n", 1)[1], "utf-8")
    return path

"""The Prometheus alerting rules (deploy/prometheus/alerts.yml): every rule queries metrics pipeline/metrics.py
exports, has a unit test in alerts.test.yml, and those tests pass under ``promtool test rules`` (Debian package
``prometheus``, installed by ``make system-deps``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_files import exported_metric_names, promql_metric_names

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
ISSUE_ALERTS = {  # what the monitoring issue asks alerts for, and the rule that covers it
    "drift alerts": "ModcascadeScoreDrift",
    "escalation-rate jumps": "ModcascadeEscalationRateJump",
    "dead-letter rate": "ModcascadeDeadLetterRate",
    "consumer lag": "ModcascadeConsumerLag",
    "frontier budget burn": "ModcascadeFrontierBudgetBurn",
    "backend down": "ModcascadeBackendDown",
    "breaker open": "ModcascadeFrontierBreakerOpen",
    "guard tripped": "ModcascadeGuardTripped",
}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text("utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_rule_queries_exported_metrics_and_is_documented() -> None:
    exported = exported_metric_names()
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert set(ISSUE_ALERTS.values()) <= set(names)
    for rule in rules():
        used = promql_metric_names(rule["expr"])
        assert used, f"{rule['alert']} names no metric"
        assert not used - exported, f"{rule['alert']} uses {sorted(used - exported)}, not in pipeline/metrics.py"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_rule_has_a_firing_and_a_quiet_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text("utf-8"))
    assert doc["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert firing == names, f"rules without a test where they fire: {sorted(names - firing)}"
    assert quiet == names, f"rules without a test where they stay quiet: {sorted(names - quiet)}"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make system-deps` (installs the Debian package prometheus)")
    return found


@pytest.mark.tools
def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.tools
def test_promtool_catches_a_broken_threshold(tmp_path: Path) -> None:
    """Negative control: with the guard rule's condition changed, its unit test fails."""
    text = RULES.read_text("utf-8")
    condition = "(modcascade_guard_tripped) == 1"
    assert text.count(condition) == 1
    (tmp_path / RULES.name).write_text(text.replace(condition, "(modcascade_guard_tripped) == 2"), "utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = subprocess.run([promtool(), "test", "rules", str(tmp_path / RULE_TESTS.name)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "ModcascadeGuardTripped" in result.stdout + result.stderr

"""Every policy file shipped in policies/ is valid, and every key in it says what it means."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.policy import decide, load_policy
from pipeline.settings import Settings
from tests.support.samples import SCORES

REPO = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted([*REPO.glob("policies/*.yaml"), *REPO.glob("policies/*.yml")])


def key_lines(text: str) -> list[int]:
    """0-based line of every mapping key in a YAML document, nested ones included."""
    lines: list[int] = []
    pending = [yaml.compose(text, Loader=yaml.SafeLoader)]
    while pending:
        node = pending.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines.append(key.start_mark.line)
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return sorted(lines)


def test_the_default_and_a_stricter_variant_are_shipped() -> None:
    assert {"default.yaml", "strict.yaml"} <= {path.name for path in POLICY_FILES}


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda path: path.name)
def test_every_policy_file_loads(path: Path) -> None:
    policy = load_policy(path)
    assert policy.name == path.stem
    assert len(policy.version) == 12


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda path: path.name)
def test_every_key_has_a_comment_on_its_line_or_the_line_above(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    uncommented = [
        f"{path.name}:{n + 1}: {lines[n].strip()}"
        for n in key_lines(text)
        if " #" not in lines[n] and not (n > 0 and lines[n - 1].lstrip().startswith("#"))
    ]
    assert uncommented == []


def test_the_workers_default_policy_path_is_the_default_policy() -> None:
    policy = load_policy(REPO / Settings.model_fields["policy_path"].default)
    assert policy.name == "default"


def test_the_default_policy_has_the_documented_taxonomy_and_actions() -> None:
    policy = load_policy(REPO / "policies" / "default.yaml")
    assert policy.taxonomy.safe == "safe"
    assert policy.taxonomy.categories == ("spam", "harassment", "hate", "sexual", "violence", "self_harm")
    assert (policy.categories["self_harm"].action, policy.categories["self_harm"].tier) == ("review", "urgent")
    assert policy.categories["spam"].tier == "deferrable"
    assert policy.fallback == "small_model"
    # The sample post (spam 0.62) is borderline under the default policy: it goes to the frontier.
    assert decide(SCORES, policy).kind == "escalate"


def test_the_strict_policy_is_stricter_than_the_default() -> None:
    default = load_policy(REPO / "policies" / "default.yaml")
    strict = load_policy(REPO / "policies" / "strict.yaml")
    assert strict.taxonomy == default.taxonomy
    assert strict.fallback == "hold"
    for name, band in strict.categories.items():
        assert band.block_at < default.categories[name].block_at
        assert band.allow_below < default.categories[name].allow_below

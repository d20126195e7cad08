"""The proposed policy file: only band numbers change, comments and layout stay, the result loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.evaluation.bands import Edges, with_bands
from pipeline.evaluation.policy_text import format_threshold, propose_policy, rewrite_bands
from pipeline.policy import Policy, load_policy, parse_policy

POLICIES = sorted((Path(__file__).resolve().parents[2] / "policies").glob("*.yaml"))


def new_bands(policy: Policy) -> dict[str, Edges]:
    return {name: Edges(round(band.allow_below / 2, 3), round(min(1.0, band.block_at + 0.037), 3))
            for name, band in policy.categories.items()}


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_only_band_numbers_change_and_the_proposed_file_loads(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    policy = load_policy(path)
    bands = new_bands(policy)
    proposed = propose_policy(text, policy, bands, live_name=str(path), proposed_name="p.proposed.yaml")

    out = tmp_path / "p.proposed.yaml"
    out.write_text(proposed.text, encoding="utf-8")
    loaded = load_policy(out)
    assert {n: Edges(b.allow_below, b.block_at) for n, b in loaded.categories.items()} == bands
    assert loaded.version == with_bands(policy, bands).version == proposed.policy.version
    assert loaded.model_dump(exclude={"categories"}) == policy.model_dump(exclude={"categories"})

    old_lines, new_lines = text.splitlines(), proposed.text.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 2 * len(bands)
    for old, new in changed:  # same key, same comment, another number
        key, _, rest_old = old.partition(":")
        assert key.strip() in {"allow_below", "block_at"} and new.startswith(key + ":")
        assert rest_old.split("#", 1)[1] == new.split("#", 1)[1]

    diff_lines = [line for line in proposed.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(diff_lines) == 4 * len(bands)
    assert all("allow_below:" in line or "block_at:" in line for line in diff_lines)


def test_unchanged_bands_give_an_empty_diff() -> None:
    path = POLICIES[0]
    policy = load_policy(path)
    same = {n: Edges(b.allow_below, b.block_at) for n, b in policy.categories.items()}
    proposed = propose_policy(path.read_text(encoding="utf-8"), policy, same, live_name="a", proposed_name="b")
    assert proposed.diff == ""


def test_flow_style_bands_are_rewritten_in_place() -> None:
    path = POLICIES[0]
    text = path.read_text(encoding="utf-8")
    start = text.index("  spam:  #")
    end = text.index("  harassment:")
    flow = "  spam: {allow_below: 0.30, block_at: 0.90, action: block}  # one line\n"
    text = text[:start] + flow + text[end:]
    rewritten = rewrite_bands(text, {"spam": Edges(0.125, 0.8)})
    assert "  spam: {allow_below: 0.125, block_at: 0.80, action: block}  # one line\n" in rewritten
    assert parse_policy(rewritten).categories["spam"].allow_below == 0.125


def test_thresholds_are_written_as_ops_write_them() -> None:
    assert format_threshold(0.3) == "0.30"
    assert format_threshold(0.125) == "0.125"
    assert format_threshold(1.0) == "1.00"
    assert format_threshold(0.0) == "0.00"

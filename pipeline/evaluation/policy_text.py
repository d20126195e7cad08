"""Write proposed band numbers into a copy of a policy's YAML text, and the diff for ops to review.

The text is edited, not re-dumped: the position of every ``allow_below`` / ``block_at`` value comes from the
YAML node tree, and only those characters are replaced, so comments, key order, quoting and layout (block or
flow style) stay exactly as ops wrote them. The result is parsed again with the policy loader and compared
with the intended policy, so a proposal that changed anything but band numbers can never be written.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from pipeline.evaluation.bands import Edges, with_bands
from pipeline.policy import Policy, parse_policy

BAND_KEYS = ("allow_below", "block_at")


@dataclass(frozen=True, slots=True)
class ProposedPolicy:
    text: str
    policy: Policy
    diff: str
    """Unified diff from the live file to the proposed one; empty when no number changed."""


def format_threshold(value: float) -> str:
    """Two decimals when they suffice (as ops write them), else three: ``0.3`` -> ``0.30``, ``0.125`` -> ``0.125``."""
    two = f"{value:.2f}"
    return two if abs(float(two) - value) < 1e-9 else f"{value:.3f}"


def rewrite_bands(text: str, bands: Mapping[str, Edges]) -> str:
    """``text`` with each named category's ``allow_below`` and ``block_at`` values replaced."""
    spans: list[tuple[int, int, str]] = []
    categories = _child(yaml.compose(text, Loader=yaml.SafeLoader), "categories")
    for category, edges in bands.items():
        band = _child(categories, category)
        for key in BAND_KEYS:
            node = _child(band, key)
            spans.append((node.start_mark.index, node.end_mark.index, format_threshold(getattr(edges, key))))
    for start, end, value in sorted(spans, reverse=True):
        text = text[:start] + value + text[end:]
    return text


def propose_policy(text: str, policy: Policy, bands: Mapping[str, Edges], *, live_name: str,
                   proposed_name: str) -> ProposedPolicy:
    """The proposed file's text, its validated policy and the diff; raises if the rewrite changed anything but
    the band numbers (a bug, not a user error)."""
    new_text = rewrite_bands(text, bands)
    proposed = parse_policy(new_text, file=proposed_name)
    intended = with_bands(policy, bands)
    if proposed.version != intended.version:
        raise AssertionError(f"rewriting the bands of {live_name} changed more than the band numbers")
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=live_name, tofile=proposed_name))
    return ProposedPolicy(new_text, proposed, diff)


def _child(node: yaml.Node | None, key: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key and isinstance(value_node, yaml.Node):
                return value_node
    raise ValueError(f"no mapping key {key!r} in the policy text")  # the text was validated: cannot happen

"""How the frontier labels a loop gathers join the training set. Pure.

Escalated posts are a biased sample: the small model was unsure about them, so they crowd the band around the
thresholds and leave out the clear cases. Training on them alone shifts the model's idea of the class mix and
forgets the easy posts. Inverse-propensity weighting cannot repair it: a post the policy settles outright has
escalation propensity 0, so the posts that would need the largest weights are never labelled at all. What the
trainer does instead:

    seed        the labelled seed (a random sample of the traffic) is always kept, whole: the anchor of the mix
    audits      audit labels are a seeded random share of the small model's verdicts (known propensity, unbiased):
                always kept
    escalations capped at ``cap`` of the training set (``cap_share``): when there are more, a seeded random sample
                of them (the same sample on a resumed run) is used; ``all`` keeps every one

The trainer's inverse-frequency class weights then rebalance the labels of what is kept.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.training.data import Example

Mixing = Literal["cap", "all"]
MIXINGS: tuple[Mixing, ...] = ("cap", "all")


@dataclass(frozen=True, slots=True)
class LearnedLabel:
    """A label the frontier (or the history standing in for it) produced in a window."""

    id: str
    text: str
    label: str
    kind: Literal["escalation", "audit"]
    round: int


@dataclass(frozen=True, slots=True)
class Mix:
    examples: list[Example]
    seed: int
    escalations: int
    escalations_dropped: int
    audits: int


def mix_training(seed: Sequence[Example], learned: Sequence[LearnedLabel], *, mixing: Mixing = "cap",
                 cap_share: float = 0.5, rng_seed: int = 0) -> Mix:
    """The training set: the seed, every audit label, and the escalation labels (capped, see the module docstring).
    A post labelled twice (escalated and audited cannot both happen; a repeat of an id can) counts once, newest."""
    if mixing not in MIXINGS:
        raise ConfigError(f"--mixing {mixing!r}: use one of {', '.join(MIXINGS)}")
    if not 0.0 < cap_share < 1.0:
        raise ConfigError(f"--cap-share {cap_share} must be between 0 and 1 (exclusive): e.g. 0.5")
    newest: dict[str, LearnedLabel] = {}
    for label in learned:
        newest[label.id] = label
    audits = [x for x in newest.values() if x.kind == "audit"]
    escalations = [x for x in newest.values() if x.kind == "escalation"]
    kept = escalations
    if mixing == "cap":
        others = len(seed) + len(audits)
        room = int(cap_share * others / (1.0 - cap_share))  # escalations / (others + escalations) <= cap_share
        if len(escalations) > room:
            kept = random.Random(rng_seed).sample(escalations, room)
            kept.sort(key=escalations.index)
    line = len(seed)
    examples = list(seed)
    for x in [*audits, *kept]:
        line += 1
        examples.append(Example(text=x.text, label=x.label, line=line))
    return Mix(examples=examples, seed=len(seed), escalations=len(kept),
               escalations_dropped=len(escalations) - len(kept), audits=len(audits))

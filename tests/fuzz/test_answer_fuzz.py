"""The frontier answer checker under fuzzing: any reply gives a Judgement that fits the policy, or a short problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline import codec
from pipeline.adjudication.answer import AnswerProblem, Judgement, parse_answer
from pipeline.adjudication.openai_chat import _arguments
from pipeline.adjudication.prompt import DECISIONS, RATIONALE_MAX_CHARS, TOOL_NAME
from pipeline.policy import Policy, load_policy
from tests.fuzz.strategies import NUMBERS, json_values

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
POLICIES = [load_policy(path) for path in sorted((REPO / "policies").glob("*.yaml"))]
DETAIL_MAX_CHARS = 1_000
KINDS = {"refusal", "no_tool_call", "out_of_schema", "truncated"}

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXTS = st.text(st.characters() | SURROGATES, max_size=50) | st.integers(0, 2_000_000).map(lambda n: "x" * n)


def _labels(policy: Policy) -> list[str]:
    return [policy.taxonomy.safe, *policy.taxonomy.categories]


def _near(values: list[str]) -> st.SearchStrategy[Any]:
    """The right values and their near misses: case, spaces, hyphens, other words, other types."""
    right = st.sampled_from(values)
    return (right | right.map(str.upper) | right.map(lambda v: f" {v}") | right.map(lambda v: v.replace("_", "-"))
            | right.map(lambda v: [v]) | right.map(lambda v: {"name": v}) | TEXTS | NUMBERS | st.none() | st.booleans())


def _answers(policy: Policy) -> st.SearchStrategy[Any]:
    shaped = st.fixed_dictionaries(
        {"category": _near(_labels(policy)), "decision": _near(list(DECISIONS)), "rationale": TEXTS | json_values()},
        optional={"confidence": json_values(), "Category": st.text(max_size=5), "": st.none()},
    )
    dropped = shaped.flatmap(lambda a: st.sets(st.sampled_from(sorted(a))).map(lambda gone: {
        k: v for k, v in a.items() if k not in gone}))
    return shaped | dropped | json_values() | TEXTS


def _blocks(policy: Policy) -> st.SearchStrategy[Any]:
    tool_use = st.fixed_dictionaries(
        {"type": st.just("tool_use"), "name": st.just(TOOL_NAME) | _near([TOOL_NAME])},
        optional={"id": st.text(max_size=5), "input": _answers(policy)},
    )
    text = st.fixed_dictionaries({"type": st.just("text"), "text": TEXTS})
    other = st.dictionaries(st.text(max_size=6), json_values(), max_size=3)
    return tool_use | text | other | json_values()  # the last: blocks that are not even objects


STOP_REASONS = st.none() | st.sampled_from(["tool_use", "end_turn", "max_tokens", "refusal", "stop_sequence"]) | TEXTS


def _check(result: Judgement | AnswerProblem, policy: Policy) -> None:
    if isinstance(result, AnswerProblem):
        assert result.kind in KINDS
        assert len(result.detail) <= DETAIL_MAX_CHARS
        return
    assert isinstance(result, Judgement)
    assert result.category in _labels(policy) and result.decision in DECISIONS
    assert result.category != policy.taxonomy.safe or result.decision == "allow"
    assert result.rationale.strip() and len(result.rationale) <= RATIONALE_MAX_CHARS
    codec.dumps({"rationale": result.rationale})  # it goes into a Verdict and a Label


@given(data=st.data(), policy=st.sampled_from(POLICIES), stop_reason=STOP_REASONS)
def test_any_reply_gives_a_judgement_or_a_problem(data: st.DataObject, policy: Policy, stop_reason: Any) -> None:
    content = data.draw(st.lists(_blocks(policy), max_size=4))
    _check(parse_answer(content, stop_reason, policy), policy)


@given(policy=st.sampled_from(POLICIES), data=st.data(), stop_reason=STOP_REASONS)
def test_near_miss_answers_give_a_judgement_or_a_problem(policy: Policy, data: st.DataObject, stop_reason: Any) -> None:
    answer = data.draw(_answers(policy))
    _check(parse_answer([{"type": "tool_use", "name": TOOL_NAME, "input": answer}], stop_reason, policy), policy)


@given(policy=st.sampled_from(POLICIES), data=st.data(), rationale=TEXTS.filter(str.strip))
@example(policy=POLICIES[0], data=None, rationale="Fine.\ud800")  # a lone surrogate: the verdict could not be encoded
def test_a_well_formed_answer_is_always_accepted(policy: Policy, data: st.DataObject | None, rationale: str) -> None:
    category, decision = ("spam", "block") if data is None else data.draw(st.sampled_from(
        [(policy.taxonomy.safe, "allow")] + [(c, d) for c in policy.taxonomy.categories for d in DECISIONS]))
    content = [{"type": "text", "text": "thinking"}, {"type": "tool_use", "id": "t", "name": TOOL_NAME,
                                                      "input": {"category": category, "decision": decision,
                                                                "rationale": rationale}}]
    result = parse_answer(content, "tool_use", policy)
    assert isinstance(result, Judgement) and (result.category, result.decision) == (category, decision)
    _check(result, policy)


_DEEP = st.integers(1, 200_000).map(lambda n: '{"category": ' + "[" * n + "]" * n + "}")


@given(arguments=st.text() | _DEEP | st.builds(codec.dumps, json_values()).map(bytes.decode))
@example(arguments="[" * 100_000)  # past json's nesting limit: RecursionError escaped the OpenAI adjudicator
@example(arguments='{"category": "spam", "decision": "block", "rationale": "Fine.\\ud800"}')
def test_openai_tool_arguments_of_any_text_give_a_judgement_or_a_problem(arguments: str) -> None:
    policy = POLICIES[0]
    content = [{"type": "tool_use", "id": "t", "name": TOOL_NAME, "input": _arguments(arguments)}]
    _check(parse_answer(content, "tool_use", policy), policy)

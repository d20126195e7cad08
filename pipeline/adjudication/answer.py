"""Checking the frontier model's answer. Pure: what came back in, a :class:`Judgement` or the problem out.

A reply is accepted only when it is exactly one call of our tool whose input fits the policy: a category of
the taxonomy (or the safe class), a decision, a rationale, nothing else, and ``safe`` only with ``allow``.
Anything else (a refusal, plain text, a label the policy does not know, extra fields) is an
:class:`AnswerProblem`: the caller retries a bounded number of times, then applies the policy's fallback.
Whatever the reply holds, a problem's ``detail`` stays short (values are shown cut), and an accepted rationale
is text JSON can carry (a lone surrogate, which a JSON parser accepts as ``\\ud800``, becomes ``?``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.adjudication.prompt import DECISIONS, RATIONALE_MAX_CHARS, TOOL_NAME
from pipeline.policy import Policy

ProblemKind = Literal["refusal", "no_tool_call", "out_of_schema", "truncated"]
Decision = Literal["allow", "block", "review"]
_DECISION: dict[str, Decision] = {"allow": "allow", "block": "block", "review": "review"}
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict = 2, 80, 80, 4, 4


@dataclass(frozen=True, slots=True)
class Judgement:
    category: str
    decision: Decision
    rationale: str


@dataclass(frozen=True, slots=True)
class AnswerProblem:
    kind: ProblemKind
    detail: str


def parse_answer(content: Sequence[Mapping[str, Any]], stop_reason: str | None, policy: Policy
                 ) -> Judgement | AnswerProblem:
    """``content``: the reply's content blocks as plain dicts (``type``, and ``name``/``input`` for tool use)."""
    if stop_reason == "refusal":
        return AnswerProblem("refusal", "the model refused to answer")
    calls = [block for block in content if isinstance(block, Mapping) and block.get("type") == "tool_use"]
    if not calls:
        if stop_reason == "max_tokens":
            return AnswerProblem("truncated", "the answer hit max_tokens before the tool call")
        return AnswerProblem("no_tool_call", f"no {TOOL_NAME} call in the reply (stop_reason {_shown(stop_reason)})")
    if len(calls) > 1 or calls[0].get("name") != TOOL_NAME:
        names = ", ".join(_shown(c.get("name")) for c in calls[:4]) + (", ..." if len(calls) > 4 else "")
        return AnswerProblem("out_of_schema", f"expected one {TOOL_NAME} call, got {len(calls)}: {names}")
    answer = calls[0].get("input")
    if not isinstance(answer, Mapping):
        return AnswerProblem("out_of_schema", "the tool input is not an object")
    return _check(answer, policy)


def _check(answer: Mapping[str, Any], policy: Policy) -> Judgement | AnswerProblem:
    if extra := sorted(_shown(key) for key in answer if key not in {"category", "decision", "rationale"}):
        return AnswerProblem("out_of_schema", f"unexpected fields {', '.join(extra[:4])}"
                                              f"{', ...' if len(extra) > 4 else ''}")
    category, decision, rationale = answer.get("category"), answer.get("decision"), answer.get("rationale")
    known = (policy.taxonomy.safe, *policy.taxonomy.categories)
    if not isinstance(category, str) or category not in known:
        return AnswerProblem("out_of_schema", f"category {_shown(category)} is not one of {', '.join(known)}")
    if not isinstance(decision, str) or decision not in _DECISION:
        return AnswerProblem("out_of_schema", f"decision {_shown(decision)} is not one of {', '.join(DECISIONS)}")
    if not isinstance(rationale, str) or not rationale.strip():
        return AnswerProblem("out_of_schema", "the rationale is missing or empty")
    if category == policy.taxonomy.safe and decision != "allow":
        return AnswerProblem("out_of_schema", f"category {category!r} with decision {decision!r}: safe is allowed")
    # The rationale goes into a Verdict and a Label: cut it, and make it text JSON can carry.
    text = rationale.strip()[:RATIONALE_MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    return Judgement(category, _DECISION[decision], text)


def _shown(value: object) -> str:
    """A value as it appears in a problem's detail: repr, cut short however large or deep it is."""
    try:
        return _SHOW.repr(value)
    except ValueError:  # an int too long for repr (past sys.get_int_max_str_digits)
        return f"<{type(value).__name__}>"

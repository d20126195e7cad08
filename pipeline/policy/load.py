"""Read a policy YAML file into a :class:`Policy`, or fail with every problem on its own line.

Each problem becomes a :class:`PolicyIssue`: the file, the dotted field (``categories.hate.block_at``),
what is wrong and how to fix it, and the line. Lines come from the YAML node tree (``compose``), which
keeps the position of every key; the data pydantic validates is constructed from that same tree.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pipeline.errors import PolicyError, PolicyIssue
from pipeline.policy.model import RULE_ERROR, Loc, Policy

EXAMPLE = "policies/default.yaml"


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file at ``path``; raises :class:`PolicyError` listing every issue."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(file, "the path does not exist: check it for typos (the workers read "
                          "MODCASCADE_POLICY_PATH)") from None
    except IsADirectoryError:
        raise _fail(file, "the path is a directory: name a policy file (`policy check` accepts directories)") from None
    except UnicodeDecodeError as exc:
        raise _fail(file, f"the file is not UTF-8 text (bad byte at offset {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise _fail(file, f"the file cannot be read ({exc.strerror}): check its permissions") from None
    return parse_policy(text, file=file)


def parse_policy(text: str, file: str = "<string>") -> Policy:
    """Validate policy YAML ``text``; ``file`` names it in the issues."""
    try:
        loader = _Loader(text)  # checks for unprintable characters up front
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, file) from None

    if root is None:
        raise _fail(file, f"the file is empty: write a policy (see {EXAMPLE})", line=1)
    lines: dict[Loc, int] = {}
    issues = _index_lines(root, (), lines, file, set())
    if not isinstance(data, dict):
        raise _fail(file, f"the document is {_describe(data)}, not a mapping: a policy is a mapping with the keys "
                          f"{', '.join(Policy.model_fields)} (see {EXAMPLE})", line=root.start_mark.line + 1)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issue(error, file, lines) for error in exc.errors())
    if issues:
        raise PolicyError(sorted(issues, key=lambda i: (i.line or 0, i.field)))
    return policy


MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a policy file may have (a policy needs four)."""
MAX_ALIASES = 100
"""Most aliases (``*name``) a policy file may use: policies need none, and aliases to aliases can make a small
file stand for a huge or deeply nested document."""


class _ValueProblem(yaml.MarkedYAMLError):
    """A node PyYAML would build into something unusable or fail on with a non-YAML error; ``problem`` says the fix."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds on depth and aliases, and its value errors (an int too long to convert,
    a timestamp that is no date) reported as YAML errors at the node's line rather than escaping as ValueError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _ValueProblem(problem=f"more than {MAX_ALIASES} aliases: write the values out",
                                    problem_mark=self.get_mark())
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _ValueProblem(problem=f"mappings and lists nested deeper than {MAX_DEPTH} levels: a policy "
                                            f"needs a few (see {EXAMPLE})", problem_mark=self.get_mark())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
            # PyYAML's constructors fail this way on scalars they cannot build, mostly ones with an explicit tag
            # (`!!int ''`: IndexError, `!!bool x`: KeyError, `!!timestamp x`: AttributeError).
            shown = _describe(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            kind = str(node.tag).rsplit(":", 1)[-1]
            # Python's advice after ';' (sys.set_int_max_str_digits) is not for ops.
            why = f" ({str(exc).split(';')[0]})" if isinstance(exc, ValueError | OverflowError) else ""
            raise _ValueProblem(problem=f"{shown} is not a valid {kind}{why}: fix the value (policies use no YAML "
                                        "tags), or quote it to make it text",
                                problem_mark=node.start_mark) from None


def _fail(file: str, message: str, line: int | None = None) -> PolicyError:
    return PolicyError([PolicyIssue(file, "", message, line)])


def _syntax_error(exc: yaml.YAMLError, text: str, file: str) -> PolicyError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return _fail(file, f"invalid YAML: unprintable character #x{exc.character:04x}: remove it", line)
    if isinstance(exc, _ValueProblem):
        return _fail(file, f"invalid YAML: {exc.problem}", line=exc.problem_mark.line + 1 if exc.problem_mark else None)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        detail = f"{exc.context}, {exc.problem}" if exc.context else str(exc.problem)
        fix = ("write plain values: policies use no YAML tags" if isinstance(exc, yaml.constructor.ConstructorError)
               else "fix the syntax (indentation, quoting, ':' after keys)")
        return _fail(file, f"invalid YAML: {detail}: {fix}", line=mark.line + 1 if mark else None)
    return _fail(file, f"invalid YAML: {' '.join(str(exc).split())}: fix the file")


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str, seen: set[int]) -> list[PolicyIssue]:
    """Record the 1-based line of every key and list item under ``node``; report duplicate keys.

    PyYAML keeps the last of two equal keys without a word; for a file ops edit by hand that hides a
    mistake, so it is an issue here.
    """
    lines.setdefault(loc, node.start_mark.line + 1)
    issues: list[PolicyIssue] = []
    # An alias names a node indexed already (at its anchor, or an enclosing one: a cycle, which validation
    # reports). Indexing it again would find nothing new, and aliases of aliases would make it exponential.
    if id(node) in seen:
        return issues
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue  # merge keys and complex keys have no field path of their own
            child = (*loc, key_node.value)
            line = key_node.start_mark.line + 1
            if child in lines:
                issues.append(PolicyIssue(file, _dotted(child), f"duplicate key '{key_node.value}' (first at line "
                                                                f"{lines[child]}): keep one of them", line))
                continue
            lines[child] = line
            issues.extend(_index_lines(value_node, child, lines, file, seen))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            issues.extend(_index_lines(item, (*loc, i), lines, file, seen))
    return issues


def _issue(error: ErrorDetails, file: str, lines: Mapping[Loc, int]) -> PolicyIssue:
    loc: Loc = tuple(error["loc"])
    return PolicyIssue(file, _dotted(loc), _message(error, loc), _line(loc, lines))


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc if part != "[key]")


def _line(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    # A missing key has no line of its own: point at the nearest enclosing key that exists.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == RULE_ERROR:
        return error["msg"]
    if kind == "extra_forbidden":
        key, allowed = str(loc[-1]), _keys_at(loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"unknown key '{key}' (did you mean '{close[0]}'?): fix the spelling or remove it"
        return f"unknown key '{key}': remove it (allowed here: {', '.join(allowed)})"
    if kind == "missing":
        described = _description(loc)
        return f"missing required key '{loc[-1]}'{f' ({described})' if described else ''}: add it (see {EXAMPLE})"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping of keys, got {_describe(value)}: write 'key: value' lines indented under it"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{_describe(value)} is not allowed{hint}: use one of {', '.join(repr(c) for c in choices)}"
    return f"{_describe(value)} is invalid: {error['msg'].replace('Input should', 'it should')}"


def _describe(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The section model a location points into, following field types through dicts and lists."""
    current: Any = Policy
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = None if field is None else field.annotation
        elif typing.get_origin(current) in {dict, tuple, list}:
            args = typing.get_args(current)
            current = args[-1] if typing.get_origin(current) is dict else args[0]
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _keys_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _description(loc: Loc) -> str | None:
    model = _model_at(loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model else None
    return field.description if field else None

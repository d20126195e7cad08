"""The policy loader under fuzzing: any YAML or bytes in, a Policy or a PolicyError naming the file out."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.errors import PolicyError
from pipeline.policy import Policy, load_policy, parse_policy
from tests.fuzz.strategies import NUMBERS, json_values

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted((REPO / "policies").glob("*.yaml"))
POLICY_TEXTS = {path.name: path.read_text(encoding="utf-8") for path in POLICY_FILES}
POLICY_DATA = {name: yaml.safe_load(text) for name, text in POLICY_TEXTS.items()}
FILE = "fuzzed-policy.yaml"


def _policy_or_error(text: str, file: str = FILE) -> Policy | PolicyError:
    """Parse, allowing only PolicyError; its every issue names the file, and so does its message."""
    try:
        return parse_policy(text, file=file)
    except PolicyError as exc:
        assert exc.issues
        assert all(issue.file == file and issue.message for issue in exc.issues)
        assert str(exc).count(file) == len(exc.issues)
        return exc


def test_the_real_policies_load() -> None:  # the mutations below start from valid documents
    for name, text in POLICY_TEXTS.items():
        assert isinstance(parse_policy(text, name), Policy)


# -- generated documents --------------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=30) | st.dates() | st.datetimes() | st.binary(
    max_size=10)
KEYS = st.text(max_size=15) | st.integers() | st.booleans() | st.none() | st.sampled_from(
    ["name", "description", "taxonomy", "categories", "safe", "allow_below", "block_at", "action", "tier", "<<"])
DOCUMENTS = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


@given(document=DOCUMENTS)
def test_any_yaml_document_gives_a_policy_or_a_policy_error(document: Any) -> None:
    _policy_or_error(yaml.safe_dump(document, allow_unicode=True))


# Raw YAML text from the characters and words that steer the parser: indicators, tags, anchors, timestamps.
_YAML_TOKENS = st.sampled_from([
    "\n", "  ", "- ", ": ", "{", "}", "[", "]", ",", "? ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!str ",
    "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ", "!custom ", "%YAML 1.1\n", "---\n", "...\n",
    "|\n", ">-\n", "'", '"', "#", "\t", "\x00", "\x85", "\ufeff", "2001-13-45", "2001-02-30 10:00:00", "1:20:30",
    "0x1F", "0o17", "0b101", ".nan", "-.inf", "1" * 5000, "9" * 4301, "1e400", "~", "null", "yes", "name",
    "taxonomy", "categories", "safe: safe", "block_at: ", "allow_below: ", "hate", "\\u0000", "\\x",
])
YAML_TEXT = st.lists(_YAML_TOKENS | st.text(max_size=5), max_size=40).map("".join)


@given(text=YAML_TEXT)
@example(text="name: " + "1" * 5000)  # int past Python's int-from-string limit: ValueError leaked
@example(text="name: 2001-13-45")  # a timestamp that is not a date: ValueError leaked
@example(text="name: [" * 3000)  # unclosed: a syntax error before any depth
@example(text="a: " + "[" * 3000 + "]" * 3000)  # deep nesting: RecursionError leaked
@example(text="".join(" " * i + f"k{i}:\n" for i in range(1200)))
@example(text="fallback: *a")  # undefined alias
@example(text="!!int ")  # found by the long profile: IndexError leaked from PyYAML's int constructor
def test_any_text_gives_a_policy_or_a_policy_error(text: str) -> None:
    _policy_or_error(text)


def test_alias_bombs_are_read_in_linear_time_or_refused() -> None:
    # Found by fuzzing: a chain of 2,000 aliases took ~15 s and ended in RecursionError, and a "billion laughs"
    # (each level naming the one before three times) tripled the time per level. Each node is now indexed once
    # (30 levels of 3 aliases: 3**30 paths, read at once), and a file may use at most 100 aliases.
    laughs = "\n".join(["a0: &a0 {k: 1, j: 2}",
                        *(f"a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}, z: *a{i - 1}}}" for i in range(1, 31))])
    error = _policy_or_error(laughs)
    assert isinstance(error, PolicyError) and "unknown key 'a30'" in str(error)
    chain = "\n".join(["a0: &a0 [1]", *(f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 2000)), "fallback: *a1999"])
    error = _policy_or_error(chain)
    assert isinstance(error, PolicyError) and "more than 100 aliases" in str(error)


@pytest.mark.parametrize(("text", "message"), [
    ("name: " + "1" * 5000, "invalid YAML"),
    ("name: 2001-13-45", "month must be in 1..12"),
    ("a: " + "[" * 3000 + "]" * 3000, "nested deeper than"),
    # Explicit tags on values they cannot build: IndexError, KeyError and AttributeError leaked from PyYAML.
    ("name: !!int ''", "'' is not a valid int"),
    ("name: !!float", "'' is not a valid float"),
    ("name: !!bool maybe", "'maybe' is not a valid bool"),
    ("name: !!timestamp soon", "'soon' is not a valid timestamp"),
])
def test_values_yaml_cannot_build_are_policy_errors_with_a_line(text: str, message: str) -> None:
    error = _policy_or_error(text)
    assert isinstance(error, PolicyError)
    assert message in str(error) and error.issues[0].line == 1


# -- mutations of the real policies ---------------------------------------------------------------------------

def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path and list index in a document (the document itself is ``()``)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


OUT_OF_RANGE = st.sampled_from([-0.1, 1.5, -1, 2, float("nan"), float("inf"), -float("inf"), 10**400 // 10**390,
                                "0.5", "", " ", "HATE", "self-harm", [], {}, [[]], None, True])
MUTATIONS = st.sampled_from(["remove", "rename", "retype", "out_of_range", "duplicate"])


@given(name=st.sampled_from(sorted(POLICY_DATA)), data=st.data(), mutations=st.lists(MUTATIONS, min_size=1, max_size=4))
def test_mutated_policies_give_a_policy_or_a_policy_error(name: str, data: st.DataObject, mutations: list[str]) -> None:
    document = copy.deepcopy(POLICY_DATA[name])
    for mutation in mutations:
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent, last = _parent(document, path), path[-1]
        if mutation == "remove":
            del parent[last]
        elif mutation == "rename" and isinstance(parent, dict):
            parent[data.draw(KEYS)] = parent.pop(last)
        elif mutation == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
        elif mutation == "out_of_range":
            parent[last] = data.draw(OUT_OF_RANGE)
        else:
            parent[last] = data.draw(SCALARS | json_values())
    _policy_or_error(yaml.safe_dump(document, allow_unicode=True))


@given(name=st.sampled_from(sorted(POLICY_TEXTS)), data=st.data(), edits=st.integers(1, 5))
def test_policies_with_text_edits_give_a_policy_or_a_policy_error(name: str, data: st.DataObject, edits: int) -> None:
    text = POLICY_TEXTS[name]
    for _ in range(edits):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 20)))
        text = text[:start] + data.draw(_YAML_TOKENS | st.text(max_size=3)) + text[end:]
    _policy_or_error(text)


# -- files ----------------------------------------------------------------------------------------------------

@given(content=st.binary(max_size=300) | YAML_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
       | st.sampled_from(list(POLICY_TEXTS.values())).map(lambda t: b"\xef\xbb\xbf" + t.encode()))
@example(content=b"\xff\xfe")
@example(content=b"")
def test_any_file_gives_a_policy_or_a_policy_error_naming_the_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policy.yaml"
        path.write_bytes(content)
        try:
            load_policy(path)
        except PolicyError as exc:
            assert exc.issues and all(issue.file == str(path) for issue in exc.issues)
            assert str(path) in str(exc)

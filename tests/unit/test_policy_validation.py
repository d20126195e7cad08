"""A bad policy file fails with one line per problem: file, line, dotted field, what is wrong and the fix.

Each case edits the shipped default policy the way an operator might get it wrong.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.errors import PolicyError
from pipeline.policy import check_files, load_policy, parse_policy, run_check

DEFAULT = (Path(__file__).resolve().parents[2] / "policies" / "default.yaml").read_text(encoding="utf-8")


def edit(old: str, new: str) -> str:
    """The default policy with the first ``old`` replaced by ``new``."""
    assert old in DEFAULT, old
    return DEFAULT.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    """1-based line where ``needle`` first occurs."""
    return text[: text.index(needle)].count("\n") + 1


def issue_lines(tmp_path: Path, text: str) -> tuple[str, list[str]]:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    lines = [str(issue) for issue in caught.value.issues]
    assert str(caught.value) == "\n".join(lines)  # the error prints one issue per line
    return str(path), lines


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    field: str
    line: Callable[[str], int]  # the expected line, found in the case's text
    message: str  # regex


CASES = [
    Case(
        "unknown key, with a did-you-mean",
        edit("    tier: urgent  # adjudication queue", "    teir: urgent  # adjudication queue"),
        "categories.harassment.teir",
        lambda text: line_of(text, "teir:"),
        r"unknown key 'teir' \(did you mean 'tier'\?\): fix the spelling or remove it",
    ),
    Case(
        "unknown top-level key",
        edit("fallback: small_model", "fallbak: small_model"),
        "fallbak",
        lambda text: line_of(text, "fallbak:"),
        r"unknown key 'fallbak' \(did you mean 'fallback'\?\)",
    ),
    Case(
        "inverted band",
        edit("    block_at: 0.80", "    block_at: 0.10"),
        "categories.hate.block_at",
        lambda text: line_of(text, "block_at: 0.10"),
        r"block_at 0.1 is below allow_below 0.2: block_at must be >= allow_below",
    ),
    Case(
        "band for a category missing from the taxonomy",
        edit("  violence:  #", "  spamm:\n    allow_below: 0.3\n    block_at: 0.9\n    action: block\n  violence:  #"),
        "categories.spamm",
        lambda text: line_of(text, "  spamm:"),
        r"category 'spamm' is not in taxonomy.categories \[spam, harassment, hate, sexual, violence, self_harm\] "
        r"\(did you mean 'spam'\?\): add it there or remove this band",
    ),
    Case(
        "taxonomy category without a band",
        edit("self_harm]", "self_harm, scam]"),
        "categories.scam",
        lambda text: line_of(text, "\ncategories:") + 1,
        r"taxonomy category 'scam' has no band: add categories.scam with allow_below, block_at and action",
    ),
    Case(
        "safe class listed as a harmful category",
        edit("[spam,", "[safe, spam,"),
        "taxonomy.categories.0",
        lambda text: line_of(text, "[safe, spam,"),
        r"'safe' is the safe class: remove it from the harmful categories",
    ),
    Case(
        "YAML syntax error",
        edit("  safe: safe  #", "  safe: safe: yes  #"),
        "<document>",
        lambda text: line_of(text, "safe: safe: yes"),
        r"invalid YAML: mapping values are not allowed here: fix the syntax",
    ),
    Case("empty file", "", "<document>", lambda text: 1, r"the file is empty: write a policy"),
    Case("only comments", "# nothing yet\n", "<document>", lambda text: 1, r"the file is empty"),
    Case(
        "not a mapping",
        "- name: default\n",
        "<document>",
        lambda text: 1,
        r"the document is a list, not a mapping: a policy is a mapping with the keys name, description, taxonomy",
    ),
    Case(
        "probability above 1",
        edit("    allow_below: 0.30", "    allow_below: 1.5"),
        "categories.spam.allow_below",
        lambda text: line_of(text, "allow_below: 1.5"),
        r"1.5 is invalid: it should be less than or equal to 1",
    ),
    Case(
        "negative price",
        edit("output_usd_per_mtok: 15.00", "output_usd_per_mtok: -15.00"),
        "prices.frontier.output_usd_per_mtok",
        lambda text: line_of(text, "output_usd_per_mtok"),
        r"-15.0 is invalid: it should be greater than or equal to 0",
    ),
    Case(
        "zero output tokens",
        edit("max_output_tokens: 400", "max_output_tokens: 0"),
        "adjudication.max_output_tokens",
        lambda text: line_of(text, "max_output_tokens"),
        r"0 is invalid: it should be greater than 0",
    ),
    Case(
        "misspelt action",
        edit("    action: review", "    action: reveiw"),
        "categories.self_harm.action",
        lambda text: line_of(text, "action: reveiw"),
        r"'reveiw' is not allowed \(did you mean 'review'\?\): use one of 'block', 'review'",
    ),
    Case(
        "a name that is not a lowercase identifier",
        edit("  safe: safe", "  safe: Safe"),
        "taxonomy.safe",
        lambda text: line_of(text, "safe: Safe"),
        r"'Safe' is not a valid name: use lowercase letters, digits and underscores",
    ),
    Case(
        "missing key",
        edit("    action: block  # decision at or above block_at: block or review\n    tier: deferrable",
             "    tier: deferrable"),
        "categories.spam.action",
        lambda text: line_of(text, "  spam:"),
        r"missing required key 'action' \('block' or 'review': the decision at or above block_at\): add it",
    ),
    Case(
        "duplicate key",
        edit("fallback: small_model", "fallback: hold\nfallback: small_model"),
        "fallback",
        lambda text: line_of(text, "fallback: small_model"),
        r"duplicate key 'fallback' \(first at line \d+\): keep one of them",
    ),
    Case(
        "blank guidelines",
        re.sub(r"guidelines: \|(.*\n)(    .*\n|\n)*", "guidelines: ' '\n", DEFAULT, count=1),
        "adjudication.guidelines",
        lambda text: line_of(text, "guidelines:"),
        r"is blank: write the text",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_invalid_policy_names_file_line_field_and_fix(tmp_path: Path, case: Case) -> None:
    file, lines = issue_lines(tmp_path, case.text)
    prefix = f"{file}:{case.line(case.text)}: {case.field}: "
    matching = [line for line in lines if line.startswith(prefix)]
    assert matching, f"no issue starts with {prefix!r} in {lines}"
    assert any(re.search(case.message, line) for line in matching), matching


def test_a_missing_file_says_the_path_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}: <document>: the path does not exist: check it for typos (the workers read MODCASCADE_POLICY_PATH)"
    ]


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = (
        edit("  spam:  #", "  spam2:  #")  # a band outside the taxonomy, and spam left without a band
        .replace("    block_at: 0.80", "    block_at: 0.10", 1)  # an inverted band
        .replace("  model: claude", "  modle: claude", 1)  # a typo in another section
    )
    _, lines = issue_lines(tmp_path, text)
    fields = [line.split(": ")[1] for line in lines]
    assert fields == [
        "categories.spam",
        "categories.spam2",
        "categories.hate.block_at",
        "adjudication.model",
        "adjudication.modle",
    ]
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers)


def test_parse_policy_names_the_given_file() -> None:
    with pytest.raises(PolicyError, match=r"^ops/p.yaml:1: <document>: the file is empty"):
        parse_policy("", file="ops/p.yaml")


def test_an_equal_allow_below_and_block_at_is_valid_and_means_no_band() -> None:
    policy = parse_policy(edit("    block_at: 0.90", "    block_at: 0.30"))
    assert policy.categories["spam"].allow_below == policy.categories["spam"].block_at == 0.3


# -- version: a content hash ------------------------------------------------------------------------------------


def test_comments_whitespace_and_key_order_do_not_change_the_version() -> None:
    base = parse_policy(DEFAULT).version
    reworded = DEFAULT.replace("# scores below this are allowed", "# below: allow")
    reordered = edit("name: default  # policy name", "fallback: small_model\nname: default  # x").replace(
        "\nfallback: small_model  #", "\n#", 1
    )
    assert parse_policy(reworded).version == base
    assert parse_policy(edit("\nadjudication:", "\n\n\nadjudication:   ")).version == base
    assert parse_policy(reordered).version == base
    assert parse_policy(edit("block_at: 0.90", "block_at: 0.9000")).version == base


def test_any_value_change_changes_the_version() -> None:
    base = parse_policy(DEFAULT).version
    assert parse_policy(edit("block_at: 0.90", "block_at: 0.91")).version != base
    assert parse_policy(edit("You review user posts", "You moderate user posts")).version != base
    assert parse_policy(edit("self_harm]", "self_harm]").replace("[spam, harassment", "[harassment, spam")).version \
        != base  # taxonomy order breaks ties, so it is content


# -- modcascade policy check --------------------------------------------------------------------------------------


def test_check_prints_ok_with_name_and_version_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(DEFAULT, encoding="utf-8")
    out = io.StringIO()
    assert run_check([path], out) == 0
    assert out.getvalue() == f"OK {path} (policy default, version {parse_policy(DEFAULT).version})\n"
    assert check_files([path]) == []


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_check_prints_each_issue_on_one_line_and_exits_1(tmp_path: Path, case: Case) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(case.text, encoding="utf-8")
    out = io.StringIO()
    assert run_check([path], out) == 1
    expected = [str(issue) for issue in check_files([path])]
    assert expected
    assert out.getvalue().splitlines() == expected
    assert all(line.startswith(f"{path}:") for line in expected)


def test_check_expands_directories_and_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEFAULT, encoding="utf-8")
    (tmp_path / "b.yml").write_text("", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a policy", encoding="utf-8")
    out = io.StringIO()
    assert run_check([tmp_path], out) == 1
    assert out.getvalue().splitlines() == [
        f"OK {tmp_path / 'a.yaml'} (policy default, version {parse_policy(DEFAULT).version})",
        f"{tmp_path / 'b.yml'}:1: <document>: the file is empty: write a policy (see policies/default.yaml)",
    ]


def test_check_fails_on_a_missing_file_and_on_a_directory_without_policies(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_check([tmp_path / "missing.yaml", tmp_path], out) == 1
    assert out.getvalue().splitlines() == [
        f"{tmp_path / 'missing.yaml'}: <document>: the path does not exist: check it for typos "
        "(the workers read MODCASCADE_POLICY_PATH)",
        f"{tmp_path}: <document>: no *.yaml or *.yml files in this directory: name the policy files or their "
        "directory",
    ]


def test_check_with_nothing_to_check_exits_1() -> None:
    out = io.StringIO()
    assert run_check([], out) == 1
    assert out.getvalue() == "no policy files given: name files or directories\n"

"""PII scrubbing for the retraining dataset: emails, phone numbers, URLs and @handles become placeholders.

Pure and conservative: a pattern must look like the thing it replaces, so ordinary text survives (years,
prices, decimals, ranges, version numbers, ``e.g.``). What is kept on purpose, because it cannot be told
apart from ordinary numbers or words without context: seven-digit local numbers (``555-1234``), bare
domains with an uncommon top-level domain (``example.social``), and handles that start with a digit
(``@5pm`` is a time).

The kinds are applied in a fixed order, whatever order the policy lists them in: URLs first (they may hold
@ and digits), then handles, then emails (so ``@user@host.social`` is one handle), then phones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import get_args

from pipeline.policy.model import PiiKind

PLACEHOLDERS: dict[PiiKind, str] = {
    "urls": "[URL]",
    "handles": "[HANDLE]",
    "emails": "[EMAIL]",
    "phones": "[PHONE]",
}
ORDER: tuple[PiiKind, ...] = ("urls", "handles", "emails", "phones")

# A URL must not end in sentence punctuation: "see example.com." keeps its full stop.
_URL_TAIL = r"""[^\s<>"'`]*[^\s<>"'`.,;:!?)\]}]"""
# Bare domains (no scheme, no www.) only with a top-level domain common in posts; "file.txt" and "e.g." stay.
_TLDS = ("com|net|org|edu|gov|io|co|ly|me|info|biz|app|dev|xyz|gg|tv|us|uk|de|fr|es|it|nl|eu|ru|ca|au|"
         "link|site|online|shop|store|top|ai")
_URL = re.compile(
    rf"""(?:\b(?:https?|ftp)://{_URL_TAIL}"""                      # with a scheme
    rf"""|(?<![\w@.-])www\.{_URL_TAIL}"""                          # www.
    rf"""|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})\b(?![.-]?\w)"""  # bare domain ...
    rf"""(?:[/?#]{_URL_TAIL})?)""",                               # ... with an optional path
    re.IGNORECASE,
)
# @name (letters, digits, _, inner dots), optionally @name@instance.social (fediverse); not the @ of an email.
_HANDLE = re.compile(r"(?<![\w@./])@[A-Za-z_](?:[\w.]*\w)?(?:@[\w-]+(?:\.[\w-]+)+)?")
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# Phones: international (+CC ...), North American (the area code starts 2-9, so "100 200 3000" does not
# match; a bare ten-digit run needs a 2-9 exchange too, so Unix times do not) and European national numbers
# (a leading 0). Prices, decimals and ISO dates have the wrong shape; the digit count and a check for
# day.month.year dates come on top.
_PHONE = re.compile(
    r"(?<![\w+/.,:$€£-])(?:"
    r"\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}"                       # +44 7911 123456
    r"|(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?\d{3}[ .-]?|[2-9]\d{2}[ .-]\d{3}[ .-])\d{4}"  # (555) 123-4567
    r"|(?:1[ .-]?)?[2-9]\d{2}[2-9]\d{6}"                                              # 5552345678
    r"|0\d{1,4}[ .-]?\d{2,4}[ .-]?\d{2,4}(?:[ .-]?\d{2})?(?:[ .-]?\d{2})?"          # 07911 123456
    r")(?![\w.,:-]?\d)"
)
_PHONE_DIGITS = range(9, 16)  # E.164 numbers have at most 15 digits; fewer than 9 is an ordinary number
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1(?:19|20)\d{2}(?!\d)")  # 05.11.2024 looks like 0... national


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    digits = sum(ch.isdigit() for ch in found)
    return PLACEHOLDERS["phones"] if digits in _PHONE_DIGITS and not _DATE.match(found) else found


_RULES: dict[PiiKind, tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = {
    "urls": (_URL, PLACEHOLDERS["urls"]),
    "handles": (_HANDLE, PLACEHOLDERS["handles"]),
    "emails": (_EMAIL, PLACEHOLDERS["emails"]),
    "phones": (_PHONE, _phone),
}


def scrub(text: str, kinds: Iterable[PiiKind]) -> str:
    """``text`` with every occurrence of the given kinds replaced by its placeholder (see PLACEHOLDERS)."""
    wanted = set(kinds)
    if unknown := wanted - set(get_args(PiiKind)):
        raise ValueError(f"unknown PII kinds {sorted(unknown)}: use {', '.join(get_args(PiiKind))}")
    for kind in ORDER:
        if kind in wanted:
            pattern, replacement = _RULES[kind]
            text = pattern.sub(replacement, text)
    return text

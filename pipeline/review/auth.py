"""Reviewer credentials and CSRF tokens (pure, standard library only).

Passwords are stored as scrypt hashes (``hashlib.scrypt``) in the format ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``
(salt and hash URL-safe base64 without padding), so a hash holds no ``:`` or ``,`` and fits the reviewer list
``MODCASCADE_REVIEW_USERS=alice:<hash>,bob:<hash>``. ``modcascade review add-user NAME`` prints such an entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from functools import cache

from pipeline.errors import SettingsError

DEFAULT_LOG2_N = 15  # n = 32768, r = 8: 32 MiB and ~0.1 s per hash
_R, _P = 8, 1
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_MAXMEM = 512 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, log2_n: int = DEFAULT_LOG2_N, salt: bytes | None = None) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**log2_n, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${log2_n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (constant-time comparison; a malformed hash never matches)."""
    try:
        scheme, log2_n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt" or not 1 <= int(log2_n) <= 20:
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=2 ** int(log2_n), r=int(r), p=int(p),
                                maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@cache
def _dummy() -> str:
    return hash_password("not a password", salt=b"\0" * 16)


def check_login(users: dict[str, str], name: str, password: str) -> bool:
    """Whether the name and password belong to a configured reviewer; an unknown name costs a hash too."""
    hashed = users.get(name)
    ok = verify_password(password, hashed if hashed is not None else _dummy())
    return ok and hashed is not None


def parse_users(spec: str) -> dict[str, str]:
    """``name:hash,name:hash`` → {name: hash}; errors name the setting and the fix."""
    users: dict[str, str] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, hashed = entry.partition(":")
        if not sep or not _NAME.fullmatch(name) or not hashed.startswith("scrypt$") or hashed.count("$") != 5:
            raise SettingsError(f"MODCASCADE_REVIEW_USERS: {entry[:24]!r}... is not name:hash (make entries with "
                                "`modcascade review add-user NAME`)")
        if name in users:
            raise SettingsError(f"MODCASCADE_REVIEW_USERS: reviewer {name!r} is listed twice")
        users[name] = hashed
    if not users:
        raise SettingsError("MODCASCADE_REVIEW_USERS names no reviewer: add one with `modcascade review add-user "
                            "NAME` (the console has no open access)")
    return users


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, submitted: str | None) -> bool:
    """CSRF check: the form's token equals the session's (constant time); a missing one never matches."""
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
